-- How big and how old the backlog is: pending requests (no terminal outcome yet, as
-- in 02_pending_requests.sql) and the oldest `requested_at` among them. The age is
-- `now() - oldest_requested_at`.
-- The connector's own definition, word for word: made from its pending SQL
-- (routera_archive/dataset/queue.py) for the queue `enqueue` makes, and kept equal to it by
-- the tests (python -m tests.shipped_sql writes it again). A request's id is derived as
-- `cid:<contact_id>` where the queue has none.
SELECT COUNT(*) AS pending, MIN(pending.requested_at) AS oldest_requested_at
FROM (WITH q AS (
    SELECT COALESCE(CAST(q.request_id AS VARCHAR), COALESCE('cid:' || CAST(q.contact_id AS VARCHAR), 'cid-null')) AS request_id, CAST(q.contact_id AS VARCHAR) AS contact_id,
           CAST(q.requested_by AS VARCHAR) AS requested_by,
           CAST(q.reason AS VARCHAR) AS reason,
           q.requested_at AS requested_at
    FROM routera_archive.archive_queue q
), r AS (
    SELECT request_id, contact_id,
           MIN(requested_by) AS requested_by, MIN(reason) AS reason,
           MIN(requested_at) AS requested_at
    FROM q GROUP BY request_id, contact_id
), p AS (
    SELECT r.*,
           FIRST_VALUE(r.request_id) OVER (
               PARTITION BY r.contact_id ORDER BY r.requested_at, r.request_id
           ) AS first_request_id
    FROM r WHERE 1 = 1 AND NOT EXISTS (SELECT 1 FROM routera_archive.archive_log l WHERE l.request_id = r.request_id AND l.contact_id IS NOT DISTINCT FROM r.contact_id AND l.status IN ('archived', 'already_archived', 'not_found', 'invalid', 'duplicate'))
)
SELECT p.request_id, p.contact_id, p.requested_by, p.reason, p.requested_at,
       p.first_request_id, a.request_id AS archived_under
FROM p LEFT JOIN (SELECT id, MIN(request_id) AS request_id FROM routera_archive.contact_archives GROUP BY id) a ON a.id = p.contact_id
) pending;
