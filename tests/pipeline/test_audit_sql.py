"""Every query in `connector/routera_archive/audit/sql/` and every ```sql block of README's
"## Audit queries" section, run as a user would run it against a dataset `routera_archive` made
by real runs.

DuckDB: the file is `audit_test.duckdb` (a file named like the dataset would make
`routera_archive.<table>` ambiguous) and the text runs as is, through duckdb itself.
PostgreSQL: the dataset has a name of its own (the server is shared), put in for
`routera_archive.`. Each query must return its expected rows, not merely run.
"""

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest

from routera_archive_pipelines.factory import make_pipeline
from routera_archive_sandbox import SandboxConfig, SandboxServer
from routera_archive_sandbox.state import SandboxState
from tests.conftest import POSTGRES_SKIP_REASON, POSTGRES_URL, postgres_available
from tests.pipeline.test_report import (
    DAY_1,
    DAY_2,
    DAY_4,
    EXPECTED_PER_DAY,
    HOSTILE_FIELD,
    HOSTILE_REQUESTER,
    SCRIPT,
    UI_USER,
    Clock,
    build_dataset,
)

ROOT = Path(__file__).resolve().parents[2]
AUDIT_DIR = ROOT / "connector" / "routera_archive" / "audit" / "sql"
DATASET = "routera_archive"


def audit_files() -> list[Path]:
    return sorted(AUDIT_DIR.glob("*.sql"))


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Audit queries\n")
    following = text.find("\n## ", start + 1)
    section = text[start : following if following != -1 else len(text)]
    return re.findall(r"```sql\n(.*?)```", section, re.S)


def normalized(sql: str) -> str:
    """The query without comments, whitespace runs or the final semicolon."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return " ".join(" ".join(lines).split()).rstrip(";").strip()


@dataclass
class Dataset:
    destination: str
    schema: str
    facts: dict[str, Any]
    run: Callable[[str], list[tuple[Any, ...]]]


def _pipeline(destination: str, schema: str, base: Path) -> dlt.Pipeline:
    return make_pipeline(
        destination,
        schema,
        duckdb_file=base / "audit_test.duckdb" if destination == "duckdb" else None,
        pipelines_dir=base / "pipelines",
    )


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def dataset(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dataset]:
    destination = str(request.param)
    if destination == "postgres" and not postgres_available():
        pytest.skip(POSTGRES_SKIP_REASON)
    base = tmp_path_factory.mktemp(f"audit_{destination}")
    schema = DATASET if destination == "duckdb" else f"ra_audit_{uuid.uuid4().hex[:8]}"
    clock = Clock(DAY_1)
    config = SandboxConfig(port=0, contacts=40, seed=23)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DLT_DATA_DIR", str(base / "dlt_data"))
        patch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
        pipe = _pipeline(destination, schema, base)
        state = SandboxState(contacts=config.contacts, seed=config.seed, clock=clock)
        with SandboxServer(config, state) as server:
            facts = build_dataset(pipe, server, clock)

        if destination == "duckdb":

            def run(sql: str) -> list[tuple[Any, ...]]:
                # As `duckdb audit_test.duckdb < file.sql` would: the text as is.
                with duckdb.connect(str(base / "audit_test.duckdb"), read_only=True) as db:
                    return [tuple(row) for row in db.execute(sql).fetchall()]

        else:
            import psycopg2

            def run(sql: str) -> list[tuple[Any, ...]]:
                text = sql.replace(f"{DATASET}.", f'"{schema}".')
                connection = psycopg2.connect(POSTGRES_URL.replace(":trust", ""))
                try:
                    with connection.cursor() as cursor:
                        cursor.execute(text)
                        return [tuple(row) for row in cursor.fetchall()]
                finally:
                    connection.close()

        yield Dataset(destination, schema, facts, run)
        if destination == "postgres":
            with pipe.sql_client() as client:
                for name in (schema, f"{schema}_staging"):
                    client.execute_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def with_params(sql: str, **values: str) -> str:
    """Put values into a query's `params` CTE (its placeholders are the default values)."""
    placeholders = {
        "object_type": "'OBJECT-TYPE'",
        "object_id": "'OBJECT-ID'",
        "since": "'2026-01-01 00:00:00+00'",
        "before": "'2027-01-01 00:00:00+00'",
    }
    for name, value in values.items():
        assert placeholders[name] in sql, name
        sql = sql.replace(placeholders[name], "'" + value.replace("'", "''") + "'")
    return sql


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# What each file must return on the module's dataset (contacts only: the other types' tables
# exist, empty). Each takes the query's text, the dataset, and checks the rows itself
# (running the query with parameters where it has some).
Check = Callable[[str, Dataset], None]


