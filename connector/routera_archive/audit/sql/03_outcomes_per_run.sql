-- Outcomes per run and type: how many outcomes of each status every run recorded, per object
-- type (a row written before types existed is a contact's).
-- A request that failed and was retried appears under each run that handled it.
SELECT run_id, COALESCE(object_type, 'contacts') AS object_type, status, COUNT(*)
FROM routera_archive.archive_log GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
