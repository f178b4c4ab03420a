"""The results as markdown (the tables in bench/results/*.md) and as JSON (the same, whole).

The markdown is what RESULTS.md quotes: the verdicts first, then every connector run with the
counts that prove it archived each contact once, the baselines, and the diagnostics. The JSON
keeps every field of every result (and the derived ideal figures) but the processes' output.
"""

from __future__ import annotations

from typing import Any

from bench.breakdown import Breakdown
from bench.cli_start import HEAVY, CliStart
from bench.evidence_bench import EvidenceRun
from bench.runners import ConnectorRun
from bench.scenarios import Results
from bench.source_crash_cost import HEADER as SOURCE_CRASH_HEADER
from bench.source_crash_cost import CrashCase, SourceCrash
from bench.verdicts import verdicts


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def _connector_rows(runs: list[ConnectorRun]) -> list[list[Any]]:
    rows = []
    for run in runs:
        totals = run.sandbox_totals
        by_status = totals.get("by_status", {})
        rows.append(
            [
                run.label,
                run.contacts,
                f"{run.latency_ms:g}",
                run.concurrency,
                f"{run.rps:g}" if run.rps else "off",
                f"{run.sandbox_rate_limit:g}" if run.sandbox_rate_limit else "off",
                run.chunk_size or "default",
                f"{run.process.wall_s:.1f}",
                f"{run.ideal_s:.1f}" if run.ideal_rps else "-",
                f"{run.api.archive_rps:.0f}",
                f"{run.archived_per_s:.0f}",
                f"{run.log_archive_rps:.0f}" if run.log_archive_rps else "-",
                f"{run.ideal_rps:.0f}" if run.ideal_rps else "-",
                f"{run.process.peak_rss_mb:.0f}",
                " / ".join(f"{run.process.rss_at(share):.0f}" for share in (0.25, 0.5, 0.9)),
                f"{run.process.cpu_s:.1f}",
                f"{run.process.sandbox_cpu_s:.1f}",
                f"{run.process.other_cores:.2f}",
                f"{run.process.load_before[0]:.2f} / {run.process.load_after[0]:.2f}",
                totals.get("by_method", {}).get("DELETE", 0),
                totals.get("by_method", {}).get("GET", 0),
                totals.get("requests", 0),
                f"{run.requests_per_contact:.2f}",
                by_status.get("200", 0),
                by_status.get("404", 0),
                by_status.get("429", 0),
                run.audit.archives,
                "ok" if not run.problems() else "; ".join(run.problems()),
            ]
        )
    return rows


CONNECTOR_HEADER = [
    "config",
    "contacts",
    "latency ms",
    "conc",
    "--rps",
    "server limit",
    "chunk",
    "wall s",
    "ideal s",
    "archive req/s (server)",
    "archived contacts/s (server)",
    "archive contacts/s (log)",
    "ideal req/s",
    "peak RSS MB",
    "RSS MB at 25/50/90% of wall",
    "CPU s",
    "sandbox CPU s",
    "other cores",
    "load 1m before / after",
    "DELETEs",
    "GETs",
    "API requests",
    "GET+DELETE per contact (no check GET)",
    "200",
    "404",
    "429",
    "audit rows",
    "counts",
]


def _snapshot_lines(runs: list[ConnectorRun]) -> list[str]:
    """What the runs with `properties` kept: per property, audit rows holding it / seeded."""
    rows = [
        [
            run.label,
            ", ".join(run.properties),
            run.answer_fields or "all",
            run.snapshot_gets,
            ", ".join(f"{source} {n}" for source, n in sorted(run.audit.by_record_source.items())),
            ", ".join(
                f"{name} {run.audit.filled.get(name)} / {run.seeded_with.get(name, 0)}"
                for name in run.properties
            ),
        ]
        for run in runs
        if run.properties
    ]
    if not rows:
        return []
    return [
        "",
        "### Snapshots (`properties`)",
        "",
        *table(
            [
                "config",
                "properties",
                "sandbox answer fields",
                "snapshot GETs",
                "audit rows by record_source",
                "rows holding each property / seeded contacts holding it",
            ],
            rows,
        ),
    ]


