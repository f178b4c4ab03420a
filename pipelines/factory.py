"""Build the dlt pipeline a run writes to, the same way for the CLI, schedulers and tests."""

import os
from pathlib import Path

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException

from connector.errors import ConfigurationError
from connector.settings import DATASET_NAME, DUCKDB_FILE, PIPELINE_NAME

DEFAULT_DESTINATION = "duckdb"


def pipeline_name_for(destination: str, dataset: str) -> str:
    """One pipeline (and so one working folder, lock and journal) per destination and dataset."""
    if destination == DEFAULT_DESTINATION and dataset == DATASET_NAME:
        return PIPELINE_NAME
    return f"{PIPELINE_NAME}__{destination}__{dataset}"


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
) -> dlt.Pipeline:
    """A pipeline on `destination`/`dataset`; DuckDB writes `routera_audit.duckdb` in the cwd.

    dlt's own settings win over our defaults: `DESTINATION__DUCKDB__CREDENTIALS`,
    `DESTINATION__POSTGRES__CREDENTIALS`, `DLT_DATA_DIR` and the `.dlt/` files.
    """
    name = pipeline_name or pipeline_name_for(destination, dataset)
    target: object = destination
    if destination == DEFAULT_DESTINATION:
        configured = None if duckdb_file else _configured_duckdb_credentials()
        database = configured or str(Path(duckdb_file or DUCKDB_FILE).resolve())
        _check_duckdb_names(database, dataset)
        if configured is None:
            target = dlt.destinations.duckdb(credentials=database)
    try:
        return dlt.pipeline(
            pipeline_name=name,
            destination=target,  # type: ignore[arg-type]
            dataset_name=dataset,
            pipelines_dir=None if pipelines_dir is None else str(pipelines_dir),
        )
    except Exception as exc:  # unknown destination name, unreadable .dlt files, ...
        raise ConfigurationError(f"cannot set up the dlt pipeline: {exc}") from None
