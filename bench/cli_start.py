"""How long `routera-archive --help`, `--version` and each command's `--help` take to answer.

Issue 11 asks that asking for help costs no more than reading it: none of these command lines
may import dlt, duckdb or httpx (about 0.4 s of imports before anything is printed), and each
answers in under 0.3 s on this machine. Both are measured from the outside, as for every other
figure: each command line runs as a fresh process of the installed `routera-archive` script,
`repeats` times, in turn with the others so that the machine's drift touches them all alike;
its wall time is process start to exit (`harness.run_process`), reported as median and max.

Which modules a command line imports is checked apart, in one untimed run per command line of
the same script under `python -X importtime` (which slows the imports it reports): its stderr
names every module imported, so dlt, duckdb or httpx, or any module of theirs, shows up there.
Those runs go first, so the timed runs never pay for a cold file cache either.
"""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import CLI, PYTHON, ProcessRun, clean_env, run_process
from bench.runners import Config

COMMANDS = ("run", "enqueue", "status", "report", "sandbox", "demo")
# The packages a command line that only prints must not import (nor any module of theirs).
HEAVY = ("dlt", "duckdb", "httpx")


def command_lines() -> list[tuple[str, ...]]:
    """`--help`, `--version`, then `<command> --help` for each command."""
    return [("--help",), ("--version",), *((command, "--help") for command in COMMANDS)]


def imported_modules(importtime: str) -> list[str]:
    """The modules `python -X importtime`'s report (its stderr) names, in the order imported.

    A report line is `import time: <self us> | <cumulative us> | <indented module name>`; the
    first is the header (`self [us] | cumulative | imported package`).
    """
    names = []
    for line in importtime.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.append(name)
    return names


def heavy_imports(modules: list[str]) -> list[str]:
    """Which of HEAVY are among `modules` (the package or any module of it), in HEAVY's order."""
    tops = {module.split(".", 1)[0] for module in modules}
    return [package for package in HEAVY if package in tops]


@dataclass
class CliLine:
    """One command line: its timed runs and what its untimed `-X importtime` run imported."""

    args: list[str]
    walls_s: list[float]
    exit_codes: list[int]
    median_s: float
    max_s: float
    median_cpu_s: float
    median_other_cores: float
    heavy_imports: list[str]
    # How many modules the `-X importtime` run reported: 0 would make "no heavy import" vacuous.
    modules_imported: int
    importtime_exit_code: int

    @property
    def command(self) -> str:
        return " ".join(["routera-archive", *self.args])


@dataclass
class CliStart:
    """Every command line of `command_lines()`, `repeats` timed runs each."""

    repeats: int
    lines: list[CliLine]
    # `other_cores` of every attempt, when a disturbed one was measured again.
    attempts_other_cores: list[float] = field(default_factory=list)

    @property
    def other_cores(self) -> float:
        """The most disturbed command line's median: one busy moment is not a disturbed run."""
        return max((line.median_other_cores for line in self.lines), default=0.0)

    def note_attempts(self, other_cores: list[float]) -> None:
        self.attempts_other_cores = other_cores

    def problems(self) -> list[str]:
        """Command lines that failed (their timings would not be of a help text), or whose
        import check saw no import at all (it would then say nothing)."""
        found = []
        for line in self.lines:
            if any(line.exit_codes) or line.importtime_exit_code:
                found.append(
                    f"`{line.command}` exit codes {sorted(set(line.exit_codes))}, "
                    f"under -X importtime {line.importtime_exit_code}"
                )
            if not line.modules_imported:
                found.append(f"`{line.command}`: -X importtime reported no module")
        return found


def _line(args: tuple[str, ...], runs: list[ProcessRun], importtime: ProcessRun) -> CliLine:
    walls = [run.wall_s for run in runs]
    modules = imported_modules(importtime.stderr)
    return CliLine(
        args=list(args),
        walls_s=[round(wall, 4) for wall in walls],
        exit_codes=[run.exit_code for run in runs],
        median_s=statistics.median(walls),
        max_s=max(walls),
        median_cpu_s=statistics.median(run.cpu_s for run in runs),
        median_other_cores=statistics.median(run.other_cores for run in runs),
        heavy_imports=heavy_imports(modules),
        modules_imported=len(modules),
        importtime_exit_code=importtime.exit_code,
    )


def cli_start(config: Config, root: Path, extra_env: Mapping[str, str]) -> CliStart:
    """Each command line under `-X importtime` once, then `config.repeats` timed runs of each,
    in a fresh directory without any `.dlt` settings."""
    if config.repeats < 1:
        raise ValueError(f"cli-start needs at least one timed run, not {config.repeats}")
    workdir = root / config.label
    shutil.rmtree(workdir, ignore_errors=True)
    env = clean_env(**extra_env)
    lines = command_lines()
    checks = [
        run_process(
            f"importtime-{number}",
            [PYTHON, "-X", "importtime", CLI, *args],
            cwd=workdir,
            env=env,
            sandbox=None,
        )
        for number, args in enumerate(lines)
    ]
    timed: list[list[ProcessRun]] = [[] for _ in lines]
    for repeat in range(config.repeats):
        for number, args in enumerate(lines):
            timed[number].append(
                run_process(
                    f"cli-{number}-{repeat}", [CLI, *args], cwd=workdir, env=env, sandbox=None
                )
            )
    return CliStart(
        repeats=config.repeats,
        lines=[
            _line(args, runs, check) for args, runs, check in zip(lines, timed, checks, strict=True)
        ],
    )
