-- Requests still failing: their latest outcome is `failed` (retries ran out, or an answer broke
-- the contract), so they are pending and the next run tries them again. With the error, the
-- attempts of the last try and how many times each has failed.
SELECT l.request_id, l.contact_id, l.error, l.http_status, l.attempts, l.processed_at,
       (SELECT COUNT(*) FROM routera_archive.archive_log c
        WHERE c.request_id = l.request_id) AS failures,
       l.requested_by, l.reason, l.run_id
FROM routera_archive.archive_log l
WHERE l.status = 'failed'
  AND NOT EXISTS (
    SELECT 1 FROM routera_archive.archive_log t
    WHERE t.request_id = l.request_id AND t.status <> 'failed')
  AND l.processed_at = (
    SELECT MAX(m.processed_at) FROM routera_archive.archive_log m
    WHERE m.request_id = l.request_id)
ORDER BY l.processed_at DESC, l.request_id;
