-- Everything that happened to the requests for a given contact, oldest first: each outcome
-- (failures and retries included), its HTTP status, error, attempts and run.
-- Parameter: the contact id in `params`.
WITH params AS (
  SELECT 'CONTACT-ID' AS contact_id
)
SELECT l.processed_at, l.request_id, l.status, l.http_status, l.error, l.attempts,
       l.requested_by, l.reason, l.duplicate_of, l.run_id
FROM routera_archive.archive_log l
JOIN params p ON l.contact_id = p.contact_id
ORDER BY l.processed_at, l.request_id;
