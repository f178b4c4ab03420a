-- connector/routera_archive/audit/sql/03_outcomes_per_run.sql, the dataset's tables read as
-- sources (python -m tests.dbt_package writes it again; the tests keep the two equal).
-- Outcomes per run and type: how many outcomes of each status every run recorded, per object
-- type (a row written before types existed is a contact's).
-- A request that failed and was retried appears under each run that handled it.
SELECT run_id, COALESCE(object_type, 'contacts') AS object_type, status, COUNT(*)
FROM {{ source('routera_archive', 'archive_log') }} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
