"""The targets of issue 6 (and issue 11's CLI start), judged on one invocation's results.

Each verdict gives the measured ratio beside the bound it is held to and, for a miss, by how
much it misses, so a near miss and a far one read differently. Only configurations that ran are
judged; the bounds are the issues' own figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.cli_start import HEAVY
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


def verdicts(results: Results) -> list[Verdict]:
    found: list[Verdict] = []
    head = results.headline
    if head:
        found.append(
            ratio_verdict(
                f"{head.contacts} @ {head.latency_ms:g} ms, c{head.concurrency}: archive "
                "throughput / ideal",
                head.api.archive_rps / head.ideal_rps,
                HEADLINE_THROUGHPUT,
            )
        )
        found.append(
            ratio_verdict(
                f"{head.contacts} @ {head.latency_ms:g} ms, c{head.concurrency}: process "
                "wall / ideal time",
                head.process.wall_s / head.ideal_s,
                HEADLINE_WALL,
            )
        )
    if results.versus and results.versus.handwritten.process.exit_code == 0:
        versus = results.versus
        found.append(
            ratio_verdict(
                f"{versus.connector.contacts} contacts: hand-written wall / connector wall",
                versus.handwritten.process.wall_s / versus.connector.process.wall_s,
                VERSUS_HANDWRITTEN,
            )
        )
    rated = results.rate_limited
    if rated:
        limit = rated.sandbox_rate_limit
        over = max(0, rated.api.max_arrivals_in_1s_window - int(limit))
        throttled = rated.sandbox_totals.get("by_status", {}).get("429", 0)
        found.append(
            Verdict(
                f"rate limit {limit:g}/s: no 1 s window over it (arrivals at the server; 429s)",
                f"max {rated.api.max_arrivals_in_1s_window} arrivals in any 1 s window "
                f"({rated.api.max_arrivals_in_calendar_second} in a calendar second; answers: "
                f"{rated.api.max_in_1s_window}), {throttled} x 429",
                f"<= {limit:g} per window, 0 x 429",
                over == 0 and throttled == 0,
                "-" if over == 0 and throttled == 0 else f"{over} over, {throttled} x 429",
            )
        )
        found.append(
            ratio_verdict(
                f"rate limit {limit:g}/s: archive throughput / limit",
                rated.api.archive_rps / limit,
                RATE_REACHED,
            )
        )
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
    return found + _cli_verdicts(results)
