-- Requests still pending (no terminal outcome yet).
-- A `failed` outcome is not terminal: those requests are tried again by the next run.
SELECT q.* FROM routera_archive.archive_queue q
WHERE NOT EXISTS (
  SELECT 1 FROM routera_archive.archive_log l
  WHERE l.request_id = q.request_id AND l.status <> 'failed');
