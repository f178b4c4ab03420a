-- When each custom field first appeared: the field's key as Routera sent it, the column that
-- holds it in contact_archives (`renamed` when it is not dlt's plain name for the key, e.g. two
-- keys that normalise alike), and the run and contact it was first seen in.
SELECT field_key, column_name, renamed, first_seen_at, first_seen_run_id, first_seen_contact_id
FROM routera_archive.custom_fields
ORDER BY first_seen_at, field_key;
