"""The canonical form of a row (`routera_archive.dataset.canonical`) hashes the same before
the load and after reading it back, on DuckDB and PostgreSQL (issue 15's spike, kept as the
form's test).

Rows are made and loaded by the connector's own resources (`build_audit_rows`, `audit_trail`,
`run_history`, `load_fresh`) and read back with `pipeline.sql_client()`, as `verify` would.
`canonical_row` is compared before and after for
every column type. Where a value does not come back as it went in, the test names it and says
what comes back instead, so that a dlt, DuckDB or PostgreSQL upgrade that changes it fails here.

The canonical form, per declared column type (`_dlt_*` columns and NULLs left out):
- text: the string as is; bigint: the integer; bool: the boolean;
- double: the float, `-0.0` as `0.0` (neither destination keeps the sign in a double column
  from the literal `(-0.0)::double`, the negation of a decimal zero, which is how dlt's INSERT
  writes it, though both keep it for the text `'-0.0'::double`; DuckDB keeps it from the
  parquet file a chunk of 50 rows or more is loaded from);
- timestamp: UTC, ISO 8601 with six fraction digits and `Z` (`0001-01-01T00:00:00.000000Z`);
  a naive value is UTC, text is parsed like dlt parses it (fraction beyond µs truncated);
- json: the value parsed (DuckDB gives the text, PostgreSQL the decoded `jsonb`), keys sorted,
  every number as its normalised decimal (`1E+308`, `0.1`, `1` for 1 and 1.0, `0` for -0.0:
  `jsonb` stores numbers as `numeric`), strings `\\u`-escaped to ASCII;
- a row: its canonical values under their column names, as compact JSON with sorted keys.
"""

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import dlt
import pytest

from routera_archive.dataset import canonical
from routera_archive.dataset.canonical import canonical_timestamp, canonical_value
from routera_archive.dataset.fields import FieldColumnsByType
from routera_archive.dataset.loading import load_fresh
from routera_archive.dataset.tables import (
    FIELDS_COLUMNS,
    LOG_COLUMNS,
    RUNS_COLUMNS,
    AuditRows,
    archives_columns,
    audit_trail,
    build_audit_rows,
    run_history,
)
from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status, parse_archived_record
from routera_archive.names import FIELDS_TABLE, LOG_TABLE, RUNS_TABLE
from routera_archive.objects import ObjectType
from routera_archive.redaction import REDACTED, REDACTOR
from routera_archive.run.result import RunReport
from routera_archive_pipelines.factory import make_pipeline
from tests.conftest import POSTGRES_SKIP_REASON, POSTGRES_URL, postgres_available


# ----------------------------------------------------------------------- the canonical form
def canonical_row(row: Mapping[str, Any], types: Mapping[str, str]) -> str:
    """The library's canonical row, of the columns of `types` only (a sent row and a stored
    one have different extra columns: `_dlt_*`, and a record's own fields)."""
    return canonical.canonical_row({name: row.get(name) for name in types}, types)


def row_sha256(row: Mapping[str, Any], types: Mapping[str, str]) -> str:
    return hashlib.sha256(canonical_row(row, types).encode("ascii")).hexdigest()


def declared(columns: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(column["data_type"]) for name, column in columns.items()}


def hashed_columns(table: str) -> dict[str, str]:
    """The columns a row's hash covers: those the connector declares and writes itself. An
    audit table's record fields (`created_at`, `updated_at` and every custom field) are left
    to `record_sha256` over `raw_response` (and `snapshot_sha256`): dlt types them."""
    if table == LOG_TABLE:
        return declared(LOG_COLUMNS)
    if table == FIELDS_TABLE:
        return declared(FIELDS_COLUMNS)
    if table == RUNS_TABLE:
        return declared(RUNS_COLUMNS)
    kind = next(kind for kind in ObjectType if kind.table == table)
    own = declared(archives_columns(kind))
    return {
        name: data_type
        for name, data_type in own.items()
        if name not in kind.default_properties or name in ("id", "archived")
    }


# Each table's key, in the order a run's rows are hashed.
ROW_KEYS: dict[str, tuple[str, ...]] = {
    LOG_TABLE: ("outcome_id",),
    **{kind.table: ("id",) for kind in ObjectType},
    FIELDS_TABLE: ("object_type", "field_key"),
}


