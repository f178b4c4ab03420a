"""Fixtures for every end-to-end test file: the destination-parametrised `target`, and a
sandbox no call reaches, for tests whose API is a `tests.misbehaving_api.MisbehavingApi`."""

from collections.abc import Iterator

import pytest

from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.e2e.cli_support import target

__all__ = ["target"]


@pytest.fixture
def idle_sandbox() -> Iterator[SandboxServer]:
    """`cli_env` builds a CLI's environment from a sandbox; the test points it elsewhere."""
    with SandboxServer(SandboxConfig(port=0, contacts=1)) as running:
        yield running
