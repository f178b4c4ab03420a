"""routera-archive: archive Routera contacts from a queue and keep every returned record.

The library knows HTTP (`client`), the API's shapes (`models`), the queue (`queue`) and dlt
(`source`); it has no CLI concerns, which live in `pipelines/`. One process concern is its own:
a run makes its calls in a child process (`call_worker`), so that dlt's loads do not slow them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("routera-archive")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
