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


def _configured_duckdb_credentials() -> bool:
    if os.environ.get("DESTINATION__DUCKDB__CREDENTIALS"):
        return True
    try:
        return dlt.config.get("destination.duckdb.credentials") is not None
    except ConfigFieldMissingException:
        return False


def make_pipeline(
    destination: str = DEFAULT_DESTINATION,
    dataset: str = DATASET_NAME,
    *,
    pipeline_name: str | None = None,
    duckdb_file: str | Path | None = None,
    pipelines_dir: str | Path | None = None,
) -> dlt.Pipeline:
    """A pipeline on `destination`/`dataset`; DuckDB writes `routera_archive.duckdb` in the cwd.

    dlt's own settings win over our defaults: `DESTINATION__DUCKDB__CREDENTIALS`,
    `DESTINATION__POSTGRES__CREDENTIALS`, `DLT_DATA_DIR` and the `.dlt/` files.
    """
    name = pipeline_name or pipeline_name_for(destination, dataset)
    target: object = destination
    if destination == DEFAULT_DESTINATION and (duckdb_file or not _configured_duckdb_credentials()):
        target = dlt.destinations.duckdb(
            credentials=str(Path(duckdb_file or DUCKDB_FILE).resolve())
        )
    try:
        return dlt.pipeline(
            pipeline_name=name,
            destination=target,  # type: ignore[arg-type]
            dataset_name=dataset,
            pipelines_dir=None if pipelines_dir is None else str(pipelines_dir),
        )
    except Exception as exc:  # unknown destination name, unreadable .dlt files, ...
        raise ConfigurationError(f"cannot set up the dlt pipeline: {exc}") from None