def check_who_archived_what(sql: str, ds: Dataset) -> None:
    rows = ds.run(sql)
    assert len(rows) == 10 and {r[0] for r in rows} == {"contacts"}
    assert [utc(r[2]).date() for r in rows] == sorted(
        (d for d, n in EXPECTED_PER_DAY.items() for _ in range(n)), reverse=True
    )
    by_id = {r[1]: r for r in rows}
    assert by_id[ds.facts["recovered"]][3:5] == (UI_USER, "alice@acme.test")
    assert by_id[ds.facts["hostile_contact"]][4:6] == (HOSTILE_REQUESTER, SCRIPT)


def check_pending(sql: str, ds: Dataset) -> None:
    rows = ds.run(sql)
    assert len(rows) == 3 and {r[1] for r in rows} == {"contacts"}
    assert {ds.facts["still_failing"], *ds.facts["later"]} <= {v for r in rows for v in r}


def check_outcomes_per_run(sql: str, ds: Dataset) -> None:
    first, second, third, _dry = ds.facts["run_ids"]
    assert set(ds.run(sql)) == {
        (first, "contacts", "archived", 4),
        (first, "contacts", "already_archived", 1),
        (first, "contacts", "duplicate", 1),
        (first, "contacts", "failed", 2),
        (first, "contacts", "invalid", 1),
        (first, "contacts", "not_found", 1),
        (second, "contacts", "archived", 4),
        (second, "contacts", "failed", 1),
        (third, "contacts", "archived", 1),
        (third, "contacts", "failed", 1),
    }


def check_recovered(sql: str, ds: Dataset) -> None:
    rows = ds.run(sql)
    assert [(r[0], r[1], utc(r[2]).date(), r[3], r[4]) for r in rows] == [
        ("contacts", ds.facts["recovered"], DAY_1.date(), UI_USER, "get")
    ]


def check_who_archived_a_record(sql: str, ds: Dataset) -> None:
    assert ds.run(sql) == []  # the placeholder is no record
    recovered = ds.facts["recovered"]
    rows = ds.run(with_params(sql, object_type="contacts", object_id=recovered))
    assert len(rows) == 1
    row = rows[0]
    assert row[:2] == ("contacts", recovered)
    assert (row[3], row[4], row[5]) == (UI_USER, "alice@acme.test", "gdpr erasure")
    assert row[8] == ds.facts["run_ids"][0] and row[9] is True and row[10] == "get"
    # The same id as another type names another record, which is not in the trail.
    assert ds.run(with_params(sql, object_type="companies", object_id=recovered)) == []
    failing = with_params(sql, object_type="contacts", object_id=ds.facts["still_failing"])
    assert ds.run(failing) == []


def check_history(sql: str, ds: Dataset) -> None:
    assert ds.run(sql) == []
    healed = ds.run(
        with_params(sql, object_type="contacts", object_id=ds.facts["failed_then_archived"])
    )
    assert [(r[2], r[9]) for r in healed] == [
        ("failed", ds.facts["run_ids"][0]),
        ("archived", ds.facts["run_ids"][1]),
    ]
    failing = ds.run(with_params(sql, object_type="contacts", object_id=ds.facts["still_failing"]))
    assert [r[2] for r in failing] == ["failed"] * 3 and "archived" in failing[-1][4]


def check_by_requester_in_range(sql: str, ds: Dataset) -> None:
    whole = ds.run(sql)
    assert {(r[0], r[1], r[2]) for r in whole} == {
        ("alice@acme.test", "contacts", 6),
        (HOSTILE_REQUESTER, "contacts", 3),
        ("bob@acme.test", "contacts", 1),
    }
    day_2 = ds.run(
        with_params(sql, since="2026-06-02 00:00:00+00", before="2026-06-03 00:00:00+00")
    )
    assert [(r[0], r[2]) for r in day_2] == [(HOSTILE_REQUESTER, 3), ("alice@acme.test", 1)]
    assert all(utc(r[3]).date() == DAY_2.date() == utc(r[4]).date() for r in day_2)


def check_not_archived(sql: str, ds: Dataset) -> None:
    rows = ds.run(sql)
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("duplicate", "contacts", ds.facts["duplicate_contact"]),
        ("invalid", "contacts", "bad\tid"),
        ("not_found", "contacts", "no-such-contact"),
    ]
    duplicate = rows[0]
    assert duplicate[4] is not None and duplicate[4] != duplicate[1]  # duplicate_of


