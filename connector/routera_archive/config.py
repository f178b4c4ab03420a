"""The connector's configuration, resolved the dlt way.

One spec serves both the dlt source and the runner, so `SOURCES__ROUTERA__BASE_URL`,
`.dlt/config.toml` `[sources.routera]` and `.dlt/secrets.toml` mean the same thing everywhere.
The three credentials are typed as dlt secrets: dlt keeps them out of traces and state.
"""

from typing import Any

from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.exceptions import ConfigurationException
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.typing import TSecretStrValue

from routera_archive.errors import ConfigurationError
from routera_archive.http.client import ClientConfig
from routera_archive.settings import (
    DEFAULT_BASE_URL,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_ARCHIVES,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_RETRY_WAIT_S,
    DEFAULT_RPS,
    READ_TIMEOUT_S,
    SOURCE_NAME,
    SOURCE_SECTION,
)

CONFIG_SECTIONS = ("sources", SOURCE_SECTION, SOURCE_NAME)
SCHEMA_CONTRACTS = ("evolve", "freeze", "discard")


@configspec
class RouteraSourceConfig(BaseConfiguration):
    base_url: str = DEFAULT_BASE_URL
    access_token: TSecretStrValue | None = None
    client_id: TSecretStrValue | None = None
    client_secret: TSecretStrValue | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    rps: float = DEFAULT_RPS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT_S
    read_timeout: float = READ_TIMEOUT_S
    max_archives: int = DEFAULT_MAX_ARCHIVES
    chunk_size: int = DEFAULT_CHUNK_SIZE
    # evolve: new fields become columns. freeze: they stay in raw_response only and the run
    # exits 1 so someone looks. discard: the same, silently but reported.
    schema_contract: str = "evolve"
    # Make the HTTP calls in a child process (connector/call_worker.py), so dlt's loads do not
    # slow them; false keeps them in the run's process (for hosts that forbid subprocesses).
    call_worker: bool = True

    def client_config(self) -> ClientConfig:
        return ClientConfig(
            base_url=self.base_url,
            access_token=self.access_token or None,
            client_id=self.client_id or None,
            client_secret=self.client_secret or None,
            concurrency=self.concurrency,
            rps=self.rps,
            max_attempts=self.max_attempts,
            max_retry_wait=self.max_retry_wait,
            read_timeout=self.read_timeout,
        )


def resolve_source_config(**overrides: Any) -> RouteraSourceConfig:
    """Resolve from dlt's providers (env, .dlt/*.toml), with explicit values taking precedence.

    dlt's own errors name the key and the value; they are rewrapped so the CLI can show one
    actionable line. A secret's value never appears: dlt does not print secret values.
    """
    explicit = {key: value for key, value in overrides.items() if value is not None}
    try:
        config = resolve_configuration(
            RouteraSourceConfig(), sections=CONFIG_SECTIONS, explicit_value=explicit or None
        )
    except ConfigurationException as exc:
        raise ConfigurationError(f"the [sources.routera] configuration is invalid: {exc}") from None
    if config.chunk_size < 1:
        raise ConfigurationError("chunk_size must be at least 1")
    if config.schema_contract not in SCHEMA_CONTRACTS:
        raise ConfigurationError(
            f"schema_contract must be one of {', '.join(SCHEMA_CONTRACTS)}, "
            f"not {config.schema_contract!r}"
        )
    if config.max_archives < 0:
        raise ConfigurationError("max_archives must be 0 or more")
    config.client_config().validate()
    return config
