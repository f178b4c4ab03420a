"""How long `routera-archive run --dry-run` takes, and how much memory, on a very long queue.

Issue 12 (item 9): a dry run on a 1,000,000-row queue took 431 s and 633 MB, because the pending
SQL (anti-join, de-duplication, window) ran again for every 2,000-row page. Target: under 15 s
and 300 MB peak RSS. The figure is taken the way a scheduler sees it, as for every other figure
here (`harness.run_process`): the installed `routera-archive` script as a fresh process, wall
time from its start to its exit, peak RSS from the kernel (`wait4`), against the sandbox in a
process of its own (`sandbox_process`), which answers the dry run's one GET (the share check).

The queue is written with SQL in the destination (DuckDB's `range()`, PostgreSQL's
`generate_series`), as a dbt model would: a million `enqueue` rows through dlt would take
minutes and measure `enqueue`, not the dry run. Its rows are those `enqueue` writes (uuid-like
contact and request ids, who, why, when), with 1% of them a second request for the contact
before (duplicates) and 0.01% an id with surrounding spaces (invalid), so that each of the
dry run's classifications is exercised; the expected counts follow from those rules and the run
must report exactly them, or the benchmark fails. `max_archives` is set to the queue's length
and `max_share` to 0, so the verdict passes, every request is read and planned, and the share
check still makes its one GET (checked in the sandbox's stats).

Usage: `python bench/dry_run_1m.py [--rows N] [--destination duckdb|postgres] [--save NAME]`.
Prints one line per run and, last, one JSON line; `--save` also writes `results/NAME.json`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root holds `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import BENCH_DIR, CLI, machine_info, run_process
from bench.sandbox_process import Sandbox, fresh_sandbox

POSTGRES_URL = "postgresql://postgres:trust@127.0.0.1:5432/test"
DATASET = "routera_archive"
DUCKDB_FILE = "routera_audit.duckdb"
SANDBOX_CONTACTS = 1000
# Every DUPLICATE_EVERY-th row asks again for the contact of the row before it; every
# INVALID_EVERY-th row's contact id has surrounding spaces (never a Routera id).
DUPLICATE_EVERY = 100
INVALID_EVERY = 10_000
TARGET_S = 15.0
TARGET_MB = 300.0


def queue_select(rows: int, series: str) -> str:
    """The queue's rows as one SELECT over `series` (a column `i`, 0 .. rows-1): the same SQL
    on DuckDB and PostgreSQL, so both destinations hold the same queue."""

    def uuid_of(value: str) -> str:
        digest = f"md5({value})"
        parts = ", ".join(
            f"substr({digest}, {start}, {length})"
            for start, length in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
        )
        return f"concat_ws('-', {parts})"

    contact_row = f"CASE WHEN i % {DUPLICATE_EVERY} = {DUPLICATE_EVERY - 1} THEN i - 1 ELSE i END"
    contact = uuid_of(f"'contact-' || CAST({contact_row} AS VARCHAR)")
    contact = f"CASE WHEN i % {INVALID_EVERY} = 7 THEN ' ' || {contact} || ' ' ELSE {contact} END"
    return (
        f"SELECT {contact} AS contact_id, "
        f"md5('request-' || CAST(i AS VARCHAR)) AS request_id, "
        "'bench' AS requested_by, 'gdpr' AS reason, "
        "TIMESTAMP '2026-01-01 00:00:00' + i * INTERVAL '1 millisecond' AS requested_at "
        f"FROM {series}"
    )


def expected_counts(rows: int) -> dict[str, int]:
    """The plan the dry run must report for `queue_select(rows)`: a duplicate row's request is
    later (`requested_at`) than its contact's first, so the first is archived and it is the
    duplicate; an invalid id is never a duplicate (its contact is never asked for again)."""
    invalid = sum(1 for i in range(rows) if i % INVALID_EVERY == 7)
    duplicate = sum(1 for i in range(rows) if i % DUPLICATE_EVERY == DUPLICATE_EVERY - 1)
    return {"archive": rows - invalid - duplicate, "duplicate": duplicate, "invalid": invalid}


def build_duckdb_queue(workdir: Path, rows: int) -> dict[str, str]:
    import duckdb

    with duckdb.connect(str(workdir / DUCKDB_FILE)) as connection:
        connection.execute(f"CREATE SCHEMA {DATASET}")
        series = f"(SELECT range AS i FROM range({int(rows)})) s"
        connection.execute(f"CREATE TABLE {DATASET}.archive_queue AS {queue_select(rows, series)}")
    return {}


def build_postgres_queue(rows: int, dataset: str) -> dict[str, str]:
    import psycopg2

    with psycopg2.connect(POSTGRES_URL.replace(":trust", "")) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{dataset}" CASCADE')
            cursor.execute(f'DROP SCHEMA IF EXISTS "{dataset}_staging" CASCADE')
            cursor.execute(f'CREATE SCHEMA "{dataset}"')
            series = f"generate_series(0, {int(rows) - 1}) AS s(i)"
            cursor.execute(
                f'CREATE TABLE "{dataset}".archive_queue AS {queue_select(rows, series)}'
            )
            cursor.execute(f'ANALYZE "{dataset}".archive_queue')
    return {"DESTINATION__POSTGRES__CREDENTIALS": POSTGRES_URL}


def drop_postgres_dataset(dataset: str) -> None:
    import psycopg2

    with psycopg2.connect(POSTGRES_URL.replace(":trust", "")) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for name in (dataset, f"{dataset}_staging"):
                cursor.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def plan_counts(stdout: str) -> dict[str, int]:
    """`would handle: archive 989901, duplicate 10000, invalid 99` from the CLI's summary."""
    match = re.search(r"would handle: (.*)", stdout)
    if match is None:
        return {}
    return {
        name: int(count)
        for name, count in (part.rsplit(" ", 1) for part in match[1].strip().split(", "))
    }


