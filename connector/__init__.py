"""routera-archive: archive Routera contacts from a queue and keep every returned record.

The library knows HTTP (`client`), the API's shapes (`models`), the queue (`queue`) and dlt
(`source`); it has no CLI or process concerns, which live in `pipelines/`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("routera-archive")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
