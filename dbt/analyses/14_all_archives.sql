-- connector/routera_archive/audit/sql/14_all_archives.sql, the dataset's tables read as
-- sources (python -m tests.dbt_package writes it again; the tests keep the two equal).
-- Every archived record of every type, with the columns all four audit tables share:
-- the base for questions across types (select from it, or keep it as a model or view of your own).
-- It is a query, not a view the connector makes: on PostgreSQL a view makes `DROP TABLE` of
-- the tables it reads fail (dlt drops tables that way: `dlt pipeline drop`, `refresh`), so a
-- view of your own must be dropped before dlt drops a table, and made again after.
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
SELECT * FROM all_archives ORDER BY archived, object_type, id;
