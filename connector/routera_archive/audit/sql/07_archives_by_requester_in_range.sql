-- Archives in a date range, per requester: how many contacts each requester had archived,
-- and the first and last archive time, with `archived` from `since` (inclusive) to `before`
-- (exclusive). Parameters: the range in `params` (timestamps with their UTC offset).
WITH params AS (
  SELECT CAST('2026-01-01 00:00:00+00' AS TIMESTAMP WITH TIME ZONE) AS since,
         CAST('2027-01-01 00:00:00+00' AS TIMESTAMP WITH TIME ZONE) AS before
)
SELECT a.requested_by, COUNT(*) AS archives,
       MIN(a.archived) AS first_archived, MAX(a.archived) AS last_archived
FROM routera_archive.contact_archives a
JOIN params p ON a.archived >= p.since AND a.archived < p.before
GROUP BY a.requested_by
ORDER BY archives DESC, a.requested_by;
