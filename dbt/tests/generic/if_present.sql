{#
  dbt's own unique, not_null and accepted_values, and unique_combination, on a table that may
  not exist yet (macros/routera_archive_presence.sql): checked when it does, passed while it
  does not.
#}
{% test unique_if_present(model, column_name) %}
  {%- if routera_archive_is_present(model) -%}
    {{ adapter.dispatch('test_unique', 'dbt')(model, column_name) }}
  {%- else -%}
    {{ routera_archive_nothing_to_test() }}
  {%- endif -%}
{% endtest %}

{% test not_null_if_present(model, column_name) %}
  {%- if routera_archive_is_present(model) -%}
    {{ adapter.dispatch('test_not_null', 'dbt')(model, column_name) }}
  {%- else -%}
    {{ routera_archive_nothing_to_test() }}
  {%- endif -%}
{% endtest %}

{% test accepted_values_if_present(model, column_name, values, quote=true) %}
  {%- if routera_archive_is_present(model) -%}
    {{ adapter.dispatch('test_accepted_values', 'dbt')(model, column_name, values, quote) }}
  {%- else -%}
    {{ routera_archive_nothing_to_test() }}
  {%- endif -%}
{% endtest %}

{% test unique_combination_if_present(model, combination_of_columns) %}
  {%- if routera_archive_is_present(model) -%}
    {{ test_unique_combination(model, combination_of_columns) }}
  {%- else -%}
    {{ routera_archive_nothing_to_test() }}
  {%- endif -%}
{% endtest %}
