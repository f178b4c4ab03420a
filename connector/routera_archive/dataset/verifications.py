"""Each `verify`'s verdict, kept in the dataset (`verifications`) so the report can say when the
trail was last checked and what came of it.

A plain SQL table, made with `CREATE TABLE IF NOT EXISTS` and one INSERT per verification:
`verify` may run beside a run, and a dlt load of its own would need the run's pipeline folder.
The table is not chained (a verdict about the chain cannot be inside it): it is an account of
what was checked, and `verify --expect-head` remains the proof.
"""

import json
from datetime import datetime
from typing import Any

import dlt

from routera_archive import __version__
from routera_archive.names import VERIFICATIONS_TABLE

# Column -> SQL type, the same on DuckDB and PostgreSQL.
VERIFICATIONS_COLUMNS: dict[str, str] = {
    "verified_at": "TIMESTAMP WITH TIME ZONE",
    "verified_by": "TEXT",
    "intact": "BOOLEAN",
    "head": "TEXT",
    "expected_head": "TEXT",
    "links": "BIGINT",
    "rows_checked": "BIGINT",
    "finding_count": "BIGINT",
    # The first findings, as JSON (`Verification.findings`, at most FINDINGS_KEPT).
    "findings": "TEXT",
    "connector_version": "TEXT",
}
FINDINGS_KEPT = 20


def record_verification(
    pipeline: dlt.Pipeline, verdict: dict[str, Any], *, verified_at: datetime, verified_by: str
) -> None:
    """Append one verdict (`Verification.as_dict()`)."""
    values = {
        "verified_at": verified_at,
        "verified_by": verified_by,
        "intact": bool(verdict["intact"]),
        "head": verdict.get("head"),
        "expected_head": verdict.get("expected_head"),
        "links": int(verdict.get("links") or 0),
        "rows_checked": int(verdict.get("rows_checked") or 0),
        "finding_count": int(verdict.get("finding_count") or 0),
        "findings": json.dumps(verdict.get("findings", [])[:FINDINGS_KEPT], ensure_ascii=False),
        "connector_version": __version__,
    }
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name(VERIFICATIONS_TABLE)
        columns = ", ".join(f"{name} {kind}" for name, kind in VERIFICATIONS_COLUMNS.items())
        client.execute_sql(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
        marks = ", ".join(["%s"] * len(values))
        client.execute_sql(
            f"INSERT INTO {table} ({', '.join(values)}) VALUES ({marks})", *values.values()
        )
