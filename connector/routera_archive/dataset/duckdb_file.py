"""A DuckDB file the tools people already have can open.

The duckdb package this connector runs on (2.x) writes storage version 69 by default, which no
1.x release reads: the newest DuckDB CLI package (`duckdb-cli` 1.5.6), dbt-duckdb and the SQL
clients built on DuckDB 1.x all refuse the file ("can only read versions between 64 and 68").
A file keeps the storage version it was created with, so the connector creates it itself, with
`storage_compatibility_version` set, before dlt first opens it; every later open (dlt's, the
redaction's rewrite) keeps it. A file that already exists is left as it is.
"""

from pathlib import Path
from typing import Final

STORAGE_VERSION: Final = "v1.0.0"
"""Readable by every DuckDB from 1.0 on (storage version 64), 2.x included."""


def create_readable(database: Path) -> None:
    """Create `database` (empty) with `STORAGE_VERSION`, unless it exists or its folder does
    not (a mistyped path is dlt's to report, not a folder to make)."""
    if database.exists() or not database.parent.is_dir():
        return
    import duckdb

    duckdb.connect(str(database), config={"storage_compatibility_version": STORAGE_VERSION}).close()
