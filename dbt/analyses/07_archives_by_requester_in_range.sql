-- connector/routera_archive/audit/sql/07_archives_by_requester_in_range.sql, the dataset's tables read as
-- sources (python -m tests.dbt_package writes it again; the tests keep the two equal).
-- Archives in a date range, per requester and type: how many records of each type
-- each requester had archived, and the first and last archive time, with `archived` from `since`
-- (inclusive) to `before` (exclusive). Parameters: the range in `params` (timestamps with
-- their UTC offset).
-- `all_archives` is every type's audit table as one (contact_archives,
-- company_archives, deal_archives, ticket_archives), with the columns they share and the type
-- as `object_type`: the connector's own definition, word for word
-- (routera_archive/audit/all_archives.py; python -m tests.shipped_sql writes it again). A run
-- makes all four tables at its first load, so it runs on any dataset this release has loaded
-- (one of the previous release: after this release's first run on it).
WITH params AS (
  SELECT CAST('2026-01-01 00:00:00+00' AS TIMESTAMP WITH TIME ZONE) AS since,
         CAST('2027-01-01 00:00:00+00' AS TIMESTAMP WITH TIME ZONE) AS before
), all_archives AS (
SELECT 'contacts' AS object_type, id, external_id, archived, archived_by, created_at, updated_at, request_id, requested_by, reason, requested_at, run_id, recovered, record_source FROM {{ source('routera_archive', 'contact_archives') }}
UNION ALL
SELECT 'companies' AS object_type, id, external_id, archived, archived_by, created_at, updated_at, request_id, requested_by, reason, requested_at, run_id, recovered, record_source FROM {{ source('routera_archive', 'company_archives') }}
UNION ALL
SELECT 'deals' AS object_type, id, external_id, archived, archived_by, created_at, updated_at, request_id, requested_by, reason, requested_at, run_id, recovered, record_source FROM {{ source('routera_archive', 'deal_archives') }}
UNION ALL
SELECT 'tickets' AS object_type, id, external_id, archived, archived_by, created_at, updated_at, request_id, requested_by, reason, requested_at, run_id, recovered, record_source FROM {{ source('routera_archive', 'ticket_archives') }}
)
SELECT a.requested_by, a.object_type, COUNT(*) AS archives,
       MIN(a.archived) AS first_archived, MAX(a.archived) AS last_archived
FROM all_archives a
JOIN params p ON a.archived >= p.since AND a.archived < p.before
GROUP BY a.requested_by, a.object_type
ORDER BY archives DESC, a.requested_by, a.object_type;
