-- Records recovered after a lost answer.
-- `recovered` records were not taken from the run's own DELETE answer: read back with GET after
-- a 404 (`record_source = 'get'`, e.g. archived in the UI or by a crashed run) or from the
-- journal of a crashed run (`record_source = 'journal'`).
SELECT id, archived, archived_by, record_source FROM routera_archive.contact_archives WHERE recovered;
