"""A dry run reads the pending requests with one query, however long the queue (issue 12, #9).

Re-running the pending SQL (anti-join, de-duplication, window) for every page made a dry run of
1,000,000 pending requests take 431 s: each page paid for the whole queue again. These tests
count the statements that carry the pending SQL while a dry run plans a queue of several pages,
on DuckDB and PostgreSQL, and check that the plan it reports is still the one the real run then
carries out (its order, duplicates, invalid ids and request identity).
"""

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dlt
import pytest

import routera_archive.run.runner as runner
from routera_archive.dataset.enqueue import enqueue
from routera_archive.dataset.queue import PendingQueue, PendingSummary, Shard
from routera_archive.errors import ExitCode
from routera_archive.models import Status
from routera_archive.run.runner import ArchiveRun, RunOptions, RunReport
from routera_archive_sandbox import SandboxServer
from tests.conftest import TWINNED, source_config
from tests.pipeline.test_run import active_ids, insert_queue_row

# Only the pending SQL has this window (queue.pending_sql); the queries around it (columns,
# the run row) do not.
PENDING_SQL_MARK = "FIRST_VALUE(r.request_id)"
PAGE = 4


@pytest.fixture
def pending_queries(pipeline: dlt.Pipeline, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement carrying the pending SQL that any sql_client of this destination runs
    (`execute_sql` goes through `execute_query` in dlt's clients, DuckDB's and PostgreSQL's)."""
    seen: list[str] = []
    with pipeline.sql_client() as client:
        client_class = type(client)
    original = client_class.execute_query

    @contextmanager
    def counting(self: Any, query: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        if PENDING_SQL_MARK in str(query):
            seen.append(str(query))
        with original(self, query, *args, **kwargs) as cursor:
            yield cursor

    monkeypatch.setattr(client_class, "execute_query", counting)
    return seen


@pytest.fixture(autouse=True)
def _small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages (and the dry run's fetches) of 4 rows, so that a queue of a dozen spans several."""
    monkeypatch.setattr(runner, "QUEUE_PAGE_SIZE", PAGE)


def fill_queue(pipeline: dlt.Pipeline, server: SandboxServer) -> list[str]:
    """A queue of several pages with each kind of request a dry run tells apart: to archive,
    a duplicate on a later page than its first, a contact requested again under a request id
    that another contact also uses, an invalid id, and a contact that does not exist."""
    ids = active_ids(server, 9)
    rows = [{"contact_id": cid, "request_id": f"a-{n:02d}"} for n, cid in enumerate(ids[:8])]
    rows += [{"contact_id": ids[0], "request_id": "z-again"}]  # a duplicate, pages later
    rows += [{"contact_id": ids[8], "request_id": "a-00"}]  # a-00 again, for another contact
    rows += [{"contact_id": "no-such-contact", "request_id": "m-missing"}]
    enqueue(pipeline, rows)
    insert_queue_row(pipeline, " padded ")  # invalid: surrounding whitespace
    return ids


def dry_run(pipeline: dlt.Pipeline, server: SandboxServer, **options: Any) -> RunReport:
    return ArchiveRun(
        pipeline, source_config(server, max_share=0), RunOptions(dry_run=True, **options)
    ).execute()


def test_a_dry_run_over_many_pages_runs_the_pending_sql_once(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, pending_queries: list[str]
) -> None:
    fill_queue(pipeline, sandbox_server)
    pending_queries.clear()

    report = dry_run(pipeline, sandbox_server)

    assert report.exit_code == ExitCode.OK, report.error
    assert report.pending_at_start == 12 > 2 * PAGE
    assert report.plan_counts == {"archive": 10, "duplicate": 1, "invalid": 1}
    assert len(pending_queries) == 1, f"the pending SQL ran {len(pending_queries)} times"
    assert sandbox_server.state.stats()["totals"]["by_method"] == {"POST": 1, "GET": 1}


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_the_dry_runs_plan_is_what_the_real_run_then_does(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, pending_queries: list[str]
) -> None:
    """The plan, in request order, matches the log the real run writes request by request;
    a contact archived by an earlier run is a duplicate of its request in both."""
    ids = fill_queue(pipeline, sandbox_server)
    first = ArchiveRun(
        pipeline, source_config(sandbox_server, max_share=0), RunOptions(limit=2)
    ).execute()
    assert first.counts == {"archived": 2}  # both a-00: z-again is now a duplicate of one

    enqueue(pipeline, [{"contact_id": ids[1], "request_id": "b-dup"}])
    pending_queries.clear()

    plan = dry_run(pipeline, sandbox_server)

    assert len(pending_queries) == 1
    planned = [(p.request.request_id, p.request.object_id, p.action) for p in plan.plan]
    assert planned == sorted(planned, key=lambda p: (p[0], p[1] or ""))
    real = ArchiveRun(pipeline, source_config(sandbox_server, max_share=0), RunOptions()).execute()
    assert real.exit_code == ExitCode.OK, real.error
    with pipeline.sql_client() as client:
        log = client.execute_sql(
            f"SELECT request_id, contact_id, status FROM "
            f"{client.make_qualified_table_name('archive_log')} WHERE run_id = %s",
            real.run_id,
        )
    done = {(rid, cid, status) for rid, cid, status in log or ()}
    statuses = {"archive": {"archived", "not_found"}, "duplicate": {"duplicate"}}
    statuses["invalid"] = {"invalid"}
    for request_id, contact_id, action in planned:
        assert any((request_id, contact_id, status) in done for status in statuses[action]), (
            f"planned {action} for {request_id}/{contact_id}; the run wrote {sorted(done)}"
        )
    assert len(done) == len(planned) == plan.pending_at_start == 11
    assert Counter(p[2] for p in planned) == plan.plan_counts
    assert plan.plan_counts == {"archive": 8, "duplicate": 2, "invalid": 1}


def test_a_limited_dry_run_plans_the_first_requests_and_counts_all_pending(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, pending_queries: list[str]
) -> None:
    """`--limit` plans the first N in request order, as the run handles them, while the
    guardrails still see every pending request (their verdict is the real run's)."""
    fill_queue(pipeline, sandbox_server)
    pending_queries.clear()

    report = dry_run(pipeline, sandbox_server, limit=6)

    assert len(pending_queries) == 1
    assert report.pending_at_start == 12
    assert sum(report.plan_counts.values()) == len(report.plan) == 6
    assert [p.request.request_id for p in report.plan] == [
        "a-00",
        "a-00",
        "a-01",
        "a-02",
        "a-03",
        "a-04",
    ]
    assert report.guardrail.startswith("passed: 6 to handle")


def test_the_summary_in_sql_counts_as_the_rule_does_row_by_row(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    """DuckDB counts plain ids by group in SQL (`PendingQueue.summary`); every other id, and
    every destination or shard that cannot, is settled row by row in Python. Both must give
    the same counts, shown rows and order, for ids at each edge of the plain pattern."""
    fill_queue(pipeline, sandbox_server)
    for contact_id in (".", "..", "a\tb", "é-contact", "x" * 256, "y" * 257, "\x7f", None):
        insert_queue_row(pipeline, contact_id)

    def summary(shard: Shard | None, limit: int | None, shown: int) -> PendingSummary:
        return PendingQueue(pipeline, shard=shard).summary(limit, shown)

    for limit, shown in ((None, 0), (None, 200), (5, 200), (30, 3)):
        in_sql = summary(None, limit, shown)
        row_by_row = summary(Shard(0, 1), limit, shown)  # a shard owning all: Python's path
        assert (in_sql.pending, in_sql.to_call, in_sql.planned) == (
            row_by_row.pending,
            row_by_row.to_call,
            row_by_row.planned,
        ), (limit, shown)
        assert [tuple(row) for row in in_sql.shown] == [tuple(row) for row in row_by_row.shown]
        assert in_sql.pending == 20
    assert summary(None, None, 0).planned[Status.INVALID] == 7  # all but the 256 x's
