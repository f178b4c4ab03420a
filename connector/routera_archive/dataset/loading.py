"""Loading into the destination safely, and repairing what a crash of dlt itself left.

dlt loads a package at least once and, with packages pending, `run()` loads those and ignores
the data it was given; the helpers here make both safe for an audit trail.
"""

import logging
import re
from pathlib import Path
from typing import Any, Final

import dlt
from dlt.common.destination import TLoaderFileFormat
from dlt.common.pipeline import LoadInfo
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from routera_archive.dataset.destination import is_data_failure, refusal_reason
from routera_archive.names import FIELDS_TABLE, LOG_TABLE, RUNS_TABLE, SOURCE_NAME
from routera_archive.objects import ObjectType

logger = logging.getLogger(__name__)


class _UpgradeNotice(logging.Filter):
    """Drops dlt's warning that a key column is being added to `custom_fields`: the one
    expected change of a dataset of the previous release (its key gains `object_type`,
    nullable, so the rows it has stay valid; see `tables.FIELDS_COLUMNS`), which dlt can only
    word as a possible failure. Any other such warning is left as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            "with hint primary_key are being added to existing table" in message
            and message.rstrip().split(" table ", 1)[-1].startswith(f"{FIELDS_TABLE}.")
        )


logging.getLogger("dlt").addFilter(_UpgradeNotice())

# What dlt's `FileStorage.save_atomic` names the file it writes before renaming it over the
# target: `uniq_id(8)`, 16 hex digits. A schema's own file is `<name>.schema.json`.
TORN_WRITE_NAME: Final = re.compile(r"[0-9a-f]{16}")

# Tables whose rows a resumed dlt package can insert twice (see collapse_reloaded_rows).
RELOADABLE_TABLES = (*(kind.table for kind in ObjectType), LOG_TABLE, FIELDS_TABLE, RUNS_TABLE)


def stored_columns(client: Any, table: str) -> set[str] | None:
    """The lower-cased column names `table` has in the destination (`client`: an open dlt
    sql_client), or None when it does not exist. The destination's, not dlt's schema: a
    dataset of the previous release lacks columns this release declares until it loads."""
    try:
        name = client.make_qualified_table_name(table)
        with client.execute_query(f"SELECT * FROM {name} WHERE 1 = 0") as cursor:
            return {col[0].lower() for col in cursor.description}
    except DatabaseUndefinedRelation:
        return None


def schema_columns(pipeline: dlt.Pipeline) -> dict[str, set[str]]:
    schema = pipeline.schemas.get(SOURCE_NAME) if SOURCE_NAME in pipeline.schemas else None
    if schema is None:
        return {}
    return {
        name: set(table.get("columns", {}))
        for name, table in schema.tables.items()
        if not name.startswith("_dlt")
    }


# The file a chunk's load writes, where dlt's default for the destination is not its fastest:
# DuckDB reads a parquet file (typed from dlt's schema, as the INSERT text is) 2-4x faster than
# the INSERT statements dlt writes by default, 0.45 -> 0.22 s for 500 contacts and 1.6 -> 0.35 s
# for 2,000; below about 50 rows writing the parquet file costs more than it saves (2 rows:
# 0.45 -> 0.59 s). Measured here (bench/RESULTS.md, issue 18). Elsewhere: dlt's default.
FASTER_FILE_FORMAT: Final[dict[str, TLoaderFileFormat]] = {"dlt.destinations.duckdb": "parquet"}
FASTER_FROM_ROWS: Final = 50


def load_file_format(pipeline: dlt.Pipeline, rows: int) -> TLoaderFileFormat | None:
    """The file format a load of `rows` rows into `pipeline`'s destination is written in (None:
    dlt's own choice)."""
    destination = pipeline.destination
    if destination is None or rows < FASTER_FROM_ROWS:
        return None
    return FASTER_FILE_FORMAT.get(destination.destination_type)


def load_fresh(
    pipeline: dlt.Pipeline, data: Any, file_format: TLoaderFileFormat | None = None
) -> LoadInfo:
    """`pipeline.run(data)`, making sure `data` is what gets loaded; written as `file_format`
    (`load_file_format`; None: dlt's default).

    With packages pending from an earlier failure, dlt's `run` loads those and *ignores* the
    data it was given; so pending packages are loaded first, on their own.
    """
    if pipeline.has_pending_data:
        load_pending_packages(pipeline)
    if file_format is None:
        return pipeline.run(data)
    return pipeline.run(data, loader_file_format=file_format)


def load_pending_packages(pipeline: dlt.Pipeline) -> None:
    """Finish the packages an interrupted process left, and undo what resuming them can do.

    Two crash windows of dlt itself are closed here:
    - killed inside normalize's commit, a package is both extracted and normalized; normalizing
      it again fails for ever (`Directory not empty`). The rename had happened, so the
      extracted copy is the stale one and is dropped.
    - killed after a staging INSERT committed but before dlt recorded the job, a resumed package
      runs the INSERT again and the merge inserts both copies. Identical rows share `_dlt_id`;
      they are collapsed back to one.
    """
    drop_stale_extracted_copies(pipeline)
    adopt_schema_of_extracted_packages(pipeline)
    pipeline.normalize()
    pipeline.load()
    collapse_reloaded_rows(pipeline)


