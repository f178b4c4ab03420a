"""routera-archive: archive Routera contacts from a queue and keep every returned record.

The library, in rooms by concern: `http` (the Routera client: auth, retries, pacing, ids; no
dlt), `calls` (one request to one outcome, and the call worker process that makes a run's
calls), `dataset` (what lives in the destination: queue, locks, loads, tables, the one
definition of a request's latest outcome), `run` (one run, in the order that keeps every
answer) and `audit` (report, status, the shipped SQL). Entry points (the CLI, schedules) live
in `routera_archive_pipelines`, the local Routera API in `routera_archive_sandbox`.

The names below are the public API. They are imported when first used, so that importing
this package (as the CLI does for `--help`) costs nothing.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("routera-archive")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

# name -> the module that defines it
_PUBLIC = {
    "routera_archive": "routera_archive.source",
    "recover_pipeline_folder": "routera_archive.source",
    "RouteraSourceConfig": "routera_archive.config",
    "resolve_source_config": "routera_archive.config",
    "settings_from_values": "routera_archive.config",
    "ArchiveRun": "routera_archive.run.runner",
    "RunOptions": "routera_archive.run.runner",
    "RunReport": "routera_archive.run.result",
    "ExitCode": "routera_archive.errors",
    "RouteraArchiveError": "routera_archive.errors",
}
__all__ = [
    "ArchiveRun",
    "ExitCode",
    "RouteraArchiveError",
    "RouteraSourceConfig",
    "RunOptions",
    "RunReport",
    "__version__",
    "recover_pipeline_folder",
    "resolve_source_config",
    "routera_archive",
    "settings_from_values",
]

if TYPE_CHECKING:
    from routera_archive.config import (
        RouteraSourceConfig,
        resolve_source_config,
        settings_from_values,
    )
    from routera_archive.errors import ExitCode, RouteraArchiveError
    from routera_archive.run.result import RunReport
    from routera_archive.run.runner import ArchiveRun, RunOptions
    from routera_archive.source import recover_pipeline_folder, routera_archive


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'routera_archive' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
