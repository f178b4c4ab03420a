"""Build the dlt pipeline a run writes to, the same way for the CLI, schedulers and tests."""

import os
from pathlib import Path
from typing import Any, Final

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.destination import Destination

from routera_archive.dataset.queue import Shard
from routera_archive.dataset.tables import DATASET_NAME
from routera_archive.errors import ConfigurationError

PIPELINE_NAME: Final = "routera_archive"

# Not `routera_archive.duckdb`: DuckDB names the catalog after the file, and a catalog named like
# the dataset makes every `routera_archive.<table>` ambiguous ("Ambiguous reference to catalog or
# schema"), which fails dlt's loads on dlt 1.31 / duckdb 2.0.
DUCKDB_FILE: Final = "routera_audit.duckdb"

DEFAULT_DESTINATION = "duckdb"


def pipeline_name_for(destination: str, dataset: str, shard: Shard | None = None) -> str:
    """One pipeline (so one working folder, lock and journal) per destination, dataset, shard."""
    if destination == DEFAULT_DESTINATION and dataset == DATASET_NAME and shard is None:
        return PIPELINE_NAME
    name = f"{PIPELINE_NAME}__{destination}__{dataset}"
    return name if shard is None else f"{name}__shard_{shard.label}"


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
    name = pipeline_name or pipeline_name_for(destination, dataset, shard)
    # Shard workers load at the same time: each merges through a staging dataset of its own,
    # or one worker's staging rows would be merged (or truncated) by another.
    options: dict[str, Any] = (
        {} if shard is None else {"staging_dataset_name_layout": f"%s_staging_{shard.label}"}
    )
    target: object = destination
    if destination == DEFAULT_DESTINATION:
        configured = None if duckdb_file else _configured_duckdb_credentials()
        database = configured or str(Path(duckdb_file or DUCKDB_FILE).resolve())
        _check_duckdb_names(database, dataset)
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
        return dlt.pipeline(
            pipeline_name=name,
            destination=target,  # type: ignore[arg-type]
            dataset_name=dataset,
            pipelines_dir=None if pipelines_dir is None else str(pipelines_dir),
        )
    except Exception as exc:  # unknown destination name, unreadable .dlt files, ...
        raise ConfigurationError(f"cannot set up the dlt pipeline: {exc}") from None
