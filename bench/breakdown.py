"""Where a run's time goes outside its calls (issue 18): start to first DELETE, last answer to exit.

A run is measured from the outside (process start to exit, `harness.run_process`); inside, the
connector notes when each phase ends (`routera_archive.timeline`, written to the file named by
`ROUTERA_ARCHIVE_TIMELINE`, which the call worker inherits) and the sandbox stamps every API
request's arrival and answer. Put together, the two ends of a run split into named parts:

- the start: from the process's start to the first DELETE's arrival at the server, each part
  ending at one of the run's marks (the CLI imported, the run command's imports, the locks,
  the recovery, the tally, the caller open, the first calls ...); the call worker's own marks
  and the token and probe requests are shown beside them (they overlap the run's phases);
- the end: from the last DELETE's answer to the process's exit (the last answers reaching the
  run, the last chunk's load, the report, the hash chain's link, the summary, the exit).

The fixed cost of a run is the two together; the calls between them are what the ideal counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import ProcessRun
from bench.measures import Stamp

TIMELINE_ENV = "ROUTERA_ARCHIVE_TIMELINE"

# The run process's marks, in the order a run makes them, and what ends at each.
START_PARTS: tuple[tuple[str, str], ...] = (
    ("cli", "interpreter, site, typer and the CLI module"),
    ("setup", "options parsed; logging and dlt's defaults set"),
    ("imports", "the run command's imports (dlt, the library)"),
    ("pipeline", "the dlt pipeline made"),
    ("worker-spawned", "the run built, the call worker spawned"),
    ("locked", "both locks taken"),
    ("recovered", "recovery: pending packages, journals, field columns"),
    ("tallied", "the pending tally"),
    ("caller-open", "the call worker ready (or the caller open)"),
    ("probed", "the token and the probe GET (the share check)"),
)
END_PARTS: tuple[tuple[str, str], ...] = (
    ("calls-done", "the last answers reach the run"),
    ("loaded", "the last chunk's load"),
    ("reported", "the report (new columns, the run row)"),
    ("linked", "the hash chain's link (and the run row's load)"),
    ("released", "the locks released, retention"),
    ("executed", "the run object returns"),
    ("printed", "the summary printed"),
    ("exit", "the CLI returns"),
)


def marks_file(workdir: Path, label: str) -> Path:
    """Where the run labelled `label` writes its marks."""
    return workdir / f"{label}.timeline.jsonl"


def timeline_env(path: Path) -> dict[str, str]:
    """The environment that makes a run write its marks to `path` (emptied first)."""
    path.unlink(missing_ok=True)
    return {TIMELINE_ENV: str(path)}


def read_marks(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Part:
    name: str
    seconds: float


@dataclass
class Breakdown:
    """A run's time outside its calls, in named parts (seconds)."""

    wall_s: float = 0.0
    # process start -> first DELETE arrival, and last DELETE answer -> process exit
    start_s: float = 0.0
    end_s: float = 0.0
    start: list[Part] = field(default_factory=list)
    end: list[Part] = field(default_factory=list)
    # Beside the run's parts: the worker's marks and the API's first requests, as seconds
    # since the process started.
    beside: list[Part] = field(default_factory=list)
    # No DELETE at all (nothing pending): the whole run is fixed cost, in `start`.
    calls: bool = True

    @property
    def fixed_s(self) -> float:
        return self.start_s + self.end_s

    def lines(self) -> list[str]:
        out = []
        if self.calls:
            out.append(
                f"start to first DELETE {self.start_s:.3f} s, last answer to exit "
                f"{self.end_s:.3f} s: {self.fixed_s:.3f} s of {self.wall_s:.3f} s"
            )
        else:
            out.append(f"no DELETE: the whole run, {self.wall_s:.3f} s")
        out += [f"  start  {p.seconds:6.3f}  {p.name}" for p in self.start]
        out += [f"  end    {p.seconds:6.3f}  {p.name}" for p in self.end]
        out += [f"  beside  at {p.seconds:6.3f}  {p.name}" for p in self.beside]
        return out


def _parts(
    marks: dict[str, float], names: tuple[tuple[str, str], ...], since: float, until: float
) -> list[Part]:
    """Consecutive parts from `since`; a mark outside [since, until] or missing is skipped."""
    parts, previous = [], since
    for key, label in names:
        moment = marks.get(key)
        if moment is None or moment < previous or moment > until:
            continue
        parts.append(Part(label, moment - previous))
        previous = moment
    return parts


def breakdown(process: ProcessRun, stamps: list[Stamp], marks: Path) -> Breakdown:
    """The breakdown of `process` (whose run wrote its marks to `marks`), with the sandbox's
    stamps of the answers it got."""
    started, ended = process.started_at, process.ended_at
    records = read_marks(marks)
    run = {r["name"]: float(r["t"]) for r in records if r["process"] == "run"}
    worker = {r["name"]: float(r["t"]) for r in records if r["process"] == "worker"}
    mine = [s for s in stamps if started <= s[3] <= ended]
    deletes = [s for s in mine if s[1] == "DELETE"]
    result = Breakdown(wall_s=process.wall_s)
    beside = [(f"call worker {name}", t) for name, t in worker.items()]
    for answered, method, status, arrived in mine:
        if method != "DELETE":
            beside.append(
                (f"{method} {status} arrived (answered {answered - started:.3f})", arrived)
            )
    if deletes:
        first_arrival = min(s[3] for s in deletes)
        last_answer = max(s[0] for s in deletes)
        beside.append(("first DELETE arrived", first_arrival))
        result.start_s, result.end_s = first_arrival - started, ended - last_answer
        result.start = _parts(run, START_PARTS, started, first_arrival)
        reached = sum(p.seconds for p in result.start)
        result.start.append(Part("to the first DELETE's arrival", result.start_s - reached))
        result.end = _parts(run, END_PARTS, last_answer, ended)
        result.end.append(
            Part("the interpreter's exit", result.end_s - sum(p.seconds for p in result.end))
        )
    else:
        result.calls = False
        result.start_s = process.wall_s
        result.start = _parts(run, START_PARTS + END_PARTS, started, ended)
        result.start.append(
            Part("the interpreter's exit", process.wall_s - sum(p.seconds for p in result.start))
        )
    result.beside = [Part(name, t - started) for name, t in sorted(beside, key=lambda x: x[1])]
    return result
