"""A local write-ahead journal of outcomes, so an answer Routera gave is never only in memory.

dlt commits extracted rows only when a whole extract finishes, so a crash between a DELETE's
answer and the end of its chunk's load would otherwise leave that answer nowhere. Every outcome
is appended here (one JSON line, flushed to the OS at once, fsynced at each chunk hand-off)
before it counts as done. The next run loads leftover entries whose requests are still pending,
then deletes the files. The GET recovery covers what a journal cannot: a crash between the
answer's arrival and its line being written, or a worker whose disk is gone.
"""

import contextlib
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from routera_archive.models import ArchiveOutcome, ArchiveRequest

logger = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".jsonl"
SNAPSHOT_LINE_START = '{"kind":"snapshot"'


class JournaledSnapshot(BaseModel):
    """A snapshot (the contact read with `properties`) written before its DELETE is sent: if
    the run dies before the DELETE's outcome is kept, the next run still has the custom fields
    it read, whatever a later read of the archived contact holds."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["snapshot"] = "snapshot"  # first, so a reader tells the line by its start
    request: ArchiveRequest
    body: str
    taken_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class OutcomeJournal:
    """One journal file per run under `directory`."""

    def __init__(self, directory: Path, run_id: str, *, part: str | None = None) -> None:
        self.directory = directory
        name = run_id if part is None else f"{run_id}.{part}"
        self.path = directory / f"{name}{JOURNAL_SUFFIX}"
        self._file: IO[str] | None = None
        # Journals of this run written by another process (the call worker's), synced and
        # discarded with this one.
        self._adopted: list[Path] = []

    def append(self, outcome: ArchiveOutcome) -> None:
        self.append_json(outcome.model_dump_json())

    def append_snapshot(self, snapshot: JournaledSnapshot) -> None:
        """Kept before the DELETE is sent (flushed to the OS: a killed process loses nothing;
        fsynced with the outcomes at each chunk hand-off)."""
        self.append_json(snapshot.model_dump_json())

    def append_json(self, outcome_json: str) -> None:
        """Append an outcome already serialised (the call worker sends the same text on)."""
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(outcome_json + "\n")
        self._file.flush()

    def adopt(self, path: Path) -> None:
        self._adopted.append(path)

    def sync(self) -> None:
        """Make what was appended survive a power loss too, not only a process crash."""
        if self._file is not None:
            os.fsync(self._file.fileno())
        for path in self._adopted:
            # fsync applies to the file, whichever descriptor asks: the writer keeps its own.
            with contextlib.suppress(FileNotFoundError):
                fsync_path(path)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        """Remove this run's journal once everything in it is loaded."""
        self.close()
        self.path.unlink(missing_ok=True)
        for path in self._adopted:
            path.unlink(missing_ok=True)


def fsync_path(path: Path) -> None:
    """Make a file's content, or a folder's entries (a rename in it), survive a power loss."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def replace_durably(source: Path, target: Path) -> None:
    """Rename `source` over `target` once its content is on disk, and the rename with it."""
    fsync_path(source)
    os.replace(source, target)
    fsync_path(target.parent)


def leftover_files(directory: Path, *, exclude: Path | None = None) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"*{JOURNAL_SUFFIX}") if p != exclude)


def journal_run_id(path: Path) -> str:
    """The run a journal file belongs to (`<run id>.jsonl` or `<run id>.<part>.jsonl`)."""
    return path.name.split(".", 1)[0]


def read_outcomes(path: Path) -> Iterator[ArchiveOutcome]:
    """The outcomes in one journal file; a torn last line (the crash itself) is skipped."""
    for entry in _read(path):
        if isinstance(entry, ArchiveOutcome):
            yield entry


def read_snapshots(path: Path) -> Iterator[JournaledSnapshot]:
    """The snapshots in one journal file (see JournaledSnapshot)."""
    for entry in _read(path):
        if isinstance(entry, JournaledSnapshot):
            yield entry


def _read(path: Path) -> Iterator[ArchiveOutcome | JournaledSnapshot]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            kind = JournaledSnapshot if line.startswith(SNAPSHOT_LINE_START) else ArchiveOutcome
            try:
                yield kind.model_validate_json(line)
            except (ValidationError, ValueError):
                logger.warning("skipping unreadable line %d of journal %s", number, path)
