"""A local, in-memory imitation of the Routera API for the demo, end-to-end tests and benchmarks.

It serves the documented routes with the published answers and error bodies, seeded
deterministically, and can misbehave on purpose (latency, 429, 5xx, hangs, malformed bodies).
It is its own package: it never imports `connector` or `pipelines`, so it cannot share a bug
with the code it is meant to test.
"""

from routera_archive_sandbox.app import create_app
from routera_archive_sandbox.config import FaultConfig, SandboxConfig
from routera_archive_sandbox.server import SandboxServer, serve_forever
from routera_archive_sandbox.state import SandboxState

__all__ = [
    "FaultConfig",
    "SandboxConfig",
    "SandboxServer",
    "SandboxState",
    "create_app",
    "serve_forever",
]
