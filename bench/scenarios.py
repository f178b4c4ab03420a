"""The configurations, as a table: what each measures, at which sizes, and where it is kept.

Issue 6 asks whether the API's latency and rate limit, not the connector, are the ceiling, so
every target compares the connector with something measured in the same invocation, on the same
machine state: the headline with the ideal (N x latency / concurrency), the 2,000-contact run
with the hand-written loop, the rate-limited run with the server's limit, the 100,000-contact
queue's memory with the 10,000-contact one's, and the latency-0 run with one raw
`pipeline.run()`; the chunk sizes and the bare httpx loop are diagnostics without a target.
Issue 11 adds the CLI's start (help and version, no heavy imports). Issue 15 adds the cost
of the evidence features (`evidence_bench.py`: the chain's link, `verify`, `redact`) on a
DuckDB dataset grown through the sizes of `evidence_sizes`; it has no target. Issue 13 adds the
headline and the rate-limited run with `properties` set against a sandbox whose DELETE answers
hold no custom field (`--answer-fields default`): a snapshot GET before each DELETE, so the
ideal is two requests per contact and the limit counts both. Issue 17 adds what a crash
mid-extract costs a user's own `pipeline.run(routera_archive())` (`source_crash_cost.py`: a clean
run, one killed after its last answer and one killed at a third, each with its recovery run); it
has no target, only its counts.

`table(plan)` lists them in the order they run; `--only` picks rows by their `part`. Each row
names its runner (one per kind, in `runners.py`, `cli_start.py`, `evidence_bench.py` and
`source_crash_cost.py`), its sizes (a `Config`), the `Results` field its result goes to, what its
target compares it with, and whether it is measured again when other processes disturbed it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import runners
from bench.cli_start import CliStart, cli_start
from bench.evidence_bench import EvidenceRun, evidence
from bench.harness import Say, load_average, machine_info, quietest, wait_until_quiet
from bench.runners import Ceiling, Config, ConnectorRun, FixedCost, RawLoad, Versus
from bench.source_crash_cost import SourceCrash, source_crash

# (the configuration, the bench's root directory, the connector's extra environment) -> result
Runner = Callable[[Config, Path, Mapping[str, str]], Any]


@dataclass(frozen=True)
class Plan:
    """Sizes of every configuration; `QUICK` shrinks them to about a minute in all."""

    latency_ms: float = 50.0
    concurrency: int = 32
    headline_contacts: int = 10_000
    versus_contacts: int = 2_000
    rate_limit: float = 100.0
    rate_contacts: int = 3_000
    memory_small: int = 10_000
    memory_large: int = 100_000
    ceiling_contacts: int = 4_000
    ceiling_pools: tuple[int, ...] = (1, 4)
    ceiling_latencies: tuple[float, ...] = (50.0, 0.0)
    # Diagnostics: the headline configuration with other chunk sizes (no target of their own).
    chunk_sizes: tuple[int, ...] = (2_000, 10_000)
    raw_chunk: int | None = 500
    # Timed runs of each CLI command line (fresh processes, a fraction of a second each).
    cli_repeats: int = 15
    # With `properties` (a snapshot GET before each DELETE): seeded custom fields (sandbox's
    # seed.CUSTOM_FIELDS, held by 85-95% of its contacts), the sandbox's DELETE answers
    # holding none of them.
    properties: tuple[str, ...] = ("lead_score", "company", "lifecycle_stage")
    properties_contacts: int = 10_000
    properties_rate_contacts: int = 1_500
    # The evidence features' cost (issue 15): audit rows of the grown dataset at each step.
    evidence_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    # A run's fixed cost (issue 18): a small run at `latency_ms`, then one with nothing pending.
    fixed_contacts: int = 25
    # A crash mid-extract through the dlt source (issue 17): contacts of each of its cases.
    source_crash_contacts: int = 2_000


FULL = Plan()
QUICK = Plan(
    headline_contacts=1_000,
    versus_contacts=100,
    rate_contacts=300,
    memory_small=1_000,
    memory_large=4_000,
    ceiling_contacts=600,
    ceiling_pools=(1,),
    ceiling_latencies=(50.0,),
    chunk_sizes=(),
    raw_chunk=None,
    cli_repeats=5,
    properties_contacts=1_000,
    properties_rate_contacts=150,
    evidence_sizes=(200, 1_000),
    source_crash_contacts=300,
)

PARTS = (
    "headline",
    "fixed",
    "versus",
    "rate",
    "memory",
    "raw",
    "chunks",
    "ceiling",
    "cli-start",
    "properties",
    "evidence",
    "source-crash",
)


@dataclass(frozen=True)
class Scenario:
    """One row of the table."""

    part: str  # its name for --only (several rows may share one)
    note: str  # the progress line printed before it runs
    run: Runner
    config: Config
    slot: str  # the `Results` field it goes to (appended to where that field is a list)
    # What its target compares it with (`verdicts.py` judges it); "" for a baseline or a
    # diagnostic, which have no target of their own.
    against: str = ""
    # Measured again (up to --retries times) when other processes kept too many cores busy.
    retried: bool = True

    def progress(self) -> str:
        return f"{self.note}, against {self.against}" if self.against else self.note


def table(plan: Plan) -> list[Scenario]:
    """Every configuration of `plan`, in the order they run."""
    lat, conc = plan.latency_ms, plan.concurrency
    raw = plan.memory_small
    # The snapshot rows: the sandbox's DELETE answers hold no custom field, only snapshots do.
    props, answers = plan.properties, "default"
    return [
        Scenario(
            "headline",
            f"headline: {plan.headline_contacts} contacts, {lat:g} ms, concurrency {conc}",
            runners.connector,
            Config("headline", plan.headline_contacts, lat, conc),
            "headline",
            against="the ideal (contacts x latency / concurrency)",
        ),
        Scenario(
            "fixed",
            f"fixed cost: {plan.fixed_contacts} contacts at {lat:g} ms, then nothing pending",
            runners.fixed_cost,
            Config("fixed", plan.fixed_contacts, lat, conc),
            "fixed_cost",
            against="1.5 s (the small run) and 1.0 s (nothing pending)",
        ),
        Scenario(
            "versus",
            f"versus: {plan.versus_contacts} contacts each",
            runners.versus,
            Config("versus", plan.versus_contacts, lat, conc),
            "versus",
            against="the hand-written loop",
        ),
        Scenario(
            "rate",
            f"rate limit {plan.rate_limit:g}/s: {plan.rate_contacts} contacts",
            runners.connector,
            Config(
                "rate-limited",
                plan.rate_contacts,
                lat,
                conc,
                rps=plan.rate_limit,
                rate_limit=plan.rate_limit,
            ),
            "rate_limited",
            against="the server's limit",
        ),
        *(
            Scenario(
                "memory",
                f"latency 0 / memory: {size} contacts",
                runners.connector,
                Config(f"latency0-{size}", size, 0, conc),
                slot,
                against=against,
            )
            for size, slot, against in (
                (plan.memory_small, "memory_small", "one raw pipeline.run()"),
                (plan.memory_large, "memory_large", f"the peak RSS at {plan.memory_small}"),
            )
        ),
        Scenario(
            "raw",
            f"raw load: {raw} records",
            runners.raw_load,
            Config(f"raw-load-{raw}", raw),
            "raw_load",
        ),
        *(
            Scenario(
                "raw",
                f"raw load in chunks of {chunk}",
                runners.raw_load,
                Config(f"raw-load-{raw}-chunk{chunk}", raw, chunk_size=chunk),
                "raw_load_chunked",
                retried=False,
            )
            for chunk in ((plan.raw_chunk,) if plan.raw_chunk else ())
        ),
        *(
            Scenario(
                "chunks",
                f"diagnostic: headline with chunk_size {chunk}",
                runners.connector,
                Config(
                    f"headline-chunk{chunk}", plan.headline_contacts, lat, conc, chunk_size=chunk
                ),
                "chunk_runs",
                retried=False,
            )
            for chunk in plan.chunk_sizes
        ),
        *(
            Scenario(
                "ceiling",
                f"diagnostic: bare httpx loop at {latency:g} ms, pools {plan.ceiling_pools}",
                runners.ceiling,
                Config(
                    f"http-ceiling-{latency:g}ms",
                    plan.ceiling_contacts,
                    latency,
                    conc,
                    pools=plan.ceiling_pools,
                ),
                "ceiling",
                retried=False,
            )
            for latency in plan.ceiling_latencies
        ),
        Scenario(
            "cli-start",
            f"CLI start: --help, --version and each command's --help, {plan.cli_repeats} runs each",
            cli_start,
            Config("cli-start", repeats=plan.cli_repeats),
            "cli_start",
            against="a median under 0.3 s each, no import of dlt, duckdb or httpx",
        ),
        Scenario(
            "properties",
            f"properties {','.join(plan.properties)}: {plan.properties_contacts} contacts, "
            f"{lat:g} ms, concurrency {conc}",
            runners.connector,
            Config(
                "properties-headline",
                plan.properties_contacts,
                lat,
                conc,
                properties=props,
                answer_fields=answers,
            ),
            "properties_headline",
            against="the ideal (contacts x 2 requests x latency / concurrency)",
        ),
        Scenario(
            "properties",
            f"properties, rate limit {plan.rate_limit:g}/s: {plan.properties_rate_contacts} "
            "contacts",
            runners.connector,
            Config(
                "properties-rate-limited",
                plan.properties_rate_contacts,
                lat,
                conc,
                rps=plan.rate_limit,
                rate_limit=plan.rate_limit,
                properties=props,
                answer_fields=answers,
            ),
            "properties_rate_limited",
            against="the server's limit (GETs and DELETEs together)",
        ),
        Scenario(
            "evidence",
            f"evidence: link, verify and redact on DuckDB at {plan.evidence_sizes} audit rows",
            evidence,
            Config("evidence", sizes=plan.evidence_sizes),
            "evidence",
            retried=False,
        ),
        Scenario(
            "source-crash",
            f"source crash: {plan.source_crash_contacts} contacts at {lat:g} ms through "
            "pipeline.run(routera_archive()), clean, killed after its last answer, killed at a "
            "third",
            source_crash,
            # The source's default concurrency (0 here), no --rps: the sandbox is local.
            Config("source-crash", plan.source_crash_contacts, lat),
            "source_crash",
        ),
    ]


def scenario(plan: Plan, slot: str) -> Scenario:
    """The row of `plan` whose result goes to `slot` (the first, for a list)."""
    return next(row for row in table(plan) if row.slot == slot)


@dataclass
class Results:
    mode: str
    command: str
    started: str
    finished: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    connector_env: dict[str, str] = field(default_factory=dict)
    headline: ConnectorRun | None = None
    fixed_cost: FixedCost | None = None
    versus: Versus | None = None
    rate_limited: ConnectorRun | None = None
    memory_small: ConnectorRun | None = None
    memory_large: ConnectorRun | None = None
    raw_load: RawLoad | None = None
    raw_load_chunked: RawLoad | None = None
    chunk_runs: list[ConnectorRun] = field(default_factory=list)
    ceiling: list[Ceiling] = field(default_factory=list)
    cli_start: CliStart | None = None
    properties_headline: ConnectorRun | None = None
    properties_rate_limited: ConnectorRun | None = None
    evidence: EvidenceRun | None = None
    source_crash: SourceCrash | None = None

    def connector_runs(self) -> list[ConnectorRun]:
        """Every connector run, in the order of the table."""
        runs = (
            self.headline,
            self.fixed_cost.small if self.fixed_cost else None,
            self.versus.connector if self.versus else None,
            self.rate_limited,
            self.memory_small,
            self.memory_large,
            *self.chunk_runs,
            self.properties_headline,
            self.properties_rate_limited,
        )
        return [run for run in runs if run is not None]

    def problems(self) -> list[str]:
        """Whatever makes the figures not of what they claim: wrong counts, a failed command."""
        found = [f"{run.label}: {p}" for run in self.connector_runs() for p in run.problems()]
        if self.fixed_cost:
            found += [f"fixed: {p}" for p in self.fixed_cost.problems()]
        if self.cli_start:
            found += [f"cli-start: {p}" for p in self.cli_start.problems()]
        if self.evidence:
            found += [f"evidence: {p}" for p in self.evidence.problems()]
        if self.source_crash:
            found += [f"source-crash: {p}" for p in self.source_crash.problems()]
        return found

    def keep(self, slot: str, value: Any) -> None:
        """Put one scenario's result in its field (appended to a list field)."""
        current = getattr(self, slot)
        if isinstance(current, list):
            current.extend(value if isinstance(value, list) else [value])
        else:
            setattr(self, slot, value)


def run_all(
    plan: Plan,
    root: Path,
    *,
    max_other: float,
    retries: int,
    mode: str,
    command: str,
    parts: tuple[str, ...] = PARTS,
    quiet_timeout: float = 0.0,
    extra_env: Mapping[str, str] | None = None,
    say: Say = lambda _: None,
) -> Results:
    """Every configuration in `parts` (all by default), each with its own sandbox."""
    extra = dict(extra_env or {})
    results = Results(
        mode=mode,
        command=command,
        started=datetime.now().astimezone().isoformat(timespec="seconds"),
        machine=machine_info(),
        plan=asdict(plan),
        connector_env=extra,
    )
    for row in table(plan):
        if row.part not in parts:
            continue
        busy = wait_until_quiet(max_other / 2, quiet_timeout) if quiet_timeout else None
        idle = "" if busy is None else f", {busy:.2f} cores busy before"
        say(
            f"[{datetime.now():%H:%M:%S}] {row.progress()} (load average {load_average()[0]}{idle})"
        )
        measure = functools.partial(row.run, row.config, root, extra)
        results.keep(
            row.slot, quietest(measure, max_other, retries, say) if row.retried else measure()
        )
    results.finished = datetime.now().astimezone().isoformat(timespec="seconds")
    return results
