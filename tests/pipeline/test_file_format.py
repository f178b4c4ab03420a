"""The trail's loads into DuckDB are written as parquet (`loading.FASTER_FILE_FORMAT`, issue 18):
every value must be stored as dlt's default INSERT statements store it, types included (but
for the sign of -0.0, which parquet keeps)."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import pytest

from routera_archive.dataset.loading import FASTER_FROM_ROWS
from routera_archive.dataset.tables import audit_trail, build_audit_rows
from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status
from routera_archive.run.chunks import load_rows
from routera_archive_sandbox.seed import generate_contacts

# Values a record's fields can hold that a file format could store otherwise: text that looks
# like a date, a number or JSON, control characters and other scripts, big and small numbers,
# sub-second timestamps, nested objects and lists, empty and null values.
ODD_VALUES: list[dict[str, Any]] = [
    {"note": "2026-03-01T10:00:00.123456Z", "amount": 12345678901234, "ratio": 0.1},
    {"note": "00123", "amount": -1, "ratio": 1e-300, "tags": ["a", "b"]},
    {"note": '{"json": "as text"}', "amount": 0, "ratio": -0.0, "meta": {"k": [1, {"x": None}]}},
    {"note": "tab\there\nnewline \u0001 \u00e9\u4e2d\U0001f600 '\"\\", "amount": 2**53 + 1},
    {"note": "", "ratio": 1.7976931348623157e308, "flag": True, "meta": {}},
    {"note": None, "flag": False, "tags": []},
    # As the poison records of tests/e2e/test_poison_records.py reach the trail, made so where
    # their answers are read: 2^64 - 1, a lone surrogate, NUL, NaN, nesting past the writers.
    {"note": "\\ud83d cut", "huge_score": "18446744073709551615", "score": "NaN"},
    {"note": "a\\x00b", "tree": "[" * 300 + "]" * 300, "score": "Infinity"},
]


def outcomes(count: int) -> list[ArchiveOutcome]:
    made = []
    for index, record in enumerate(generate_contacts(count, 11)):
        record = {
            **record,
            **ODD_VALUES[index % len(ODD_VALUES)],
            "archived": datetime(2026, 12, 1, 9, 30, 15, 123456 + index, tzinfo=UTC).isoformat(),
            "archived_by": "user-7",
        }
        request = ArchiveRequest(request_id=f"r-{index:04d}", contact_id=record["id"])
        made.append(
            ArchiveOutcome(
                request=request,
                status=Status.ARCHIVED,
                http_status=200,
                record=record,
                raw_response=json.dumps(record),
            )
        )
    return made


def stored(pipeline: dlt.Pipeline, table: str) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """The table's rows without dlt's own load columns, in order, and its column types."""
    with pipeline.sql_client() as client:
        columns = client.execute_sql(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY column_name",
            pipeline.dataset_name,
            table,
        )
        names = [name for name, _ in columns if name not in ("_dlt_load_id", "_dlt_id")]
        rows = client.execute_sql(
            f"SELECT {', '.join(names)} FROM {client.make_qualified_table_name(table)} ORDER BY ALL"
        )
    return [tuple(row) for row in rows], columns


def duckdb_pipeline(folder: Path, name: str) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(folder / f"{name}.duckdb")),
        dataset_name="trail",
        pipelines_dir=str(folder / "dlt"),
    )


def file_formats(info: Any) -> set[tuple[str, str]]:
    jobs = info.load_packages[0].jobs["completed_jobs"]
    return {(job.job_file_info.table_name, job.job_file_info.file_format) for job in jobs}


@pytest.mark.parametrize("chunks", [1, 2])
def test_parquet_loads_store_every_value_as_insert_statements_do(
    tmp_path: Path, chunks: int
) -> None:
    fast, default = duckdb_pipeline(tmp_path, "fast"), duckdb_pipeline(tmp_path, "default")
    made = outcomes(120)
    size = len(made) // chunks
    for start in range(0, len(made), size):
        rows = build_audit_rows(made[start : start + size], "run-1")
        fast_info, held_back = load_rows(fast, rows, hold_back=False)  # a run's chunk load
        default.run(audit_trail(rows))  # dlt's own format: INSERT statements
        assert held_back is None
        files = file_formats(fast_info)
        # (the merges' own jobs are `sql`; dlt writes its state table as it always does)
        assert {("contact_archives", "parquet"), ("archive_log", "parquet")} <= files, files
        assert not {table for table, kind in files if kind == "insert_values"} - {
            "_dlt_pipeline_state"
        }, files

    signed_zeros = 0
    for table in ("contact_archives", "archive_log", "custom_fields"):
        fast_rows, fast_columns = stored(fast, table)
        default_rows, default_columns = stored(default, table)
        assert fast_columns == default_columns, table
        assert len(fast_rows) == len(default_rows) > 0, table
        for fast_row, default_row in zip(fast_rows, default_rows, strict=True):
            for ours, theirs in zip(fast_row, default_row, strict=True):
                if (type(ours), repr(ours)) == (type(theirs), repr(theirs)):
                    continue
                # The one difference: DuckDB keeps the sign of -0.0 from a parquet file, not
                # from dlt's INSERT literal; both hash as 0.0 (`dataset.canonical`).
                assert (repr(ours), repr(theirs)) == ("-0.0", "0.0"), (table, ours, theirs)
                signed_zeros += 1
    assert signed_zeros == sum(
        1 for n in range(len(made)) if repr(ODD_VALUES[n % len(ODD_VALUES)].get("ratio")) == "-0.0"
    )


def test_a_chunk_of_few_rows_is_loaded_as_insert_statements(tmp_path: Path) -> None:
    """Below `FASTER_FROM_ROWS` the parquet file costs more to write than it saves."""
    pipeline = duckdb_pipeline(tmp_path, "small")
    few = build_audit_rows(outcomes(FASTER_FROM_ROWS - 1), "run-1")

    info, _ = load_rows(pipeline, few, hold_back=False)

    files = file_formats(info)
    assert ("contact_archives", "insert_values") in files, files
    assert not {kind for _, kind in files} & {"parquet"}, files
