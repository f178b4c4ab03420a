-- Who archived what, when, and at whose request.
-- One row per archived contact, newest first.
SELECT id, email, archived, archived_by, requested_by, reason
FROM routera_archive.contact_archives ORDER BY archived DESC;
