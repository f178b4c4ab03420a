"""ChunkSink: one load at a time, whoever adds the outcomes, and every outcome loaded once."""

import asyncio
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

    def __call__(self, pipeline: Any, source: Any) -> Any:
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


def test_two_producers_never_start_two_loads_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers and requests settled without a call reach the sink from two coroutines; each
    may fill a chunk and flush while a load is running."""
    loads = RecordingLoads()
    monkeypatch.setattr(loading, "load_fresh", loads)
    report = RunReport("run-1", "run", datetime.now(UTC), "http://x", "duckdb", "ds")
    journal = OutcomeJournal(tmp_path, report.run_id)
    sink = ChunkSink(
        # load_fresh is replaced; the sink still asks which audit tables dlt has made.
        pipeline=SimpleNamespace(schemas={}),  # type: ignore[arg-type]
        journal=journal,
        report=report,
        chunk_size=5,
        observer=RunObserver(),
        columns=FieldColumnsByType(),
        hold_back=False,
    )

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