def _baseline_rows(results: Results) -> list[list[Any]]:
    rows: list[list[Any]] = [
        [
            f"ideal, {run.label}",
            run.contacts,
            f"{run.ideal_s:.2f}",
            "-",
            "-",
            f"{run.ideal_rps:.0f} req/s",
        ]
        for run in results.connector_runs()
        if run.ideal_rps
    ]
    if results.versus:
        loop = results.versus.handwritten
        phases = loop.phases
        rows.append(
            [
                "hand-written loop (sync httpx, one pipeline.run())",
                loop.contacts,
                f"{loop.process.wall_s:.1f}",
                f"{loop.process.peak_rss_mb:.0f}",
                f"{loop.process.other_cores:.2f}",
                f"calls {phases.get('calls_s', 0):.1f} s ({loop.api.archive_rps:.1f} req/s), "
                f"load {phases.get('load_s', 0):.1f} s, imports {phases.get('import_s', 0):.1f} s"
                f", exit {loop.process.exit_code}, {loop.deletes_succeeded} archived",
            ]
        )
    for raw in (results.raw_load, results.raw_load_chunked):
        if raw:
            what = (
                f"{raw.records // raw.chunk} x pipeline.run() of {raw.chunk}"
                if raw.chunk
                else ("one pipeline.run()")
            )
            rows.append(
                [
                    f"raw load, {what}",
                    raw.records,
                    f"{raw.process.wall_s:.1f}",
                    f"{raw.process.peak_rss_mb:.0f}",
                    f"{raw.process.other_cores:.2f}",
                    f"pipeline.run() {raw.load_s:.2f} s, imports {raw.import_s:.2f} s",
                ]
            )
    return rows


def _ceiling_lines(results: Results) -> list[str]:
    if not results.ceiling:
        return []
    return [
        "",
        "### Diagnostic: bare httpx loop (no connector code)",
        "",
        *table(
            [
                "latency ms",
                "workers",
                "pools",
                "requests",
                "req/s",
                "server req/s",
                "CPU ms/request",
                "other cores",
            ],
            [
                [
                    f"{c.latency_ms:g}",
                    c.workers,
                    c.pools,
                    c.requests,
                    f"{c.rps:.0f}",
                    f"{c.server_rps:.0f}",
                    f"{c.cpu_ms_per_request:.2f}",
                    f"{c.other_cores:.2f}",
                ]
                for c in results.ceiling
            ],
        ),
    ]


def _breakdown_lines(results: Results) -> list[str]:
    """Where each run's time went outside its calls (issue 18), part by part."""
    runs: list[tuple[str, Breakdown]] = [
        (run.label, run.breakdown) for run in results.connector_runs() if run.breakdown
    ]
    if results.fixed_cost:
        after = [label for label, _ in runs].index(results.fixed_cost.small.label) + 1
        runs.insert(after, ("nothing pending", results.fixed_cost.idle_breakdown))
    shown = [(label, found) for label, found in runs if found is not None]
    if not shown:
        return []
    lines = ["", "### A run's time outside its calls (issue 18)", ""]
    for label, found in shown:
        lines += [f"`{label}`:", "", "```", *found.lines(), "```", ""]
    return lines


def _cli_start_lines(cli: CliStart | None) -> list[str]:
    if cli is None:
        return []
    return [
        "",
        f"### CLI start (fresh processes, {cli.repeats} timed runs of each command line)",
        *(
            [
                "",
                "Measured again after a disturbed attempt; other cores of each attempt: "
                + ", ".join(f"{cores:.2f}" for cores in cli.attempts_other_cores)
                + " (the quietest is kept).",
            ]
            if len(cli.attempts_other_cores) > 1
            else []
        ),
        "",
        *table(
            [
                "command line",
                "median wall s",
                "max wall s",
                "median CPU s",
                "other cores (median)",
                f"{' / '.join(HEAVY)} imported (-X importtime)",
                "exit codes",
            ],
            [
                [
                    f"`{line.command}`",
                    f"{line.median_s:.3f}",
                    f"{line.max_s:.3f}",
                    f"{line.median_cpu_s:.3f}",
                    f"{line.median_other_cores:.2f}",
                    ", ".join(line.heavy_imports) or "none",
                    ", ".join(map(str, sorted(set(line.exit_codes))))
                    + f" (importtime run: {line.importtime_exit_code})",
                ]
                for line in cli.lines
            ],
        ),
    ]


