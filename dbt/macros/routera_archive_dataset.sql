{#
  The connector's dataset: `--vars '{routera_archive_dataset: ...}'`, else the environment's
  ROUTERA_ARCHIVE_DATASET, else routera_archive (the connector's default). models/sources.yml
  says the same inline (a properties file cannot call a macro).
#}
{% macro routera_archive_dataset() -%}
  {{ return(var('routera_archive_dataset', env_var('ROUTERA_ARCHIVE_DATASET', 'routera_archive'))) }}
{%- endmacro %}
