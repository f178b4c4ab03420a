-- Who archived a given contact: when, by whom, at whose request and why, in which run, and
-- whether the record was recovered. No row: the contact is not in the audit trail.
-- Parameter: the contact id in `params`.
WITH params AS (
  SELECT 'CONTACT-ID' AS contact_id
)
SELECT a.id, a.email, a.archived, a.archived_by, a.requested_by, a.reason, a.requested_at,
       a.request_id, a.run_id, a.recovered, a.record_source
FROM routera_archive.contact_archives a
JOIN params p ON a.id = p.contact_id;
