"""A fresh sandbox in a process of its own, one per configuration.

The server must never share the connector's interpreter lock, or the connector would be judged
on the sandbox's work too. So every configuration starts `routera-archive sandbox --port 0` (the
very same CLI command, through `bench/timed_sandbox.py`, which only stamps each API request's
arrival and answer) with its own contacts, latency, rate limit and answer fields, in a fresh
directory, and stops it when done: `fresh_sandbox` is that as a context manager. While it
serves, its `/_sandbox/stats` give the request counts; once it has stopped, its stamps give the
API window of each process that ran against it (`Sandbox.window`).
"""

from __future__ import annotations

import json
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.harness import ProcessRun, bench_script, clean_env, process_cpu_seconds
from bench.measures import ApiWindow, Stamp, api_window

CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
SEED = 0
URL_LINE = re.compile(r"sandbox listening on (http://\S+)")
SANDBOX_START_TIMEOUT_S = 300.0


def contact_ids(count: int, start: int = 0, seed: int = SEED) -> list[str]:
    """Ids of sandbox contacts `start .. start+count-1`: each contact's id comes from its own
    seeded RNG (sandbox/seed.py), so they are known without listing them through the API."""
    from routera_archive_sandbox.seed import contact_rng, random_uuid4

    return [random_uuid4(contact_rng(seed, index)) for index in range(start, start + count)]


def seeded_presence(fields: tuple[str, ...], contacts: int, total: int) -> dict[str, int]:
    """Per field, how many of the first `contacts` of a sandbox of `total` hold it, not null:
    what the audit rows of their archives must hold of it (drawn as the sandbox draws them)."""
    if not fields:
        return {}
    from routera_archive_sandbox.seed import make_contact

    held = dict.fromkeys(fields, 0)
    for index in range(contacts):
        contact = make_contact(SEED, index, total)
        for name in fields:
            held[name] += contact.get(name) is not None
    return held


def write_ids(path: Path, ids: list[str]) -> Path:
    """`ids` one a line, as `routera-archive enqueue` and the bench's scripts read them."""
    path.write_text("\n".join(ids) + "\n", encoding="utf-8")
    return path


@dataclass
class Sandbox:
    """A sandbox in its own process; `stop()` returns the time of every API answer."""

    process: subprocess.Popen[str]
    url: str
    contacts: int
    latency_ms: float
    rate_limit: float
    times_file: Path
    stderr_file: Path
    answer_fields: str = ""  # its --answer-fields ("": the sandbox's default, all)
    # Every API answer's stamp, known once the sandbox has stopped.
    stamps: list[Stamp] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.url}/_sandbox/stats", timeout=60).json()
        return result

    def reset_stats(self) -> None:
        httpx.post(f"{self.url}/_sandbox/reset-stats", timeout=60).raise_for_status()

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> list[Stamp]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.times_file.exists():
            self.stamps = [
                (float(t), str(m), int(s), float(a))
                for t, m, s, a in json.loads(self.times_file.read_text())
            ]
        return self.stamps

    def window(self, process: ProcessRun) -> ApiWindow:
        """The API answers it sent while `process` ran (once the sandbox has stopped)."""
        return api_window(self.stamps, process.started_at, process.ended_at)

    def env(self, workdir: Path, **extra: str) -> dict[str, str]:
        """The environment of a process that talks to this sandbox, with its own dlt data."""
        return clean_env(
            SOURCES__ROUTERA__BASE_URL=self.url,
            SOURCES__ROUTERA__CLIENT_ID=CLIENT_ID,
            SOURCES__ROUTERA__CLIENT_SECRET=CLIENT_SECRET,
            DLT_DATA_DIR=str(workdir / "dlt_data"),
            **extra,
        )


def start_sandbox(
    workdir: Path,
    contacts: int,
    latency_ms: float,
    rate_limit: float = 0.0,
    *,
    answer_fields: str = "",
) -> Sandbox:
    """`routera-archive sandbox --port 0 ...` as a separate process; returns once it serves."""
    workdir.mkdir(parents=True, exist_ok=True)
    times_file = workdir / "sandbox_times.json"
    stderr_file = workdir / "sandbox.stderr"
    command = bench_script(
        "timed_sandbox.py",
        "sandbox",
        "--port",
        "0",
        "--contacts",
        str(contacts),
        "--seed",
        str(SEED),
        "--latency-ms",
        f"{latency_ms:g}",
        "--client-id",
        CLIENT_ID,
        "--client-secret",
        CLIENT_SECRET,
    )
    if rate_limit:
        command += ["--rate-limit", f"{rate_limit:g}"]
    if answer_fields:
        command += ["--answer-fields", answer_fields]
    env = clean_env() | {"BENCH_SANDBOX_TIMES": str(times_file)}
    with stderr_file.open("w") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=workdir
        )
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:  # keeps the pipe from filling, whatever the sandbox prints later
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + SANDBOX_START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        if match := URL_LINE.search(line):
            return Sandbox(
                process,
                match[1],
                contacts,
                latency_ms,
                rate_limit,
                times_file,
                stderr_file,
                answer_fields,
            )
    process.kill()
    raise RuntimeError(f"the sandbox did not start: {stderr_file.read_text()[-2000:]}")


@contextmanager
def fresh_sandbox(
    workdir: Path,
    contacts: int,
    latency_ms: float,
    rate_limit: float = 0.0,
    *,
    answer_fields: str = "",
) -> Iterator[Sandbox]:
    """A sandbox of `contacts` in an emptied `workdir`, stopped (and its stamps read) on exit."""
    shutil.rmtree(workdir, ignore_errors=True)
    sandbox = start_sandbox(workdir, contacts, latency_ms, rate_limit, answer_fields=answer_fields)
    try:
        yield sandbox
    finally:
        sandbox.stop()
