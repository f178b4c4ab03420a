-- Requests still pending: no terminal outcome yet. Every status but `failed` is terminal; a
-- `failed` request is tried again by the next run. The connector's own rule, word for word
-- (routera_archive/dataset/outcomes.py). Reads the queue's `request_id`, which `enqueue` writes.
SELECT q.* FROM routera_archive.archive_queue q
WHERE NOT EXISTS (
  SELECT 1 FROM routera_archive.archive_log l
  WHERE l.request_id = q.request_id
    AND l.status IN ('archived', 'already_archived', 'not_found', 'invalid', 'duplicate'));
