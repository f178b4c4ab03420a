"""The targets of issue 6 (issue 11's CLI start, issue 13's runs with `properties`), judged on
one invocation's results.

Each verdict gives the measured ratio beside the bound it is held to and, for a miss, by how
much it misses, so a near miss and a far one read differently. Only configurations that ran are
judged; the bounds are the issues' own figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.cli_start import HEAVY
from bench.runners import ConnectorRun
from bench.scenarios import Results


@dataclass(frozen=True)
class Bound:
    """What a measured ratio is held to: at least, or at most, `value`."""

    value: float
    at_least: bool


HEADLINE_THROUGHPUT = Bound(0.9, at_least=True)  # archive throughput / ideal
HEADLINE_WALL = Bound(1.3, at_least=False)  # process wall / ideal time
VERSUS_HANDWRITTEN = Bound(20, at_least=True)  # hand-written wall / connector wall
RATE_REACHED = Bound(0.95, at_least=True)  # archive throughput / limit
MEMORY_GROWTH = Bound(1.25, at_least=False)  # peak RSS of the large queue / the small one's
RAW_LOAD = Bound(2, at_least=False)  # latency-0 connector wall / one raw pipeline.run()
CLI_START_S = 0.3  # median wall of every help and version command line, under
# Issue 18: a run's fixed cost.
HEADLINE_FIXED_S = Bound(1.5, at_least=False)  # headline wall - contacts / archived per s
SMALL_RUN_S = Bound(1.5, at_least=False)  # 25 contacts at 50 ms, wall
IDLE_RUN_S = Bound(1.0, at_least=False)  # nothing pending, wall
VERSUS_CEILING = Bound(0.97, at_least=True)  # headline archive req/s / bare httpx loop's


@dataclass
class Verdict:
    target: str
    measured: str
    wanted: str
    passed: bool
    gap: str


def ratio_verdict(target: str, value: float, bound: Bound, unit: str = "x") -> Verdict:
    at_least, limit = bound.at_least, bound.value
    passed = value >= limit if at_least else value <= limit
    if passed:
        gap = "-"
    elif at_least:
        gap = f"{limit / value:.2f}x short" if value else "nothing measured"
    else:
        gap = f"{value / limit:.2f}x over"
    sign = ">=" if at_least else "<="
    return Verdict(target, f"{value:.2f}{unit}", f"{sign} {limit:g}{unit}", passed, gap)


def _cli_verdicts(results: Results) -> list[Verdict]:
    cli = results.cli_start
    if not cli or not cli.lines:
        return []
    slowest = max(cli.lines, key=lambda line: line.median_s)
    longest = max(cli.lines, key=lambda line: line.max_s)
    importing = [line for line in cli.lines if line.heavy_imports]
    heavy = ", ".join(HEAVY)
    return [
        Verdict(
            f"CLI start, {len(cli.lines)} help and version command lines x {cli.repeats}: "
            "median wall of the slowest",
            f"{slowest.median_s:.3f} s (`{slowest.command}`); slowest single run "
            f"{longest.max_s:.3f} s (`{longest.command}`)",
            f"< {CLI_START_S:g} s",
            slowest.median_s < CLI_START_S,
            "-"
            if slowest.median_s < CLI_START_S
            else f"{slowest.median_s / CLI_START_S:.2f}x over",
        ),
        Verdict(
            f"CLI start: {heavy} imported (python -X importtime, each command line)",
            "; ".join(f"`{line.command}`: {', '.join(line.heavy_imports)}" for line in importing)
            or "none",
            "none",
            not importing,
            "-" if not importing else f"{len(importing)} of {len(cli.lines)} command lines",
        ),
    ]


def _headline_verdicts(head: ConnectorRun) -> list[Verdict]:
    """Archive throughput (API answers per second: GETs and DELETEs) against the ideal, and
    process wall time against the ideal time (twice the requests with `properties`)."""
    what = f"{head.contacts} @ {head.latency_ms:g} ms, c{head.concurrency}"
    if head.properties:
        what = f"properties, {what} ({head.requests_per_contact_planned} requests per contact)"
    return [
        ratio_verdict(
            f"{what}: archive throughput / ideal",
            head.api.archive_rps / head.ideal_rps,
            HEADLINE_THROUGHPUT,
        ),
        ratio_verdict(
            f"{what}: process wall / ideal time", head.process.wall_s / head.ideal_s, HEADLINE_WALL
        ),
    ]


def _rate_verdicts(rated: ConnectorRun) -> list[Verdict]:
    """No one-second window over the limit at the server (every request counts, whatever its
    method: the token POST, the check GET, snapshots, DELETEs), no 429, and the limit reached."""
    limit = rated.sandbox_rate_limit
    what = f"{'properties, ' if rated.properties else ''}rate limit {limit:g}/s"
    over = max(0, rated.api.max_arrivals_in_1s_window - int(limit))
    throttled = rated.sandbox_totals.get("by_status", {}).get("429", 0)
    return [
        Verdict(
            f"{what}: no 1 s window over it (arrivals at the server, all methods; 429s)",
            f"max {rated.api.max_arrivals_in_1s_window} arrivals in any 1 s window "
            f"({rated.api.max_arrivals_in_calendar_second} in a calendar second; answers: "
            f"{rated.api.max_in_1s_window}), {throttled} x 429",
            f"<= {limit:g} per window, 0 x 429",
            over == 0 and throttled == 0,
            "-" if over == 0 and throttled == 0 else f"{over} over, {throttled} x 429",
        ),
        ratio_verdict(
            f"{what}: archive throughput / limit", rated.api.archive_rps / limit, RATE_REACHED
        ),
    ]


def _requests_per_contact_verdict(run: ConnectorRun) -> Verdict:
    """With `properties`: a snapshot GET and a DELETE per contact archived, nothing more."""
    planned = run.requests_per_contact_planned
    measured = run.requests_per_contact
    passed = abs(measured - planned) < 1e-9
    return Verdict(
        f"{run.label}: requests per archived contact (GETs and DELETEs but the check GET)",
        f"{measured:.3f} ({run.snapshot_gets} snapshot GETs, "
        f"{run.sandbox_totals.get('by_method', {}).get('DELETE', 0)} DELETEs, "
        f"{run.deletes_succeeded} archived)",
        f"= {planned}",
        passed,
        "-" if passed else f"{measured - planned:+.3f}",
    )


def _fixed_verdicts(results: Results) -> list[Verdict]:
    """Issue 18: the headline's fixed cost, its throughput against the bare httpx loop's with
    as many pools, and the wall time of a small run and of one with nothing pending."""
    found: list[Verdict] = []
    head = results.headline
    if head and head.fixed_s is not None:
        found.append(
            ratio_verdict(
                f"{head.contacts} @ {head.latency_ms:g} ms: fixed cost (wall - contacts / "
                f"archived per s, {head.archived_per_s:.0f}/s)",
                head.fixed_s,
                HEADLINE_FIXED_S,
                " s",
            )
        )
    loops = [c for c in results.ceiling if c.latency_ms == (head.latency_ms if head else -1)]
    if head and loops:
        loop = max(loops, key=lambda c: c.pools)
        found.append(
            ratio_verdict(
                f"{head.contacts} @ {head.latency_ms:g} ms: archive req/s (server) / the bare "
                f"httpx loop's ({loop.pools} pools, {loop.server_rps:.0f}/s)",
                head.api.archive_rps / loop.server_rps,
                VERSUS_CEILING,
            )
        )
    fixed = results.fixed_cost
    if fixed:
        small = fixed.small
        found.append(
            ratio_verdict(
                f"{small.contacts} contacts @ {small.latency_ms:g} ms: wall",
                small.process.wall_s,
                SMALL_RUN_S,
                " s",
            )
        )
        found.append(ratio_verdict("nothing pending: wall", fixed.idle.wall_s, IDLE_RUN_S, " s"))
    return found


def verdicts(results: Results) -> list[Verdict]:
    found: list[Verdict] = []
    if results.headline:
        found += _headline_verdicts(results.headline)
    found += _fixed_verdicts(results)
    if results.versus and results.versus.handwritten.process.exit_code == 0:
        versus = results.versus
        found.append(
            ratio_verdict(
                f"{versus.connector.contacts} contacts: hand-written wall / connector wall",
                versus.handwritten.process.wall_s / versus.connector.process.wall_s,
                VERSUS_HANDWRITTEN,
            )
        )
    if results.rate_limited:
        found += _rate_verdicts(results.rate_limited)
    small, large = results.memory_small, results.memory_large
    if small and large:
        found.append(
            ratio_verdict(
                f"peak RSS {large.contacts} / {small.contacts} queued",
                large.process.peak_rss_mb / small.process.peak_rss_mb,
                MEMORY_GROWTH,
            )
        )
    if small and results.raw_load:
        found.append(
            ratio_verdict(
                f"latency 0, {small.contacts}: connector wall / raw pipeline.run()",
                small.process.wall_s / results.raw_load.load_s,
                RAW_LOAD,
            )
        )
    if results.properties_headline:
        found += _headline_verdicts(results.properties_headline)
        found.append(_requests_per_contact_verdict(results.properties_headline))
    if results.properties_rate_limited:
        found += _rate_verdicts(results.properties_rate_limited)
        found.append(_requests_per_contact_verdict(results.properties_rate_limited))
    return found + _cli_verdicts(results)
