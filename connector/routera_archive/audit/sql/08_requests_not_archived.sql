-- Requests that ended without an archive: `not_found` (Routera does not know the contact),
-- `invalid` (the id can never be a contact id; nothing was sent) and `duplicate` (the contact
-- was requested by another request, named in `duplicate_of`, or is already in the trail).
-- These statuses are terminal, so each request appears once.
SELECT l.status, l.request_id, l.contact_id, l.duplicate_of, l.error, l.requested_by,
       l.reason, l.requested_at, l.processed_at, l.run_id
FROM routera_archive.archive_log l
WHERE l.status IN ('not_found', 'invalid', 'duplicate')
ORDER BY l.status, l.processed_at, l.request_id;
