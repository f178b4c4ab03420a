-- connector/routera_archive/audit/sql/09_failed_runs.sql, the dataset's tables read as
-- sources (python -m tests.dbt_package writes it again; the tests keep the two equal).
-- Runs that did not end well: every run whose exit code is not 0 (1: some requests failed, or a
-- load, lock or unexpected error; 2: configuration or authentication; 3: a guardrail refused
-- the run; 130: stopped), newest first, with what it said.
SELECT run_id, started_at, finished_at, mode, exit_code, outcome, pending_at_start, guardrail,
       error
FROM {{ source('routera_archive', 'archive_runs') }}
WHERE exit_code IS DISTINCT FROM 0
ORDER BY started_at DESC;