def _evidence_lines(run: EvidenceRun | None) -> list[str]:
    if run is None:
        return []
    head = f"### Evidence: the chain's link, verify and redact (issue 15; {run.wall_s:.0f} s)"
    if run.exit_code != 0:
        return ["", head, "", f"`evidence_bench.py` failed (exit {run.exit_code})."]
    return ["", head, "", run.markdown.rstrip()]


def _source_crash_lines(run: SourceCrash | None) -> list[str]:
    if run is None:
        return []
    first = run.cases[0] if run.cases else None
    return [
        "",
        "### A crash mid-extract through the dlt source (issue 17)",
        "",
        f"`pipeline.run(routera_archive(force=True))` in a user's script on DuckDB, "
        f"{first.contacts if first else 0} contacts at {first.latency_ms if first else 0:g} ms, "
        f"concurrency {first.concurrency if first else 0} (the source's default), no --rps; each "
        "case on a fresh sandbox, dataset and pipeline folder. A killed run is SIGKILLed (its "
        "process group) once the sandbox archived so many contacts, then the same script runs "
        "again to its exit; the cost is both walls minus the clean run's.",
        *(
            [
                "",
                "Measured again after a disturbed attempt; other cores of each attempt: "
                + ", ".join(f"{cores:.2f}" for cores in first.attempts_other_cores)
                + " (the quietest is kept).",
            ]
            if first and len(first.attempts_other_cores) > 1
            else []
        ),
        "",
        *table(SOURCE_CRASH_HEADER, [case.row() for case in run.cases]),
    ]


def render(results: Results) -> str:
    machine = results.machine
    lines = [
        f"Run {results.started} - {results.finished} ({results.mode}): `{results.command}`",
        "",
        f"Machine: {machine.get('nproc')} cores, {machine.get('cpu_model')}, "
        f"{machine.get('memory_gb')} GB, Linux {machine.get('kernel')}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items())
        + ".",
        "",
        *(
            [f"Extra connector environment: `{results.connector_env}`.", ""]
            if results.connector_env
            else []
        ),
        "### Targets",
        "",
        *table(
            ["target", "measured", "wanted", "result", "miss by"],
            [
                [v.target, v.measured, v.wanted, "pass" if v.passed else "MISS", v.gap]
                for v in verdicts(results)
            ],
        ),
        "",
        "### Connector runs",
        "",
        *table(CONNECTOR_HEADER, _connector_rows(results.connector_runs())),
        *_snapshot_lines(results.connector_runs()),
        "",
        "### Baselines",
        "",
        *table(
            ["baseline", "contacts", "wall s", "peak RSS MB", "other cores", "detail"],
            _baseline_rows(results),
        ),
        *_ceiling_lines(results),
        *_breakdown_lines(results),
        *_cli_start_lines(results.cli_start),
        *_evidence_lines(results.evidence),
        *_source_crash_lines(results.source_crash),
    ]
    return "\n".join(lines) + "\n"


def jsonable(value: Any) -> Any:
    """Dataclasses as dicts (with the derived ideal figures), minus the processes' output."""
    if hasattr(value, "__dataclass_fields__"):
        data = {
            name: jsonable(getattr(value, name))
            for name in value.__dataclass_fields__
            if name not in ("stdout", "stderr", "markdown")
        }
        if isinstance(value, ConnectorRun):
            data.update(
                ideal_rps=value.ideal_rps,
                ideal_s=value.ideal_s,
                archived_per_s=value.archived_per_s,
                snapshot_gets=value.snapshot_gets,
                requests_per_contact=value.requests_per_contact,
                problems=value.problems(),
            )
        if isinstance(value, CrashCase):
            data.update(
                total_wall_s=value.total_wall_s,
                cost_s=value.cost_s,
                resent=value.resent,
                journal_rows=value.journal_rows,
                problems=value.problems(),
            )
        return data
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value
