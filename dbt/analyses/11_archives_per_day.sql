-- connector/routera_archive/audit/sql/11_archives_per_day.sql, the dataset's tables read as
-- sources (python -m tests.dbt_package writes it again; the tests keep the two equal).
-- Archives per day (UTC days, whatever the session's time zone) and type, oldest
-- first.
-- `AT TIME ZONE 'UTC'` is DuckDB and PostgreSQL syntax; other warehouses have their own
-- (Snowflake, Databricks, Redshift: CAST(CONVERT_TIMEZONE('UTC', archived) AS DATE);
-- BigQuery: DATE(archived, 'UTC')), as `routera-archive report` writes them.
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
SELECT CAST(archived AT TIME ZONE 'UTC' AS DATE) AS day, object_type, COUNT(*) AS archives
FROM all_archives
GROUP BY CAST(archived AT TIME ZONE 'UTC' AS DATE), object_type
ORDER BY day, object_type;
