-- Archives per day (UTC days, whatever the session's time zone), oldest first.
-- `AT TIME ZONE 'UTC'` is DuckDB and PostgreSQL syntax; other warehouses have their own
-- (Snowflake: CONVERT_TIMEZONE('UTC', archived); BigQuery: DATE(archived)).
SELECT CAST(archived AT TIME ZONE 'UTC' AS DATE) AS day, COUNT(*) AS archives
FROM routera_archive.contact_archives
GROUP BY CAST(archived AT TIME ZONE 'UTC' AS DATE)
ORDER BY day;
