"""The copies of a dataset's rows the connector leaves outside its tables, and their removal.

An UPDATE changes a row where queries see it; the values it replaced stay elsewhere:
- the **staging dataset** (`<dataset>_staging`, a shard's `<dataset>_staging_<shard>`) holds
  the rows of each table's last merge until the next one;
- each **pipeline folder** keeps dlt's loaded packages, whose completed job files are the
  rows as loaded (gzipped), and `trace.pickle`, the last run's trace;
- a **DuckDB file** keeps the blocks an UPDATE freed until they are reused: a byte search of
  the file finds the old values. The file is rewritten (`COPY FROM DATABASE` into a new file,
  fsynced, renamed over the old one): it costs a read and a write of the whole file and the
  disk space of a second copy while it runs;
- **PostgreSQL** keeps the old row versions as dead tuples until a vacuum; `VACUUM FULL`
  rewrites each changed table into new files. What the server keeps beyond the tables (its
  WAL until recycled, replicas, backups, point-in-time recovery) is outside the connector's
  reach: README, "Retention and redaction".

Journals are deleted once their run's rows are loaded; a redaction refuses to start while a
crashed run's journal or packages wait (`dataset.redact.check_nothing_pending`).
"""

import contextlib
import logging
import os
import stat
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dlt

from routera_archive.dataset.duckdb_file import STORAGE_VERSION
from routera_archive.errors import DestinationUnavailable, one_line
from routera_archive.journal import replace_durably

logger = logging.getLogger(__name__)

# Where a pipeline folder holds rows not loaded yet (a crashed run's): never removed here.
PENDING_PLACES = ("load/new", "load/normalized", "normalize/extracted")


@dataclass
class Cleanup:
    staging_tables_emptied: list[str] = field(default_factory=list)
    package_files_removed: int = 0
    traces_removed: int = 0
    duckdb_file: str | None = None
    duckdb_bytes_before: int | None = None
    duckdb_bytes_after: int | None = None
    compact_seconds: float | None = None
    vacuumed_tables: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pending_in(folder: Path) -> list[Path]:
    """The packages and journals of a crashed run left in a pipeline folder."""
    found = sorted((folder / "journal").glob("*.jsonl")) if (folder / "journal").is_dir() else []
    for place in PENDING_PLACES:
        where = folder / place
        if where.is_dir():
            found.extend(sorted(path for path in where.iterdir() if path.is_dir()))
    return found


def clean_copies(
    pipeline: dlt.Pipeline, *, changed_tables: Sequence[str], folders: Iterable[Path] = ()
) -> Cleanup:
    """Remove every copy named in the module's docstring, for `pipeline`'s dataset; `folders`
    are the other pipeline folders that write it (shard workers')."""
    cleanup = Cleanup()
    _empty_staging(pipeline, cleanup)
    for folder in {Path(pipeline.working_dir), *folders}:
        _clean_folder(folder, cleanup)
    destination = pipeline.destination.destination_name
    if destination == "duckdb":
        database = str(pipeline.sql_client().credentials.database)
        if database != ":memory:":
            compact_duckdb(Path(database), cleanup)
    elif destination == "postgres":
        _vacuum(pipeline, changed_tables, cleanup)
    return cleanup


def _staging_tables(client: Any, dataset: str) -> list[tuple[str, str]]:
    rows = client.execute_sql(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE'"
    )
    staging = f"{dataset}_staging"
    return sorted(
        (str(schema), str(name))
        for schema, name in rows
        if (schema == staging or str(schema).startswith(f"{staging}_"))
        and not str(name).startswith("_dlt")
    )


def _empty_staging(pipeline: dlt.Pipeline, cleanup: Cleanup) -> None:
    """dlt empties a staging table at the start of its next merge; empty them all now."""
    with pipeline.sql_client() as client:
        for schema, name in _staging_tables(client, str(pipeline.dataset_name)):
            qualified = f"{client.escape_column_name(schema)}.{client.escape_column_name(name)}"
            client.execute_sql(f"DELETE FROM {qualified}")
            cleanup.staging_tables_emptied.append(f"{schema}.{name}")


def _clean_folder(folder: Path, cleanup: Cleanup) -> None:
    loaded = folder / "load" / "loaded"
    if loaded.is_dir():
        for package in loaded.iterdir():
            jobs = package / "completed_jobs"
            if not jobs.is_dir():
                continue
            for job in jobs.iterdir():
                if job.is_file():
                    job.unlink()
                    cleanup.package_files_removed += 1
    trace = folder / "trace.pickle"
    if trace.exists():
        trace.unlink()
        cleanup.traces_removed += 1


def compact_duckdb(database: Path, cleanup: Cleanup) -> None:
    """Rewrite the file so no freed block keeps an old value (see the module's docstring).

    Killed before the rename, the old file is whole (the copy is removed next time); after
    it, the new one is. No other process may have the file open: DuckDB's own lock says so.
    """
    import duckdb

    copy = database.with_name(f"{database.name}.compacting")
    for stale in (copy, copy.with_name(f"{copy.name}.wal")):
        stale.unlink(missing_ok=True)
    started = time.monotonic()
    cleanup.duckdb_file = str(database)
    cleanup.duckdb_bytes_before = database.stat().st_size
    try:
        connection = duckdb.connect(str(database))
    except duckdb.IOException as exc:
        raise DestinationUnavailable(
            f"cannot rewrite {database} to remove the redacted values' old blocks: "
            f"{one_line(str(exc))}; close what has it open and run `redact` again (it "
            "finishes the rewrite)"
        ) from None
    try:
        catalog = connection.execute("SELECT current_database()").fetchone()
        assert catalog is not None
        connection.execute("CHECKPOINT")
        # The copy keeps the file readable by DuckDB 1.x tools (`dataset.duckdb_file`).
        connection.execute(
            f"ATTACH '{_quoted_path(copy)}' AS routera_compacted "
            f"(STORAGE_VERSION '{STORAGE_VERSION}')"
        )
        connection.execute(f'COPY FROM DATABASE "{catalog[0]}" TO routera_compacted')
        connection.execute("DETACH routera_compacted")
    finally:
        connection.close()
    # The copy takes the original's mode and owner: a file kept private stays private.
    kept = database.stat()
    os.chmod(copy, stat.S_IMODE(kept.st_mode))
    with contextlib.suppress(PermissionError):  # not root: the owner is ours already
        os.chown(copy, kept.st_uid, kept.st_gid)
    replace_durably(copy, database)
    cleanup.duckdb_bytes_after = database.stat().st_size
    cleanup.compact_seconds = round(time.monotonic() - started, 3)


def _quoted_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _vacuum(pipeline: dlt.Pipeline, tables: Sequence[str], cleanup: Cleanup) -> None:
    with pipeline.sql_client() as client:
        names = [client.make_qualified_table_name(name) for name in tables]
        for schema, name in _staging_tables(client, str(pipeline.dataset_name)):
            names.append(f"{client.escape_column_name(schema)}.{client.escape_column_name(name)}")
        for qualified in names:
            client.execute_sql(f"VACUUM FULL {qualified}")  # autocommit: not in a transaction
            cleanup.vacuumed_tables.append(qualified)
