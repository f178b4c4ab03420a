-- connector/routera_archive/audit/sql/12_custom_fields_first_seen.sql, the dataset's tables read as
-- sources (python -m tests.dbt_package writes it again; the tests keep the two equal).
-- When each custom field first appeared, per object type: the field's key as Routera sent it,
-- the column that holds it in its type's audit table (`renamed` when it is not dlt's plain name
-- for the key, e.g. two keys that normalise alike), and the run and record it was first seen
-- in. A row written before types existed is a contact's, its record in
-- `first_seen_contact_id`.
SELECT COALESCE(object_type, 'contacts') AS object_type, field_key, column_name, renamed,
       first_seen_at, first_seen_run_id,
       COALESCE(first_seen_object_id, first_seen_contact_id) AS first_seen_object_id
FROM {{ source('routera_archive', 'custom_fields') }}
ORDER BY first_seen_at, object_type, field_key;
