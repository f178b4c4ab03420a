-- Archives per day (UTC days, whatever the session's time zone), oldest first.
-- `AT TIME ZONE 'UTC'` is DuckDB and PostgreSQL syntax; other warehouses have their own
-- (Snowflake, Databricks, Redshift: CAST(CONVERT_TIMEZONE('UTC', archived) AS DATE);
-- BigQuery: DATE(archived, 'UTC')), as `routera-archive report` writes them.
SELECT CAST(archived AT TIME ZONE 'UTC' AS DATE) AS day, COUNT(*) AS archives
FROM routera_archive.contact_archives
GROUP BY CAST(archived AT TIME ZONE 'UTC' AS DATE)
ORDER BY day;
