-- connector/routera_archive/audit/sql/05_who_archived_a_record.sql, the dataset's tables read as
-- sources (python -m tests.dbt_package writes it again; the tests keep the two equal).
-- Who archived a given record: when, by whom, at whose request and why, in which
-- run, and whether the record was recovered. No row: the record is not in the audit trail.
-- Parameters in `params`: its type (contacts, companies, deals or tickets) and its id.
-- `all_archives` is every type's audit table as one (contact_archives,
-- company_archives, deal_archives, ticket_archives), with the columns they share and the type
-- as `object_type`: the connector's own definition, word for word
-- (routera_archive/audit/all_archives.py; python -m tests.shipped_sql writes it again). A run
-- makes all four tables at its first load, so it runs on any dataset this release has loaded
-- (one of the previous release: after this release's first run on it).
WITH params AS (
  SELECT 'OBJECT-TYPE' AS object_type, 'OBJECT-ID' AS object_id
), all_archives AS (
SELECT 'contacts' AS object_type, id, external_id, archived, archived_by, created_at, updated_at, request_id, requested_by, reason, requested_at, run_id, recovered, record_source FROM {{ source('routera_archive', 'contact_archives') }}
UNION ALL
SELECT 'companies' AS object_type, id, external_id, archived, archived_by, created_at, updated_at, request_id, requested_by, reason, requested_at, run_id, recovered, record_source FROM {{ source('routera_archive', 'company_archives') }}
UNION ALL
SELECT 'deals' AS object_type, id, external_id, archived, archived_by, created_at, updated_at, request_id, requested_by, reason, requested_at, run_id, recovered, record_source FROM {{ source('routera_archive', 'deal_archives') }}
UNION ALL
SELECT 'tickets' AS object_type, id, external_id, archived, archived_by, created_at, updated_at, request_id, requested_by, reason, requested_at, run_id, recovered, record_source FROM {{ source('routera_archive', 'ticket_archives') }}
)
SELECT a.object_type, a.id, a.archived, a.archived_by, a.requested_by, a.reason,
       a.requested_at, a.request_id, a.run_id, a.recovered, a.record_source
FROM all_archives a
JOIN params p ON a.object_type = p.object_type AND a.id = p.object_id;
