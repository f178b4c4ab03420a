"""Benchmark the connector against the ideal, the hand-written loop and a raw dlt load.

Issue 6 asks whether the API's latency and rate limit, not the connector, are the ceiling. Every
figure here is measured from the outside, the way a scheduler sees a run:

- the sandbox runs as its own process (`routera-archive sandbox`, through `timed_sandbox.py`,
  which only adds the time of each answer), so the server never shares the connector's GIL;
- the connector runs as its own process (`routera-archive run --force ...`) in a fresh working
  directory with a fresh `DLT_DATA_DIR`; its wall time is process start to exit, its CPU time
  from `wait4`'s `rusage` (the call worker's included: it is reaped by the run), its peak
  memory that of the process tree: the kernel's `ru_maxrss` plus the peak (VmHWM) of every
  descendant seen by the RSS sampler, an upper bound since the two peaks need not coincide;
- throughput while archiving is counted on the server: API answers between the first and the
  last DELETE of the run (the run's log timestamps give a second, coarser figure);
- the sandbox's `/_sandbox/stats` gives the request counts, and the DuckDB file the audit rows,
  so each configuration also proves every contact was archived exactly once.

Baselines (ideal time, the hand-written loop, the raw load) are measured in the same invocation,
on the same machine state. The machine is shared, so each configuration also records how many
cores other processes kept busy meanwhile; a configuration disturbed by more than
`--max-other-cores` is measured again and the quieter attempt kept. `cli-start` times the CLI's
help and version command lines as fresh processes (issue 11). `properties` runs the headline
and a rate-limited run with `properties` set against DELETE answers without custom fields
(issue 13): a snapshot GET before each DELETE, two requests per contact, both under the limit.
`evidence` runs `evidence_bench.py` on DuckDB (issue 15: the chain's link at a run's end,
`verify` and `redact` on a dataset of 1,000, 10,000 and 100,000 audit rows; no target).
`source-crash` runs `source_crash_cost.py` (issue 17: a user's own `pipeline.run(routera_archive())`
on DuckDB, clean, SIGKILLed after its last answer and at a third, each then run again: what the
crash costs in wall time, and proof that no record was lost or archived twice; no target).

Run `.venv/bin/python bench/run_bench.py` (25-30 minutes, about 5 more for `evidence` and 2 for
`source-crash`) or `--quick` (about a minute); the tables go to `bench/results/last_run*.md` (and
`.json`).
`--profile` runs the headline configuration under py-spy instead; `--only` picks
configurations; `--connector-env` measures a change of environment (e.g. one more package on
PYTHONPATH) without touching the connector.

This file is only the entry point (options, output files). The rest, one job a module:
`harness` (processes and the machine), `sandbox_process` (a fresh sandbox per configuration),
`measures` (figures read from what a run leaves), `runners`, `cli_start`, `evidence_bench` and
`source_crash_cost` (one runner per kind of configuration), `scenarios` (the table of
configurations), `verdicts` (the targets), `render` (markdown and JSON), `gil_profile`
(`--profile`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

if not __package__:  # run as `python bench/run_bench.py`: the `bench` package is one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gil_profile import profile_headline
from bench.harness import BENCH_DIR
from bench.render import jsonable, render
from bench.scenarios import FULL, PARTS, QUICK, run_all


def say(line: str) -> None:
    print(line, flush=True)


def parse_env(items: list[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--connector-env {item!r}: use KEY=VALUE")
        env[key] = value
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument(
        "--max-other-cores",
        type=float,
        default=0.4,
        help="measure a configuration again when other processes kept more cores busy",
    )
    parser.add_argument(
        "--retries", type=int, default=None, help="re-measurements per config (1; quick: 0)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=None,
        help="before each configuration, wait up to this many seconds for an idle machine "
        "(120; quick: 0)",
    )
    parser.add_argument(
        "--out", type=Path, default=BENCH_DIR / "results", help="where last_run*.md/json go"
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directories")
    parser.add_argument(
        "--profile", action="store_true", help="only profile the headline run with py-spy"
    )
    parser.add_argument(
        "--connector-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the connector runs, the CLI start and the bare httpx loop "
        "(repeatable)",
    )
    parser.add_argument("--tag", default="", help="added to the names of the result files")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated subset of {','.join(PARTS)} (results go to last_run_only-*.md)",
    )
    parser.add_argument(
        "--chunk-sizes",
        default=None,
        help="comma-separated chunk sizes for the `chunks` diagnostic (default "
        f"{','.join(map(str, FULL.chunk_sizes))})",
    )
    args = parser.parse_args(argv)
    plan, mode = (QUICK, "quick") if args.quick else (FULL, "full")
    if args.chunk_sizes:
        plan = replace(plan, chunk_sizes=tuple(int(n) for n in args.chunk_sizes.split(",")))
    retries = args.retries if args.retries is not None else (0 if args.quick else 1)
    wait_quiet = args.wait_quiet if args.wait_quiet is not None else (0 if args.quick else 120)
    parts = tuple(part.strip() for part in args.only.split(",") if part.strip())
    if unknown := set(parts) - set(PARTS):
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}; choose from {PARTS}")
    extra_env = parse_env(args.connector_env, parser)
    suffix = (
        ("" if mode == "full" else "_quick")
        + ("" if set(parts) == set(PARTS) or args.profile else "_only-" + "-".join(parts))
        + (f"_{args.tag}" if args.tag else "")
    )
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="routera-bench-"))
    say(f"working in {root}")
    try:
        if args.profile:
            text = profile_headline(plan, root, extra_env)
        else:
            results = run_all(
                plan,
                root,
                max_other=args.max_other_cores,
                retries=retries,
                mode=mode,
                command=" ".join([".venv/bin/python", "bench/run_bench.py", *sys.argv[1:]]),
                parts=parts,
                quiet_timeout=wait_quiet,
                extra_env=extra_env,
                say=say,
            )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.profile:
        (args.out / f"last_profile{suffix}.md").write_text(text, encoding="utf-8")
        say(text)
        return 0
    text = render(results)
    (args.out / f"last_run{suffix}.md").write_text(text, encoding="utf-8")
    (args.out / f"last_run{suffix}.json").write_text(
        json.dumps(jsonable(results), indent=2, default=str), encoding="utf-8"
    )
    say(text)
    return 1 if results.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
