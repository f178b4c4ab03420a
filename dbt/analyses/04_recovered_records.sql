-- connector/routera_archive/audit/sql/04_recovered_records.sql, the dataset's tables read as
-- sources (python -m tests.dbt_package writes it again; the tests keep the two equal).
-- Records recovered after a lost answer, of every type.
-- `recovered` records were not taken from the run's own DELETE answer: read back with GET after
-- a 404 (`record_source = 'get'`, e.g. archived in the UI or by a crashed run) or from the
-- journal of a crashed run (`record_source = 'journal'`).
-- `all_archives` is every type's audit table as one (contact_archives,
-- company_archives, deal_archives, ticket_archives), with the columns they share and the type
-- as `object_type`: the connector's own definition, word for word
-- (routera_archive/audit/all_archives.py; python -m tests.shipped_sql writes it again). A run
-- makes all four tables at its first load, so it runs on any dataset this release has loaded
-- (one of the previous release: after this release's first run on it).
WITH all_archives AS (
SELECT 'contacts' AS object_type, id, external_id, archived, archived_by, created_at, updated_at, request_id, requested_by, reason, requested_at, run_id, recovered, record_source FROM {{ source('routera_archive', 'contact_archives') }}
UNION ALL
SELECT 'companies' AS object_type, id, external_id, archived, archived_by, created_at, updated_at, request_id, requested_by, reason, requested_at, run_id, recovered, record_source FROM {{ source('routera_archive', 'company_archives') }}
UNION ALL
SELECT 'deals' AS object_type, id, external_id, archived, archived_by, created_at, updated_at, request_id, requested_by, reason, requested_at, run_id, recovered, record_source FROM {{ source('routera_archive', 'deal_archives') }}
UNION ALL
SELECT 'tickets' AS object_type, id, external_id, archived, archived_by, created_at, updated_at, request_id, requested_by, reason, requested_at, run_id, recovered, record_source FROM {{ source('routera_archive', 'ticket_archives') }}
)
SELECT object_type, id, archived, archived_by, record_source
FROM all_archives WHERE recovered ORDER BY archived, object_type, id;
