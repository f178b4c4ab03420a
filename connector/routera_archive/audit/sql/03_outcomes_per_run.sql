-- Outcomes per run: how many outcomes of each status every run recorded.
-- A request that failed and was retried appears under each run that handled it.
SELECT run_id, status, COUNT(*) FROM routera_archive.archive_log GROUP BY 1, 2 ORDER BY 1, 2;
