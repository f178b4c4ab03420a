"""The progress of a run shows its rate and the time the rest would take (issue 16 item 8)."""

import logging
from datetime import UTC, datetime

import pytest
from rich.console import Console

from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status
from routera_archive.run.result import RunReport
from routera_archive_pipelines import console as console_module
from routera_archive_pipelines.console import ProgressObserver


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def outcome(number: int) -> ArchiveOutcome:
    request = ArchiveRequest(request_id=f"r{number}", contact_id=f"c{number}")
    return ArchiveOutcome(request=request, status=Status.NOT_FOUND, http_status=404)


def test_the_rate_and_the_time_left_follow_the_outcomes_so_far(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    monkeypatch.setattr(console_module.time, "monotonic", clock)
    observer = ProgressObserver(Console(file=None, force_terminal=False))
    report = RunReport("run", "run", datetime.now(UTC), "http://api", "duckdb", "ds")
    observer.on_start(report, 100)
    assert observer._rate_text(1) == ""  # too early to say
    clock.now += 10.0
    assert observer._rate_text(50) == "5/s, ~10 s left"
    clock.now += 10.0
    with caplog.at_level(logging.INFO, logger=console_module.logger.name):
        for number in range(100):
            observer.on_outcome(outcome(number))
    assert "progress 100/100 not_found=100 5/s, ~0 s left" in caplog.text  # all done
