{#
  Some of the connector's tables appear only once something made them: `redactions` at the
  first `routera-archive redact`, `verifications` at the first `verify`, `custom_fields` with
  the first custom field a run sees, `row_digests` with the first rows a run chains, the queue
  when you (or `enqueue`) make it. The `*_if_present` tests (tests/generic/) check such a table
  when it exists and pass, saying so in dbt's log, while it does not, so that `dbt build`
  passes on a fresh dataset. The tables every run makes use dbt's plain tests: a missing one
  fails, as a wrong dataset should.
#}
{% macro routera_archive_is_present(relation) -%}
  {%- if not execute -%}
    {{ return(true) }}
  {%- endif -%}
  {%- set found = adapter.get_relation(
        database=relation.database, schema=relation.schema, identifier=relation.identifier) -%}
  {%- if found is none -%}
    {%- do log("routera_archive: " ~ relation ~ " is not in the dataset yet (see the package's "
               ~ "README); its tests pass without checking anything", info=true) -%}
  {%- endif -%}
  {{ return(found is not none) }}
{%- endmacro %}

{# A test query that returns no row: the test passes. #}
{% macro routera_archive_nothing_to_test() -%}
  select 1 as nothing_to_test where 1 = 0
{%- endmacro %}
