"""Each supported warehouse builds its pipeline from configuration alone (no network)."""

from pathlib import Path
from types import SimpleNamespace

import dlt
import pytest
import sqlglot

from routera_archive.audit.report import ReportFilters, _Reader, utc_day_sql
from routera_archive.dataset.queue import Shard
from routera_archive_pipelines.factory import make_pipeline

WAREHOUSES = {
    "snowflake": {
        "DESTINATION__SNOWFLAKE__CREDENTIALS": (
            "snowflake://loader:pw@acme-account/ANALYTICS?warehouse=LOADING&role=LOADER"
        ),
    },
    "bigquery": {
        "DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID": "acme-analytics",
        "DESTINATION__BIGQUERY__CREDENTIALS__CLIENT_EMAIL": "loader@acme.iam.gserviceaccount.com",
        "DESTINATION__BIGQUERY__CREDENTIALS__PRIVATE_KEY": (
            "-----BEGIN PRIVATE KEY-----\nnot-a-key\n-----END PRIVATE KEY-----\n"
        ),
        "DESTINATION__BIGQUERY__LOCATION": "EU",
    },
    "databricks": {
        "DESTINATION__DATABRICKS__CREDENTIALS__SERVER_HOSTNAME": "adb-1.azuredatabricks.net",
        "DESTINATION__DATABRICKS__CREDENTIALS__HTTP_PATH": "/sql/1.0/warehouses/abc",
        "DESTINATION__DATABRICKS__CREDENTIALS__ACCESS_TOKEN": "dapi-not-a-token",
        "DESTINATION__DATABRICKS__CREDENTIALS__CATALOG": "main",
    },
    "motherduck": {"DESTINATION__MOTHERDUCK__CREDENTIALS": "md:///analytics?token=not-a-token"},
}


@pytest.mark.parametrize("destination", sorted(WAREHOUSES))
def test_a_warehouse_pipeline_is_built_from_configuration(
    destination: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in WAREHOUSES[destination].items():
        monkeypatch.setenv(name, value)

    pipeline = make_pipeline(destination, "routera_archive", pipelines_dir=tmp_path)
    spec = pipeline.destination.spec()._bind_dataset_name(dataset_name="routera_archive")
    config = pipeline.destination.configuration(spec)

    assert pipeline.destination.destination_name == destination
    assert pipeline.dataset_name == "routera_archive"
    assert config.credentials.is_resolved()
    assert pipeline.pipeline_name == f"routera_archive__{destination}__routera_archive"


@pytest.mark.parametrize("destination", sorted(WAREHOUSES))
def test_a_shard_worker_gets_its_own_pipeline_and_staging_dataset(
    destination: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in WAREHOUSES[destination].items():
        monkeypatch.setenv(name, value)

    pipeline = make_pipeline(
        destination, "routera_archive", pipelines_dir=tmp_path, shard=Shard(2, 4)
    )
    spec = pipeline.destination.spec()._bind_dataset_name(dataset_name="routera_archive")
    config = pipeline.destination.configuration(spec)

    assert pipeline.pipeline_name.endswith("__shard_2of4")
    assert config.staging_dataset_name_layout == "%s_staging_2of4"


def test_missing_warehouse_credentials_name_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pipeline = make_pipeline("snowflake", "routera_archive", pipelines_dir=tmp_path)
    spec = pipeline.destination.spec()._bind_dataset_name(dataset_name="routera_archive")

    with pytest.raises(Exception, match="credentials"):
        pipeline.destination.configuration(spec)


# How each warehouse spells "the UTC day of `archived`" in the report's per-day section.
UTC_DAY_SPELLING = {
    "snowflake": "CAST(CONVERT_TIMEZONE('UTC', archived) AS DATE)",
    "databricks": "CAST(CONVERT_TIMEZONE('UTC', archived) AS DATE)",
    "bigquery": "DATE(archived, 'UTC')",
    "motherduck": "CAST(archived AT TIME ZONE 'UTC' AS DATE)",
    "postgres": "CAST(archived AT TIME ZONE 'UTC' AS DATE)",
    "duckdb": "CAST(archived AT TIME ZONE 'UTC' AS DATE)",
}


@pytest.mark.parametrize("destination", sorted(UTC_DAY_SPELLING))
def test_the_report_counts_utc_days_in_each_warehouse_s_own_sql(destination: str) -> None:
    """The dialect comes from the destination's own capabilities, as the report reads it from
    its sql_client, and the per-day query parses in that dialect."""
    capabilities = getattr(dlt.destinations, destination)().capabilities()
    reader = _Reader(SimpleNamespace(capabilities=capabilities), ReportFilters())

    day = utc_day_sql("archived", reader.dialect)

    assert day == UTC_DAY_SPELLING[destination]
    parsed = sqlglot.parse_one(
        f"SELECT {day} AS day, COUNT(*) FROM t GROUP BY {day}",
        read=capabilities.sqlglot_dialect,
        error_level=sqlglot.ErrorLevel.RAISE,
    )
    assert parsed.find(sqlglot.exp.Count) is not None