def adopt_schema_of_extracted_packages(pipeline: dlt.Pipeline) -> None:
    """A pipeline's first process killed after its extract committed a package but before the
    pipeline saved its state has a package and no schema: dlt's `normalize()` then returns
    without a word (it takes "no default schema" for "nothing extracted"), and the package
    waits, to be normalized and loaded beside a later extract, after that run already counted
    its outcomes as unloaded. The package holds its schema; the pipeline takes it, as dlt's own
    extract would have (`_inject_schema` is how dlt's extract does it; there is no public way)."""
    known: str | None = pipeline.default_schema_name  # typed `str`; None until a state is saved
    if known:
        return
    extracted = pipeline._get_normalize_storage().extracted_packages
    for load_id in pipeline.list_extracted_load_packages():
        schema = extracted.load_schema(load_id)
        logger.warning(
            "adopting schema %s of package %s, extracted before a crash", schema.name, load_id
        )
        pipeline._inject_schema(schema)


def resume_pending_packages(pipeline: dlt.Pipeline) -> bool:
    """Load what an interrupted run of `pipeline` left (`load_pending_packages`); True when a
    package had to be aborted instead.

    A package whose rows the destination refuses never loads, and would stop every later run
    right here. Its outcomes are in their run's journal (a journal stays until all of its
    outcomes are loaded) and the run loads them from there, fields held back if need be; only a
    run row with no outcome in it can be lost this way.
    """
    try:
        load_pending_packages(pipeline)
    except Exception as exc:
        if not is_data_failure(exc):
            raise
        logger.warning(
            "aborting a package the destination refuses (%s); its outcomes are loaded from "
            "their journal",
            refusal_reason(exc),
        )
        pipeline.abort_packages()
        return True
    return False


def drop_stale_extracted_copies(pipeline: dlt.Pipeline) -> None:
    """A package both extracted and normalized (killed inside normalize's commit): the rename
    had happened, so the extracted copy is the stale one."""
    normalized = set(pipeline.list_normalized_load_packages())
    extracted = pipeline._get_normalize_storage().extracted_packages
    for load_id in pipeline.list_extracted_load_packages():
        if load_id in normalized:
            logger.warning("dropping the stale extracted copy of normalized package %s", load_id)
            extracted.delete_package(load_id)


def torn_schema_writes(pipeline: dlt.Pipeline) -> list[Path]:
    """The schema files a killed process left half-written (see repair_torn_schema_writes)."""
    folder = Path(pipeline.working_dir) / "schemas"
    return sorted(
        path
        for path in (folder.iterdir() if folder.is_dir() else ())
        if path.is_file() and TORN_WRITE_NAME.fullmatch(path.name)
    )


def repair_torn_schema_writes(pipeline: dlt.Pipeline) -> list[str]:
    """Remove the half-written schema files a process killed inside dlt's schema save left,
    and the names they put in the pipeline's state; the caller holds the pipeline folder's lock
    (a live writer's temporary file would look the same). Returns the names removed.

    dlt saves a schema as a temporary file in `schemas/`, renamed over `<name>.schema.json`; a
    SIGKILL between the two leaves the temporary file, and dlt lists every file there as a
    schema: attaching the pipeline writes its name into `state.json`, and every later `run()`
    fails at `step=sync` (`InvalidSchemaName`, or `FileNotFoundError` for `<hex>.schema.json`)
    until a person deletes it. The file was a copy of a schema being saved, never the only one:
    the previous version stays in place until the rename."""
    torn = torn_schema_writes(pipeline)
    for path in torn:
        logger.warning("removing %s, a schema file left half-written by a killed process", path)
        path.unlink()
    if torn:
        # Saving the state again lists the schemas afresh (dlt's `_props_to_state`).
        with pipeline.managed_state():
            pass
    return [path.name for path in torn]


def collapse_reloaded_rows(pipeline: dlt.Pipeline) -> None:
    """Rows loaded twice from one package are exact copies (same `_dlt_id`): keep one."""
    schema = pipeline.schemas.get(SOURCE_NAME) if SOURCE_NAME in pipeline.schemas else None
    if schema is None:
        return
    tables = [name for name in RELOADABLE_TABLES if name in schema.tables]
    with pipeline.sql_client() as client:
        for name in tables:
            table = client.make_qualified_table_name(name)
            try:
                doubled = client.execute_sql(
                    f"SELECT COUNT(*) FROM (SELECT _dlt_id FROM {table} "
                    "GROUP BY _dlt_id HAVING COUNT(*) > 1) d"
                )
            except DatabaseUndefinedRelation:
                continue
            if not doubled or not doubled[0][0]:
                continue
            logger.warning(
                "%s: collapsing %d rows loaded twice by a resumed package", name, doubled[0][0]
            )
            copies = client.make_qualified_table_name(f"{name}_reloaded_copies")
            with client.begin_transaction():
                client.execute_sql(f"DROP TABLE IF EXISTS {copies}")
                client.execute_sql(
                    f"CREATE TABLE {copies} AS SELECT DISTINCT * FROM {table} WHERE _dlt_id IN "
                    f"(SELECT _dlt_id FROM {table} GROUP BY _dlt_id HAVING COUNT(*) > 1)"
                )
                client.execute_sql(
                    f"DELETE FROM {table} WHERE _dlt_id IN (SELECT _dlt_id FROM {copies})"
                )
                client.execute_sql(f"INSERT INTO {table} SELECT * FROM {copies}")
                client.execute_sql(f"DROP TABLE {copies}")
