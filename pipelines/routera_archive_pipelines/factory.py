"""Build the dlt pipeline a run writes to, the same way for the CLI, schedulers and tests."""

import difflib
import os
import re
from pathlib import Path
from typing import Any, Final

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import UnknownDestinationModule
from dlt.common.destination.reference import DestinationReference

from routera_archive.dataset.duckdb_file import create_readable
from routera_archive.dataset.queue import Shard
from routera_archive.errors import ConfigurationError, one_line
from routera_archive.names import DATASET_NAME, DEFAULT_DESTINATION

PIPELINE_NAME: Final = "routera_archive"

# Not `routera_archive.duckdb`: DuckDB names the catalog after the file, and a catalog named like
# the dataset makes every `routera_archive.<table>` ambiguous ("Ambiguous reference to catalog or
# schema"), which fails dlt's loads on dlt 1.31 / duckdb 2.0.
DUCKDB_FILE: Final = "routera_audit.duckdb"


# What every destination takes as a schema's name unquoted, and dlt as part of a pipeline's.
DATASET_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def pipeline_name_for(destination: str, dataset: str, shard: Shard | None = None) -> str:
    """One pipeline (so one working folder, lock and journal) per destination, dataset, shard."""
    if destination == DEFAULT_DESTINATION and dataset == DATASET_NAME and shard is None:
        return PIPELINE_NAME
    name = f"{PIPELINE_NAME}__{destination}__{dataset}"
    return name if shard is None else f"{name}__shard_{shard.label}"


def dataset_folders(pipeline: dlt.Pipeline, destination: str, dataset: str) -> list[Path]:
    """The other pipeline folders that write `dataset` beside `pipeline`'s: its shard
    workers' and `enqueue`'s (a redaction checks and cleans them too)."""
    prefix = f"{PIPELINE_NAME}__{destination}__{dataset}__shard_"
    root = Path(pipeline.pipelines_dir)
    found = [path for path in root.glob(f"{prefix}*") if path.is_dir()]
    enqueue = root / enqueue_pipeline_name_for(destination, dataset)
    return sorted([*found, *([enqueue] if enqueue.is_dir() else [])])


def enqueue_pipeline_name_for(destination: str, dataset: str) -> str:
    """`enqueue` has its own pipeline, so it never shares a working folder with a live run."""
    return f"{pipeline_name_for(destination, dataset)}__enqueue"


def _configured_duckdb_credentials() -> str | None:
    if value := os.environ.get("DESTINATION__DUCKDB__CREDENTIALS"):
        return value
    try:
        value = dlt.config.get("destination.duckdb.credentials")
    except ConfigFieldMissingException:
        return None
    return None if value is None else str(value)


def _check_duckdb_names(database: str, dataset: str) -> None:
    """DuckDB cannot load a dataset into a file of the same name: refuse it with a way out."""
    stem = Path(database.removeprefix("duckdb:///")).stem
    if stem.lower() == dataset.lower():
        raise ConfigurationError(
            f"the DuckDB file {database} would hold a dataset of the same name `{dataset}`; "
            "DuckDB then cannot tell the file's catalog from the dataset's schema. Use another "
            "file name or pass --dataset"
        )


def make_pipeline(
    destination: str = DEFAULT_DESTINATION,
    dataset: str = DATASET_NAME,
    *,
    pipeline_name: str | None = None,
    duckdb_file: str | Path | None = None,
    pipelines_dir: str | Path | None = None,
    shard: Shard | None = None,
) -> dlt.Pipeline:
    """A pipeline on `destination`/`dataset`; DuckDB writes `routera_audit.duckdb` in the cwd.

    dlt's own settings win over our defaults: `DESTINATION__DUCKDB__CREDENTIALS`,
    `DESTINATION__POSTGRES__CREDENTIALS`, `DLT_DATA_DIR` and the `.dlt/` files.
    """
    if not DATASET_PATTERN.fullmatch(dataset):
        raise ConfigurationError(
            f"--dataset {dataset!r}: a dataset name is letters, digits and underscores, "
            "starting with a letter or an underscore, at most 63 characters"
        )
    name = pipeline_name or pipeline_name_for(destination, dataset, shard)
    # Shard workers load at the same time: each merges through a staging dataset of its own,
    # or one worker's staging rows would be merged (or truncated) by another.
    options: dict[str, Any] = (
        {} if shard is None else {"staging_dataset_name_layout": f"%s_staging_{shard.label}"}
    )
    target: str | Destination[Any, Any] | None = destination
    if destination != DEFAULT_DESTINATION:
        _check_destination(destination)
    if destination == DEFAULT_DESTINATION:
        configured = None if duckdb_file else _configured_duckdb_credentials()
        database = configured or str(Path(duckdb_file or DUCKDB_FILE).resolve())
        _check_duckdb_names(database, dataset)
        path = database.removeprefix("duckdb:///")
        if path != ":memory:" and "://" not in path:
            create_readable(Path(path))
        if configured is None:
            target = dlt.destinations.duckdb(credentials=database, **options)
        elif options:
            target = dlt.destinations.duckdb(**options)
    elif destination == "postgres":
        # No UNIQUE or PRIMARY KEY constraints from dlt's hints (it makes them on PostgreSQL
        # only, `_dlt_id` included, staging tables too). A run killed after a staging INSERT
        # committed but before dlt recorded the job leaves a package whose resumed INSERT adds
        # the same rows again: without constraints the copies are merged and then collapsed
        # (`collapse_reloaded_rows`), as on DuckDB; with them the INSERT fails and the package,
        # and every later run, stays stuck.
        target = Destination.from_reference(destination, create_indexes=False, **options)
    elif options:
        target = Destination.from_reference(destination, **options)
    try:
        if pipelines_dir is None:
            return dlt.pipeline(pipeline_name=name, destination=target, dataset_name=dataset)
        return dlt.pipeline(
            pipeline_name=name,
            destination=target,
            dataset_name=dataset,
            pipelines_dir=str(pipelines_dir),
        )
    except Exception as exc:  # unreadable .dlt files, a name dlt refuses, ...
        raise ConfigurationError(f"cannot set up the dlt pipeline: {one_line(str(exc))}") from None


def _check_destination(name: str) -> None:
    """An unknown destination in one line, with the nearest standard name if one is close
    (`postgress`: did you mean `postgres`?). dlt's named destinations still work."""
    try:
        Destination.from_reference(name)
    except UnknownDestinationModule:
        known = standard_destinations()
        close = difflib.get_close_matches(name, known, n=1)
        hint = (
            f" (did you mean {close[0]!r}?)"
            if close
            else f" (dlt's destinations: {', '.join(known)})"
        )
        raise ConfigurationError(f"unknown destination {name!r}{hint}") from None


def standard_destinations() -> list[str]:
    """The names dlt's own destinations go by (`duckdb`, `postgres`, `snowflake`, ...)."""
    import dlt.destinations  # noqa: F401  (registers them)

    refs = DestinationReference.DESTINATIONS
    return sorted(ref.rsplit(".", 1)[-1] for ref in refs if ref.startswith("dlt.destinations."))
