"""The destination-parametrised `target` fixture, for every end-to-end test file."""

from tests.e2e.cli_support import target

__all__ = ["target"]
