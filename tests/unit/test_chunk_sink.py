"""ChunkSink: one load at a time, whoever adds the outcomes, and every outcome loaded once."""

import asyncio
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import routera_archive.run.chunks as loading
from routera_archive.dataset.fields import FieldColumnsByType
from routera_archive.journal import OutcomeJournal
from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status
from routera_archive.run.chunks import ChunkSink
from routera_archive.run.result import RunObserver, RunReport


class RecordingLoads:
    """Stands in for `load_fresh`: counts loads running at once and the log rows each got."""

    def __init__(self) -> None:
        self.running = 0
        self.most_at_once = 0
        self.chunks: list[list[str]] = []
        self._lock = threading.Lock()

    def __call__(self, pipeline: Any, source: Any, file_format: Any = None) -> Any:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(0.02)  # long enough for the event loop to add and flush meanwhile
            log = source.resources["archive_log"]
            self.chunks.append([row["request_id"] for row in log])
            return SimpleNamespace(loads_ids=["test"])
        finally:
            with self._lock:
                self.running -= 1


def outcome(number: int) -> ArchiveOutcome:
    request = ArchiveRequest(request_id=f"r{number:04d}", contact_id=f"c{number:04d}")
    return ArchiveOutcome(request=request, status=Status.NOT_FOUND, http_status=404)


def sink_of_fives(tmp_path: Path) -> tuple[ChunkSink, OutcomeJournal, RunReport]:
    """A sink of chunks of 5, its journal and its report; `load_fresh` is the test's to replace."""
    report = RunReport("run-1", "run", datetime.now(UTC), "http://x", "duckdb", "ds")
    journal = OutcomeJournal(tmp_path, report.run_id)
    sink = ChunkSink(
        # load_fresh is replaced; the sink still asks which audit tables dlt has made, and
        # which file format its destination's loads are written in (none: dlt's default).
        pipeline=SimpleNamespace(schemas={}, destination=None),  # type: ignore[arg-type]
        journal=journal,
        report=report,
        chunk_size=5,
        observer=RunObserver(),
        columns=FieldColumnsByType(),
        hold_back=False,
    )
    return sink, journal, report


def test_two_producers_never_start_two_loads_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers and requests settled without a call reach the sink from two coroutines; each
    may fill a chunk and flush while a load is running."""
    loads = RecordingLoads()
    monkeypatch.setattr(loading, "load_fresh", loads)
    sink, journal, _ = sink_of_fives(tmp_path)

    async def produce(numbers: range) -> None:
        for number in numbers:
            await sink.add(outcome(number))
            await asyncio.sleep(0.001)

    async def run() -> None:
        await asyncio.gather(produce(range(0, 200)), produce(range(200, 400)))
        await sink.close()

    asyncio.run(run())
    journal.close()

    assert sink.load_error is None
    assert loads.most_at_once == 1
    assert all(loads.chunks), "a load was started for an empty chunk"
    loaded = [request_id for chunk in loads.chunks for request_id in chunk]
    assert sorted(loaded) == [f"r{n:04d}" for n in range(400)]


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="per-thread nice values are Linux's")
def test_the_loads_after_the_calls_run_at_the_runs_own_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks loaded while the calls run yield the CPU to them (nice 10); what is left when
    the calls are over is loaded at the run's own priority: nothing is left to yield to."""
    niceness: list[tuple[str, int]] = []

    def load(pipeline: Any, source: Any, file_format: Any = None) -> Any:
        log = source.resources["archive_log"]
        first = next(iter(log))["request_id"]
        niceness.append((first, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        return SimpleNamespace(loads_ids=["test"])

    monkeypatch.setattr(loading, "load_fresh", load)
    sink, journal, _ = sink_of_fives(tmp_path)
    own = os.getpriority(os.PRIO_PROCESS, 0)

    async def run() -> None:
        for number in range(7):  # one full chunk during the calls, two left at their end
            await sink.add(outcome(number))
        await sink._wait_for_load()
        await sink.close()

    asyncio.run(run())
    journal.close()
    assert niceness[0] == ("r0000", own + loading.LOADER_THREAD_NICENESS)
    assert niceness[1] == ("r0005", own)
