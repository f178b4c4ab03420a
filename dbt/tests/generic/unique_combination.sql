{#
  No two rows share the values of `combination_of_columns` (a composite key, such as
  custom_fields' (object_type, field_key)). NULLs compare equal here, as in GROUP BY: two
  rows of the previous release with NULL object_type and the same field_key are a duplicate.
#}
{% test unique_combination(model, combination_of_columns) %}
select {{ combination_of_columns | join(', ') }}, count(*) as copies
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1
{% endtest %}
