-- How big and how old the backlog is: pending requests (no terminal outcome yet, as in
-- 02_pending_requests.sql) and the oldest `requested_at` among them. The age is
-- `now() - oldest_requested_at`.
SELECT COUNT(*) AS pending, MIN(q.requested_at) AS oldest_requested_at
FROM routera_archive.archive_queue q
WHERE NOT EXISTS (
  SELECT 1 FROM routera_archive.archive_log l
  WHERE l.request_id = q.request_id
    AND l.status IN ('archived', 'already_archived', 'not_found', 'invalid', 'duplicate'));
