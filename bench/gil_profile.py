"""Where the interpreter locks go in the headline configuration, sampled by py-spy.

`py-spy record --gil --subprocesses` samples, in each process (the run and its call worker),
only the thread holding the GIL, so the samples show what each interpreter lock is spent on:
the figure that says whether the calls or the loads set the pace. The profiler slows the run
(use its shares, not its times); `--profile` runs this instead of the benchmark.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from bench import runners
from bench.harness import PYTHON
from bench.render import table
from bench.scenarios import Plan, scenario

# Where a sampled stack's time is counted: the first category, in this order, that any of its
# frames (or its thread's name) matches. Imports first, so lazy imports inside a load count as
# imports; loads before HTTP, since a load's thread never runs request code.
PROFILE_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("imports (start-up and lazy)", ("_find_and_load ",)),
    (
        "dlt chunk loads (extract, normalize, load; worker threads)",
        ("load_fresh ", "dlt-pool", "Pipeline.run ", "Pipeline.load ", "Pipeline.normalize "),
    ),
    ("reading the queue (SQL) and start-up", ("PendingQueue", "make_pipeline ")),
    ("httpcore pool bookkeeping (scan of all connections)", ("_assign_requests_to_connections",)),
    (
        "httpx/httpcore: send request, read response",
        (
            "AsyncClient.send ",
            "build_request ",
            "AsyncHTTPTransport.handle_async_request ",
            "Response.aread ",
            "Response.aclose ",
        ),
    ),
    ("journal (JSON line + flush per outcome)", ("OutcomeJournal.",)),
    ("response parsing, outcome and row models", ("parse_archived_record", "BaseModel.")),
    ("progress observer and logging", ("ProgressObserver.", "logging/__init__")),
    ("retry wrapper (tenacity)", ("tenacity",)),
    ("request pacer", ("RatePacer.", "aiolimiter")),
    ("work queues, sink, archiver glue", ("archive_concurrently", "ChunkSink.", "archive_request")),
    ("dlt telemetry thread", ("anon_tracker",)),
)


def profile_breakdown(raw: str) -> tuple[int, list[tuple[str, int]]]:
    """Samples per category from py-spy's `--format raw` output (one `stack count` a line)."""
    totals: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        # `--subprocesses` starts each stack with its process's command line.
        where = (
            "call worker: " if "routera_archive.calls.worker" in stack.split(";", 1)[0] else "run: "
        )
        for name, needles in PROFILE_CATEGORIES:
            if any(needle in stack for needle in needles):
                totals[where + name] += count
                break
        else:
            totals[where + "event loop and everything else"] += count
    return samples, totals.most_common()


def profile_headline(plan: Plan, root: Path, extra_env: Mapping[str, str], rate: int = 100) -> str:
    """The headline configuration (its own working directory, `profile`) under py-spy."""
    py_spy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    raw_file = root / "profile.txt"
    wrapper = (
        py_spy,
        "record",
        "--gil",
        "--threads",
        "--subprocesses",
        "-r",
        str(rate),
        "-f",
        "raw",
    )
    headline = scenario(plan, "headline").config
    config = replace(headline, label="profile", wrapper=(*wrapper, "-o", str(raw_file), "--"))
    run = runners.connector(config, root, extra_env)
    samples, categories = profile_breakdown(raw_file.read_text())
    seconds = samples / rate
    lines = [
        f"py-spy --gil at {rate} Hz on the headline configuration ({run.contacts} contacts, "
        f"{run.latency_ms:g} ms, concurrency {run.concurrency}; the profiler slows the run): "
        f"wall {run.process.wall_s:.1f} s, GILs held {seconds:.1f} s in all "
        f"({seconds / run.process.wall_s:.2f} x the wall time: two processes), "
        f"archive {run.api.archive_rps:.0f} req/s.",
        "",
        *table(
            ["where the GIL time goes", "seconds", "share"],
            [[name, f"{count / rate:.1f}", f"{count / samples:.0%}"] for name, count in categories],
        ),
    ]
    return "\n".join(lines) + "\n"