def check_failed_runs(sql: str, ds: Dataset) -> None:
    rows = ds.run(sql)
    assert [r[0] for r in rows] == ds.facts["run_ids"][:3][::-1]  # not the dry run
    assert {(r[3], r[4], r[5]) for r in rows} == {("run", 1, "completed with failures")}


def check_still_failing(sql: str, ds: Dataset) -> None:
    rows = ds.run(sql)
    assert len(rows) == 1
    row = rows[0]
    assert row[1] == ds.facts["still_failing"] and "archived" in row[2]
    assert (row[3], row[6], row[9]) == (200, 3, ds.facts["run_ids"][2])
    assert row[10:] == ("contacts", ds.facts["still_failing"])


def check_per_day(sql: str, ds: Dataset) -> None:
    rows = ds.run(sql)
    assert {r[1] for r in rows} == {"contacts"}
    assert {r[0]: r[2] for r in rows} == EXPECTED_PER_DAY
    assert DAY_4.hour == 23  # late in the day: a local-time date would be the 5th east of UTC


def check_custom_fields(sql: str, ds: Dataset) -> None:
    rows = ds.run(sql)
    assert {r[0] for r in rows} == {"contacts"}
    fields = {r[1]: r for r in rows}
    assert fields[HOSTILE_FIELD][5] == ds.facts["run_ids"][1]
    assert fields[HOSTILE_FIELD][6] == ds.facts["hostile_contact"]
    assert fields[HOSTILE_FIELD][2] != HOSTILE_FIELD  # a normalised column name
    assert len(rows) > 1 and [r[4] for r in rows] == sorted(r[4] for r in rows)


def check_backlog(sql: str, ds: Dataset) -> None:
    [(kind, pending, oldest)] = ds.run(sql)
    assert (kind, pending) == ("contacts", 3)
    enqueued = ds.run(
        "SELECT MIN(requested_at) FROM routera_archive.archive_queue "
        f"WHERE contact_id = '{ds.facts['still_failing']}'"
    )[0][0]
    assert oldest == enqueued


def check_all_archives(sql: str, ds: Dataset) -> None:
    rows = ds.run(sql)
    assert len(rows) == 10 and {r[0] for r in rows} == {"contacts"}
    assert ds.facts["recovered"] in {r[1] for r in rows}


CHECKS: dict[str, Check] = {
    "01_who_archived_what.sql": check_who_archived_what,
    "02_pending_requests.sql": check_pending,
    "03_outcomes_per_run.sql": check_outcomes_per_run,
    "04_recovered_records.sql": check_recovered,
    "05_who_archived_a_record.sql": check_who_archived_a_record,
    "06_history_of_a_record.sql": check_history,
    "07_archives_by_requester_in_range.sql": check_by_requester_in_range,
    "08_requests_not_archived.sql": check_not_archived,
    "09_failed_runs.sql": check_failed_runs,
    "10_requests_still_failing.sql": check_still_failing,
    "11_archives_per_day.sql": check_per_day,
    "12_custom_fields_first_seen.sql": check_custom_fields,
    "13_pending_backlog_age.sql": check_backlog,
    "14_all_archives.sql": check_all_archives,
}


def test_every_audit_file_has_a_check_a_header_and_one_query() -> None:
    names = [path.name for path in audit_files()]
    assert names == sorted(CHECKS)
    for path in audit_files():
        text = path.read_text(encoding="utf-8")
        assert text.startswith("-- "), f"{path.name} has no comment header"
        body = normalized(text)
        assert ";" not in body, f"{path.name} holds more than one statement"
        assert "routera_archive." in body
        named = {"params", *re.findall(r"(?:WITH|,)\s+(\w+)\s+AS\s*\(", body, re.I)}
        for table in re.findall(r"(?<!DISTINCT )\b(?:FROM|JOIN)\s+([A-Za-z_][\w.]*)", body, re.I):
            assert table in named or table.startswith("routera_archive."), (path.name, table)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_audit_file_returns_what_it_should(dataset: Dataset, name: str) -> None:
    CHECKS[name]((AUDIT_DIR / name).read_text(encoding="utf-8"), dataset)


def test_readme_audit_queries_are_files_of_sql_audit_and_return_what_they_should(
    dataset: Dataset,
) -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 3, "README's Audit queries section shows too few queries"
    files = {normalized(path.read_text(encoding="utf-8")): path.name for path in audit_files()}
    for block in blocks:
        name = files.get(normalized(block))
        assert name is not None, f"this README query is not a shipped audit query file:\n{block}"
        CHECKS[name](block, dataset)
