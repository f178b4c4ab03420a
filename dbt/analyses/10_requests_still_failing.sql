-- connector/routera_archive/audit/sql/10_requests_still_failing.sql, the dataset's tables read as
-- sources (python -m tests.dbt_package writes it again; the tests keep the two equal).
-- Requests still failing: their latest outcome is `failed` (retries ran out, or an answer broke
-- the contract), so they are pending and the next run tries them again. With the error, the
-- attempts of the last try and how many times each has failed. "Latest" is the connector's own
-- definition, word for word (routera_archive/dataset/outcomes.py): a terminal row outranks any
-- `failed` one, then the newest `processed_at`, then `outcome_id`; a request is its id, its
-- type and its record's id (a row written before types existed is a contact's).
SELECT request_id, contact_id, error, http_status, attempts, processed_at,
       failed_rows AS failures, requested_by, reason, run_id,
       COALESCE(object_type, 'contacts') AS object_type,
       COALESCE(object_id, contact_id) AS object_id
FROM (
  SELECT l.*,
         ROW_NUMBER() OVER (PARTITION BY l.request_id, COALESCE(l.object_type, 'contacts'),
           COALESCE(l.object_id, l.contact_id) ORDER BY
           CASE WHEN l.status IN ('archived', 'already_archived', 'not_found', 'invalid', 'duplicate')
           THEN 0 ELSE 1 END, l.processed_at DESC, l.outcome_id DESC) AS newest,
         SUM(CASE WHEN l.status = 'failed' THEN 1 ELSE 0 END)
           OVER (PARTITION BY l.request_id, COALESCE(l.object_type, 'contacts'),
           COALESCE(l.object_id, l.contact_id)) AS failed_rows
  FROM {{ source('routera_archive', 'archive_log') }} l
) ranked
WHERE newest = 1 AND status = 'failed'
ORDER BY processed_at DESC, request_id;
