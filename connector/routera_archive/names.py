"""The names of what the connector makes, in one place below every layer: its dlt source and
settings section, the dataset and tables it writes, and the destination it writes by default."""

from typing import Final

from routera_archive.objects import ObjectType

SOURCE_NAME: Final = "routera"
"""The dlt source's name and settings section: settings live under `[sources.routera]`."""
DEFAULT_DESTINATION: Final = "duckdb"
"""The embedded default: a local DuckDB file."""
DATASET_NAME: Final = "routera_archive"
"""The dataset a run writes when none is named."""
QUEUE_TABLE: Final = "archive_queue"
"""The queue table's name when `queue_table` is not set (the table `enqueue` makes)."""
QUEUE_SCHEMA_NAME: Final = "routera_queue"
"""`enqueue`'s own dlt schema, so it can write while a run holds the run pipeline."""
ARCHIVES_TABLE: Final = ObjectType.CONTACTS.table
"""`contact_archives`: the contacts' audit trail (each type's is `ObjectType.table`)."""
LOG_TABLE: Final = "archive_log"
RUNS_TABLE: Final = "archive_runs"
FIELDS_TABLE: Final = "custom_fields"
CHAIN_TABLE: Final = "archive_chain"
"""One link of the hash chain per run (`dataset.chain`)."""
DIGESTS_TABLE: Final = "row_digests"
"""The SHA-256 of every row the chain covers, by table, key and the run that chained it."""
REDACTIONS_TABLE: Final = "redactions"
"""One row per redaction (`dataset.redact`): who, when, why, which rows and columns."""
VERIFICATIONS_TABLE: Final = "verifications"
"""Each `verify`'s verdict (`dataset.verifications`): not chained, an account of the checks."""
