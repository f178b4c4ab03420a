-- connector/routera_archive/audit/sql/08_requests_not_archived.sql, the dataset's tables read as
-- sources (python -m tests.dbt_package writes it again; the tests keep the two equal).
-- Requests that ended without an archive: `not_found` (Routera does not know the record),
-- `invalid` (the id can never be a Routera id, or the type names none; nothing was sent) and
-- `duplicate` (the record was requested by another request, named in `duplicate_of`, or is
-- already in its type's audit table). These statuses are terminal, so each request appears
-- once. A row written before types existed is a contact's, its id in `contact_id`.
SELECT l.status, l.request_id, COALESCE(l.object_type, 'contacts') AS object_type,
       COALESCE(l.object_id, l.contact_id) AS object_id, l.duplicate_of, l.error,
       l.requested_by, l.reason, l.requested_at, l.processed_at, l.run_id
FROM {{ source('routera_archive', 'archive_log') }} l
WHERE l.status IN ('not_found', 'invalid', 'duplicate')
ORDER BY l.status, l.processed_at, l.request_id;
