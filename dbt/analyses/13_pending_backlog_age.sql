-- connector/routera_archive/audit/sql/13_pending_backlog_age.sql, the dataset's tables read as
-- sources (python -m tests.dbt_package writes it again; the tests keep the two equal).
-- How big and how old the backlog is, per object type: pending requests (no terminal
-- outcome yet, as in 02_pending_requests.sql) and the oldest `requested_at` among them. The
-- age is `now() - oldest_requested_at`. A type is the queue's text: one that names no type is
-- pending until a run settles it `invalid`.
-- The connector's own definition, word for word: made from its pending SQL
-- (routera_archive/dataset/queue.py) for the queue `enqueue` makes, and kept equal to it by
-- the tests (python -m tests.shipped_sql writes it again). A request's id is derived as
-- `cid:<contact_id>` (a contact) or `<object_type>:<object_id>` where the queue has none.
SELECT pending.object_type, COUNT(*) AS pending, MIN(pending.requested_at) AS oldest_requested_at
FROM (WITH q AS (
    SELECT COALESCE(CAST(q.request_id AS VARCHAR), COALESCE(CASE WHEN COALESCE(CAST(q.object_type AS VARCHAR), CAST('contacts' AS VARCHAR)) = CAST('contacts' AS VARCHAR) THEN 'cid' ELSE COALESCE(CAST(q.object_type AS VARCHAR), CAST('contacts' AS VARCHAR)) END || ':' || COALESCE(CAST(q.object_id AS VARCHAR), CAST(q.contact_id AS VARCHAR)), CASE WHEN COALESCE(CAST(q.object_type AS VARCHAR), CAST('contacts' AS VARCHAR)) = CAST('contacts' AS VARCHAR) THEN 'cid' ELSE COALESCE(CAST(q.object_type AS VARCHAR), CAST('contacts' AS VARCHAR)) END || '-null')) AS request_id, COALESCE(CAST(q.object_type AS VARCHAR), CAST('contacts' AS VARCHAR)) AS object_type, COALESCE(CAST(q.object_id AS VARCHAR), CAST(q.contact_id AS VARCHAR)) AS object_id,
           CASE WHEN q.contact_id IS NOT NULL AND (COALESCE(CAST(q.object_type AS VARCHAR), CAST('contacts' AS VARCHAR)) <> CAST('contacts' AS VARCHAR) OR (q.object_id IS NOT NULL AND CAST(q.object_id AS VARCHAR) <> CAST(q.contact_id AS VARCHAR))) THEN CAST(q.contact_id AS VARCHAR) END AS clashing_contact_id,
           CAST(q.requested_by AS VARCHAR) AS requested_by,
           CAST(q.reason AS VARCHAR) AS reason,
           q.requested_at AS requested_at
    FROM {{ source('routera_archive', 'archive_queue') }} q
), r AS (
    SELECT request_id, object_type, object_id,
           MIN(requested_by) AS requested_by, MIN(reason) AS reason,
           MIN(requested_at) AS requested_at, MIN(clashing_contact_id) AS clashing_contact_id
    FROM q GROUP BY request_id, object_type, object_id
), p AS (
    SELECT r.*,
           FIRST_VALUE(r.request_id) OVER (
               PARTITION BY r.object_type, r.object_id
               ORDER BY CASE WHEN r.clashing_contact_id IS NULL THEN 0 ELSE 1 END,
                        r.requested_at, r.request_id
           ) AS first_request_id
    FROM r WHERE 1 = 1 AND NOT EXISTS (SELECT 1 FROM {{ source('routera_archive', 'archive_log') }} l WHERE l.request_id = r.request_id AND COALESCE(l.object_type, 'contacts') = r.object_type AND COALESCE(l.object_id, l.contact_id) IS NOT DISTINCT FROM r.object_id AND l.status IN ('archived', 'already_archived', 'not_found', 'invalid', 'duplicate'))
)
SELECT p.request_id, p.object_type, p.object_id, p.requested_by, p.reason, p.requested_at,
       p.first_request_id, a.request_id AS archived_under, p.clashing_contact_id
FROM p LEFT JOIN (SELECT CAST('contacts' AS VARCHAR) AS object_type, id, MIN(request_id) AS request_id FROM {{ source('routera_archive', 'contact_archives') }} GROUP BY id UNION ALL SELECT CAST('companies' AS VARCHAR) AS object_type, id, MIN(request_id) AS request_id FROM {{ source('routera_archive', 'company_archives') }} GROUP BY id UNION ALL SELECT CAST('deals' AS VARCHAR) AS object_type, id, MIN(request_id) AS request_id FROM {{ source('routera_archive', 'deal_archives') }} GROUP BY id UNION ALL SELECT CAST('tickets' AS VARCHAR) AS object_type, id, MIN(request_id) AS request_id FROM {{ source('routera_archive', 'ticket_archives') }} GROUP BY id) a ON a.object_type = p.object_type AND a.id = p.object_id
) pending
GROUP BY pending.object_type
ORDER BY pending.object_type;