def dry_run(rows: int, destination: str, workdir: Path, sandbox: Sandbox) -> dict[str, Any]:
    """Build the queue, run the dry run once, and check what it reported."""
    dataset = DATASET if destination == "duckdb" else f"bench_dry_{rows}"
    started = time.perf_counter()
    extra = (
        build_duckdb_queue(workdir, rows)
        if destination == "duckdb"
        else build_postgres_queue(rows, dataset)
    )
    built_s = time.perf_counter() - started
    sandbox.reset_stats()
    command = [CLI, "run", "--dry-run", "--destination", destination, "--dataset", dataset]
    command += ["--max-archives", str(rows)]
    env = sandbox.env(workdir, SOURCES__ROUTERA__MAX_SHARE="0", **extra)
    try:
        process = run_process(
            f"dry-run-{destination}-{rows}", command, cwd=workdir, env=env, sandbox=sandbox
        )
    finally:
        if destination == "postgres":
            drop_postgres_dataset(dataset)
    by_method = sandbox.stats()["totals"]["by_method"]
    counts = plan_counts(process.stdout)
    problems = []
    if process.exit_code != 0:
        problems.append(f"exit code {process.exit_code}: {process.stderr[-2000:]}")
    if counts != expected_counts(rows):
        problems.append(f"plan {counts}, expected {expected_counts(rows)}")
    if by_method != {"POST": 1, "GET": 1}:
        problems.append(f"API requests {by_method}, expected one token POST and one GET")
    return {
        "destination": destination,
        "rows": rows,
        "queue_build_s": round(built_s, 2),
        "wall_s": round(process.wall_s, 2),
        "peak_rss_mb": round(process.peak_rss_mb, 1),
        "cpu_s": round(process.cpu_s, 2),
        "other_cores": round(process.other_cores, 2),
        "exit_code": process.exit_code,
        "plan_counts": counts,
        "api_requests": by_method,
        "rss_series": process.rss_series,
        "stdout": process.stdout,
        "problems": problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--destination", choices=("duckdb", "postgres"), action="append")
    parser.add_argument("--save", metavar="NAME", help="also write bench/results/NAME.json")
    args = parser.parse_args()
    destinations = args.destination or ["duckdb"]
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    root = Path(tempfile.mkdtemp(prefix="dry_run_bench_"))
    results = []
    try:
        with fresh_sandbox(root / "sandbox", SANDBOX_CONTACTS, 0.0) as sandbox:
            for destination in destinations:
                workdir = root / destination
                workdir.mkdir(parents=True)
                result = dry_run(args.rows, destination, workdir, sandbox)
                met = result["wall_s"] < TARGET_S and result["peak_rss_mb"] < TARGET_MB
                problems = "; ".join(result["problems"])
                print(
                    f"{destination}, {args.rows:,} pending: {result['wall_s']:.1f} s, "
                    f"peak RSS {result['peak_rss_mb']:.0f} MB, CPU {result['cpu_s']:.1f} s "
                    f"(target < {TARGET_S:g} s, < {TARGET_MB:g} MB: {'met' if met else 'MISSED'})"
                    f"{'; PROBLEMS: ' + problems if problems else ''}"
                )
                results.append(result)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary = {
        "started": started,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine_info(),
        "results": results,
    }
    if args.save:
        (BENCH_DIR / "results" / f"{args.save}.json").write_text(json.dumps(summary, indent=1))
    brief = [{k: v for k, v in r.items() if k not in ("rss_series", "stdout")} for r in results]
    print(json.dumps({"started": summary["started"], "results": brief}))
    if any(r["problems"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
