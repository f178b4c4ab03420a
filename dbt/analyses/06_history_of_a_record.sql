-- connector/routera_archive/audit/sql/06_history_of_a_record.sql, the dataset's tables read as
-- sources (python -m tests.dbt_package writes it again; the tests keep the two equal).
-- Everything that happened to the requests for a given record, oldest first: each outcome
-- (failures and retries included), its HTTP status, error, attempts and run.
-- Parameters in `params`: its type (contacts, companies, deals or tickets) and its id. A log
-- row written before types existed is a contact's, its id in `contact_id`.
WITH params AS (
  SELECT 'OBJECT-TYPE' AS object_type, 'OBJECT-ID' AS object_id
)
SELECT l.processed_at, l.request_id, l.status, l.http_status, l.error, l.attempts,
       l.requested_by, l.reason, l.duplicate_of, l.run_id
FROM {{ source('routera_archive', 'archive_log') }} l
JOIN params p ON COALESCE(l.object_type, 'contacts') = p.object_type
             AND COALESCE(l.object_id, l.contact_id) = p.object_id
ORDER BY l.processed_at, l.request_id;
