{#
  Where a model lands. dbt's default puts a model with `schema='x'` in `<target schema>_x`
  (`routera_archive_dbt_routera_archive`), but the connector reads its queue from the dataset's
  own schema. So a model whose custom schema is the dataset (`routera_archive_dataset()`,
  as models/archive_queue.sql asks) lands in exactly that schema; every other model keeps
  dbt's default naming, so copying this macro into a project changes nothing else there.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
  {%- if custom_schema_name is not none
        and custom_schema_name | trim == routera_archive_dataset() -%}
    {{ custom_schema_name | trim }}
  {%- else -%}
    {{ default__generate_schema_name(custom_schema_name, node) }}
  {%- endif -%}
{%- endmacro %}