def rows_sha256(rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """The hash of a run's rows: each table in `ROW_KEYS` order, its rows by key (as text,
    NULL first), each as `table`, key and row hash, one line each."""
    lines: list[str] = []
    for table, key in ROW_KEYS.items():
        types = hashed_columns(table)
        keyed = sorted(
            (json.dumps([row.get(k) for k in key]), row_sha256(row, types))
            for row in rows.get(table, [])
        )
        lines.extend(f"{table}\t{k}\t{digest}" for k, digest in keyed)
    return hashlib.sha256("\n".join(lines).encode("ascii")).hexdigest()


# ----------------------------------------------------------------------------- the rows
SECRET = "s3cr3t-token-value-42"
RUN_1 = "20260101T000000Z-canon001"
RUN_2 = "20260101T010000Z-canon002"
LONG_TEXT = "ünïcödé 🙂 " * 20_000  # 220,000 characters
CONTACT_BODY = json.dumps(
    {
        "id": "c1",
        "archived": "2026-05-28T12:00:00.123456789+02:00",
        "archived_by": "Zoë 名前",
        "email": "e\u0301 NFD, not NFC \r\n\t",
        "first_name": "a\u0000b",
        "created_at": "0001-01-01T00:00:00Z",
        "updated_at": "9999-12-31T23:59:59.9999999Z",
        "big": 2**63 - 1,
        "small": -(2**63),
        "uint": 2**64 - 1,
        "tenth": 0.1,
        "huge": 1e308,
        "negative_zero": -0.0,
        "tiny": 5e-324,
        "whole": 1.0,
        "not_a_number": float("nan"),
        "opted_in": True,
        "never_set": None,
        "looks_like_a_time": "2024-05-01T10:00:00+05:30",
        "looks_like_a_date": "2024-05-01",
        "nested": {"b": 1, "a": [1.0, -0.0, 1e308, 1e16, 0.1, "x\u0000", None, True], "c": {}},
        "a_list": [3, 2, {"z": 1, "y": 2**63 - 1}],
        "empty_list": [],
        "empty_object": {},
        "long": LONG_TEXT,
        "echoed": f"Bearer {SECRET}",
    }
)
SNAPSHOT_BODY = json.dumps({"id": "c1", "archived": False, "phone": "+44 20", "score": 7})
COMPANY_BODY = '{"id":"co1","archived":"2026-05-28T10:00:00Z","name":"Ünïcode Ltd","employees":12}'
FAILED_BODY = f'{{"error": "boom\u0000", "echo": "{SECRET}"}}'


def outcomes() -> list[ArchiveOutcome]:
    _, contact, as_text = parse_archived_record(CONTACT_BODY, ObjectType.CONTACTS, "c1")
    _, company, _ = parse_archived_record(COMPANY_BODY, ObjectType.COMPANIES, "co1")
    return [
        ArchiveOutcome(
            request=ArchiveRequest(
                request_id="req\u00001",
                object_id="c1",
                requested_by="ana@example.com",
                reason=LONG_TEXT,
                requested_at=datetime(
                    2026, 5, 27, 9, 30, 1, 5, tzinfo=timezone(timedelta(hours=2))
                ),
            ),
            status=Status.ARCHIVED,
            http_status=200,
            attempts=1,
            processed_at=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            record={**json.loads(SNAPSHOT_BODY), **contact},
            raw_response=CONTACT_BODY,
            snapshot_response=SNAPSHOT_BODY,
            record_source="snapshot+delete",
            text_fields=as_text,
        ),
        ArchiveOutcome(
            request=ArchiveRequest(
                request_id="req-2", object_type=ObjectType.COMPANIES, object_id="co1"
            ),
            status=Status.ALREADY_ARCHIVED,
            http_status=404,
            attempts=2,
            processed_at=datetime(2026, 5, 28, 10, 0, tzinfo=UTC),
            record=company,
            raw_response=COMPANY_BODY,
            record_source="get",
            recovered=True,
        ),
        ArchiveOutcome(
            request=ArchiveRequest(request_id="req-3", object_id="c9"),
            status=Status.FAILED,
            http_status=503,
            error=f"HTTP 503 \u0000 {SECRET}",
            attempts=5,
            processed_at=datetime(1, 1, 1, tzinfo=UTC),
            raw_response=FAILED_BODY,
        ),
    ]


def run_row() -> dict[str, Any]:
    report = RunReport(
        run_id=RUN_1,
        mode="run",
        started_at=datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
        base_url="https://api.routera.io",
        destination="x",
        dataset="x",
        finished_at=datetime(2026, 1, 1, 0, 0, 1, 250000, tzinfo=UTC),
        pending_at_start=3,
        new_columns={"contact_archives": ["score", "phone"], "archive_log": []},
        renamed_fields={"Lead Score": "lead_score_1a2b3c4d"},
        type_changes=[],
        notes=["zeta", "alpha 🙂"],
    )
    report.counts.update({"archived": 1, "failed": 1, "already_archived": 1})
    report.counts_by_type = {"contacts": {"failed": 1, "archived": 1}}  # type: ignore[dict-item]
    row = report.run_row()
    # Not what a run writes today: numbers `jsonb` normalises, to pin what it does to them.
    row["held_back_fields"] = {"numbers": [1.0, -0.0, 1e308, 1e16, 0.1, 2**63 - 1], "b": {}}
    return row


# ------------------------------------------------------------- one dataset per destination
@dataclass
class Loaded:
    destination: str
    before: AuditRows
    run: dict[str, Any]
    second: AuditRows
    # table -> rows as read back, each a dict of column -> value (`_dlt_*` included).
    after: dict[str, list[dict[str, Any]]]
    # table -> column -> data type, as the dataset's schema holds it after the loads.
    types: dict[str, dict[str, str]]
    # What a session in another time zone gets for year 1 and year 9999 (see the test).
    other_zone: dict[str, Any]


def read_table(client: Any, table: str) -> list[dict[str, Any]]:
    with client.execute_query(f"SELECT * FROM {client.make_qualified_table_name(table)}") as cur:
        names = [column[0] for column in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


ZONE_SETTING = {"duckdb": "SET TimeZone = '{}'", "postgres": "SET TIME ZONE '{}'"}


def read_in_zone(client: Any, destination: str, zone: str) -> dict[str, Any]:
    """Year 1 and year 9999 read in a session whose time zone is not UTC."""
    setting = ZONE_SETTING[destination]
    table = client.make_qualified_table_name(LOG_TABLE)
    found: dict[str, Any] = {}
    client.execute_sql(setting.format(zone))
    try:
        for name, year in (("year 1", 1), ("year 9999", 9999)):
            try:
                rows = client.execute_sql(
                    f"SELECT processed_at FROM {table} "
                    f"WHERE EXTRACT(year FROM processed_at AT TIME ZONE 'UTC') = {year}"
                )
                found[name] = rows[0][0]
            except ValueError as exc:  # psycopg2 cannot make the local datetime
                found[name] = exc
    finally:
        client.execute_sql(setting.format("UTC"))
    return found


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def loaded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Loaded]:
    destination = str(request.param)
    if destination == "postgres" and not postgres_available():
        pytest.skip(POSTGRES_SKIP_REASON)
    folder = tmp_path_factory.mktemp(f"canon_{destination}")
    dataset = f"ra_{uuid.uuid4().hex[:10]}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
        patch.setenv("DLT_DATA_DIR", str(folder / "dlt_data"))
        if destination == "postgres":
            patch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
        pipeline = make_pipeline(
            destination,
            dataset,
            duckdb_file=folder / "canon.duckdb" if destination == "duckdb" else None,
            pipelines_dir=folder / "pipelines",
        )
        REDACTOR.remember(SECRET)
        try:
            yield load_and_read(pipeline, destination)
        finally:
            REDACTOR.forget_all()
            if destination == "postgres":
                with pipeline.sql_client() as client:
                    for name in (dataset, f"{dataset}_staging"):
                        client.execute_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def load_and_read(pipeline: dlt.Pipeline, destination: str) -> Loaded:
    columns = FieldColumnsByType()
    first = outcomes()
    before = build_audit_rows(first, RUN_1, columns)
    load_fresh(pipeline, audit_trail(before))
    run = run_row()
    load_fresh(pipeline, run_history([run]))
    # Run 2 meets contact c1 again: its audit row is dropped by the insert-only merge.
    again = first[0].model_copy(update={"outcome_id": uuid.uuid4().hex, "status": Status.DUPLICATE})
    second = build_audit_rows([again], RUN_2, columns)
    load_fresh(pipeline, audit_trail(second))
    schema = pipeline.default_schema
    tables = (LOG_TABLE, FIELDS_TABLE, RUNS_TABLE, "contact_archives", "company_archives")
    types = {t: declared(schema.tables[t]["columns"]) for t in tables}
    with pipeline.sql_client() as client:
        # As verify must: the session's zone is the machine's unless set (see the test).
        client.execute_sql(ZONE_SETTING[destination].format("UTC"))
        after = {table: read_table(client, table) for table in tables}
        other_zone = read_in_zone(client, destination, "America/New_York")
    return Loaded(destination, before, run, second, after, types, other_zone)


def by(rows: list[dict[str, Any]], *key: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(row[k] for k in key): row for row in rows}


# ---------------------------------------------------------------------------- the findings
def test_our_columns_canonicalise_to_the_same_text_after_the_load(loaded: Loaded) -> None:
    """Every column the connector itself declares (the log, custom_fields, the run row, the
    audit tables' own columns): canonical before == canonical after, every type and table."""
    own = {
        LOG_TABLE: declared(LOG_COLUMNS),
        FIELDS_TABLE: declared(FIELDS_COLUMNS),
        RUNS_TABLE: declared(RUNS_COLUMNS),
        "contact_archives": declared(archives_columns(ObjectType.CONTACTS)),
        "company_archives": declared(archives_columns(ObjectType.COMPANIES)),
    }
    # The record's own fields are not ours: created_at/updated_at come as text (see below).
    for table in ("contact_archives", "company_archives"):
        for record_field in ("created_at", "updated_at"):
            own[table].pop(record_field)
    after_log = by(loaded.after[LOG_TABLE], "outcome_id")
    log = loaded.before.log + loaded.second.log
    assert set(after_log) == {(row["outcome_id"],) for row in log}
    for row in log:
        stored = after_log[(row["outcome_id"],)]
        assert canonical_row(row, own[LOG_TABLE]) == canonical_row(stored, own[LOG_TABLE])
    after_fields = by(loaded.after[FIELDS_TABLE], "object_type", "field_key")
    assert len(after_fields) == len(loaded.before.fields) > 20
    for row in loaded.before.fields:
        stored = after_fields[(row["object_type"], row["field_key"])]
        assert canonical_row(row, own[FIELDS_TABLE]) == canonical_row(stored, own[FIELDS_TABLE])
    (stored_run,) = loaded.after[RUNS_TABLE]
    assert canonical_row(loaded.run, own[RUNS_TABLE]) == canonical_row(stored_run, own[RUNS_TABLE])
    for kind, rows in loaded.before.archives.items():
        (row,) = rows
        (stored,) = loaded.after[kind.table]
        assert canonical_row(row, own[kind.table]) == canonical_row(stored, own[kind.table])
        assert row_sha256(row, own[kind.table]) == row_sha256(stored, own[kind.table])


def test_values_that_come_back_otherwise_than_they_went_in(loaded: Loaded) -> None:
    """The raw differences the canonical form absorbs, named, on each destination."""
    (contact,) = loaded.before.archives[ObjectType.CONTACTS]
    (stored,) = loaded.after["contact_archives"]
    (run,) = loaded.after[RUNS_TABLE]
    log = by(loaded.after[LOG_TABLE], "request_id")
    postgres = loaded.destination == "postgres"
    # Timestamps come back as aware datetimes in UTC (the session's zone: see below).
    assert contact["requested_at"].utcoffset() == timedelta(hours=2)
    assert stored["requested_at"] == contact["requested_at"]
    assert stored["requested_at"].utcoffset() == timedelta(0)
    assert stored["requested_at"].microsecond == 5
    assert log[("req-3",)]["processed_at"] == datetime(1, 1, 1, tzinfo=UTC)
    assert log[("req\\x001",)]["processed_at"] == datetime(
        9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC
    )
    # `archived` is parsed by us, the nanoseconds truncated before the load.
    assert stored["archived"] == datetime(2026, 5, 28, 10, 0, 0, 123456, tzinfo=UTC)
    # -0.0 in a double column comes back 0.0 from dlt's INSERT literal, whatever the
    # destination (DuckDB keeps the sign from a chunk's parquet file: test_file_format.py).
    assert str(contact["negative_zero"]) == "-0.0" and str(stored["negative_zero"]) == "0.0"
    assert stored["huge"] == 1e308 and stored["tiny"] == 5e-324 and stored["tenth"] == 0.1
    assert stored["big"] == 2**63 - 1 and stored["small"] == -(2**63)
    # Text is byte-exact: no Unicode normalisation, CR/LF and tabs kept, 220,000 characters.
    assert stored["email"] == "e\u0301 NFD, not NFC \r\n\t"
    assert stored["long"] == LONG_TEXT and stored["reason"] == LONG_TEXT
    assert stored["first_name"] == "a\\x00b"  # the NUL stand-in, made before the load
    # json: DuckDB gives the text dlt wrote (orjson, key order kept); PostgreSQL the decoded
    # jsonb: keys in jsonb's order, 1e308 and 1e16 made integers, -0.0 made 0.0.
    if postgres:
        assert stored["nested"] == {
            "a": [1.0, 0.0, 10**308, 10**16, 0.1, "x\\x00", None, True],
            "b": 1,
            "c": {},
        }
        assert list(stored["nested"]) == ["a", "b", "c"]
        # jsonb orders keys by length, then bytewise; the run wrote them in Status order.
        assert list(run["counts"]) == [
            "failed",
            "invalid",
            "archived",
            "duplicate",
            "not_found",
            "already_archived",
        ]
        assert run["held_back_fields"]["numbers"] == [1.0, 0.0, 10**308, 10**16, 0.1, 2**63 - 1]
        assert stored["empty_list"] == [] and stored["empty_object"] == {}
    else:
        assert stored["nested"] == (
            '{"b":1,"a":[1.0,-0.0,1e+308,1e+16,0.1,"x\\\\x00",null,true],"c":{}}'
        )
        assert run["held_back_fields"] == (
            '{"numbers":[1.0,-0.0,1e+308,1e+16,0.1,9223372036854775807],"b":{}}'
        )
        assert stored["empty_list"] == "[]" and stored["empty_object"] == "{}"
        assert list(json.loads(run["counts"])) == [status.value for status in Status]
    assert canonical_value(stored["nested"], "json") == (
        '{"a":[1,0,1E+308,1E+16,0.1,"x\\\\x00",null,true],"b":1,"c":{}}'
    )
    # Empty JSON stays empty JSON, not NULL, on both.
    assert canonical_value(run["type_changes"], "json") == "[]"
    assert canonical_value(run["renamed_fields"], "json") == '{"Lead Score":"lead_score_1a2b3c4d"}'


def test_a_record_field_may_come_back_as_another_type_than_it_was_sent(loaded: Loaded) -> None:
    """The record's own fields go in as decoded from the body and dlt types their columns:
    text that looks like a timestamp becomes one (its offset lost), a None makes no column,
    a value no column holds is text. So the row hash cannot cover them as sent: see the report
    (record_sha256 covers them through raw_response)."""
    (contact,) = loaded.before.archives[ObjectType.CONTACTS]
    (stored,) = loaded.after["contact_archives"]
    types = loaded.types["contact_archives"]
    # No decimal (or wei, date, time, binary) column appears: json.loads makes no Decimal and
    # every number a column cannot hold as bigint or double is kept as text.
    every_type = {t for table in loaded.types.values() for t in table.values()}
    assert every_type == {"text", "bigint", "double", "bool", "timestamp", "json"}
    assert contact["looks_like_a_time"] == "2024-05-01T10:00:00+05:30"
    assert types["looks_like_a_time"] == "timestamp"
    assert stored["looks_like_a_time"] == datetime(2024, 5, 1, 4, 30, tzinfo=UTC)
    assert types["looks_like_a_date"] == "text" and stored["looks_like_a_date"] == "2024-05-01"
    assert contact["created_at"] == "0001-01-01T00:00:00Z"
    assert stored["created_at"] == datetime(1, 1, 1, tzinfo=UTC)
    assert stored["updated_at"] == datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert "never_set" in contact and "never_set" not in stored and "never_set" not in types
    assert types["uint_as_text"] == "text" and stored["uint_as_text"] == "18446744073709551615"
    assert stored["not_a_number_as_text"] == "NaN"
    assert stored["echoed"] == f"Bearer {REDACTED}"  # masked in its column, as in raw_response
    # With the types the dataset's schema gives them, canonical before == after for every
    # field of the record (text parsed as a timestamp like dlt does).
    for name, data_type in types.items():
        if name.startswith("_dlt"):
            continue
        assert canonical_value(contact.get(name), data_type) == canonical_value(
            stored.get(name), data_type
        ), name


def test_raw_response_is_stored_as_the_connector_holds_it_after_scrubbing(loaded: Loaded) -> None:
    """`raw_response` comes back byte for byte as `_told` made it: the body with every known
    secret masked. So the hash verify can recompute is of the stored text."""
    (stored,) = loaded.after["contact_archives"]
    (company,) = loaded.after["company_archives"]
    masked = CONTACT_BODY.replace(SECRET, REDACTED)
    assert stored["raw_response"] == masked != CONTACT_BODY
    assert stored["snapshot_response"] == SNAPSHOT_BODY
    assert company["raw_response"] == COMPANY_BODY
    record_sha256 = hashlib.sha256(stored["raw_response"].encode("utf-8")).hexdigest()
    assert record_sha256 == hashlib.sha256(masked.encode("utf-8")).hexdigest()
    assert record_sha256 != hashlib.sha256(CONTACT_BODY.encode("utf-8")).hexdigest()
    log = by(loaded.after[LOG_TABLE], "request_id")
    # A failed body: NUL made visible and the secret masked.
    assert log[("req-3",)]["response_body"] == FAILED_BODY.replace("\u0000", "\\x00").replace(
        SECRET, REDACTED
    )
    assert log[("req-3",)]["error"] == f"HTTP 503 \\x00 {REDACTED}"


def test_a_session_in_another_time_zone_cannot_read_year_1_or_9999(loaded: Loaded) -> None:
    """verify must read in UTC (or cast timestamps to text itself): dlt's sql_client uses the
    session's zone, the machine's by default."""
    year_1, year_9999 = loaded.other_zone["year 1"], loaded.other_zone["year 9999"]
    if loaded.destination == "postgres":
        assert isinstance(year_1, ValueError) and "is out of range" in str(year_1)
        assert canonical_timestamp(year_9999) == "9999-12-31T23:59:59.999999Z"
    else:
        # DuckDB gives up on the conversion and returns the text.
        assert year_1 == "0001-01-01 00:00:00+00"
        assert canonical_timestamp(year_9999) == "9999-12-31T23:59:59.999999Z"


def test_what_a_run_loaded_is_what_the_tables_hold_not_what_it_sent(loaded: Loaded) -> None:
    """Run 2 sent an audit row for c1 again; the insert-only merge kept run 1's. Its log row
    is there. A run's rows hash must be taken from what the tables hold for it."""
    assert [row["run_id"] for row in loaded.second.records] == [RUN_2]
    (stored,) = loaded.after["contact_archives"]
    assert stored["run_id"] == RUN_1
    runs = sorted(row["run_id"] for row in loaded.after[LOG_TABLE])
    assert runs == [RUN_1, RUN_1, RUN_1, RUN_2]

    def held(run_id: str) -> dict[str, list[dict[str, Any]]]:
        return {
            table: [
                row for row in rows if row.get("run_id", row.get("first_seen_run_id")) == run_id
            ]
            for table, rows in loaded.after.items()
        }

    def sent(rows: AuditRows) -> dict[str, list[dict[str, Any]]]:
        tables = {kind.table: records for kind, records in rows.archives.items()}
        return {LOG_TABLE: rows.log, FIELDS_TABLE: rows.fields, **tables}

    # Run 1's rows hash the same from what it sent and from what the tables hold.
    assert rows_sha256(sent(loaded.before)) == rows_sha256(held(RUN_1))
    # Run 2's do not: the audit row it sent is not in the tables.
    assert rows_sha256(sent(loaded.second)) != rows_sha256(held(RUN_2))
    assert rows_sha256({LOG_TABLE: loaded.second.log}) == rows_sha256(held(RUN_2))
