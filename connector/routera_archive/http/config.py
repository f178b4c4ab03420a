"""What the HTTP client needs, as plain values: made from the settings spec in one place
(`RouteraSourceConfig.client_config`) and validated there, never here.

The client knows no dlt, so this is a frozen dataclass rather than a configspec. Secrets are
kept out of `repr`, so a config can be logged; the call worker receives one on its pipe
(`to_wire` / `from_wire`), never in its command line or environment.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from routera_archive.objects import ObjectType
from routera_archive.redaction import remember


@dataclass(frozen=True)
class AccessToken:
    """A static bearer token: nothing to renew, so a 401 is final."""

    token: str = field(repr=False)

    def __post_init__(self) -> None:
        remember(self.token)  # masked wherever text leaves this process (see redaction)


@dataclass(frozen=True)
class ClientCredentials:
    """OAuth 2.0 client credentials: the client fetches tokens and renews them before expiry."""

    # Not shown either: README and the settings call all three credentials secrets.
    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        remember(self.client_secret)  # masked wherever text leaves this process (see redaction)


# One identity per run: a static token or OAuth client credentials, never both.
Credentials = AccessToken | ClientCredentials


@dataclass(frozen=True)
class ClientConfig:
    """Every setting the client reads; see `RouteraSourceConfig` for what each one means."""

    base_url: str
    credentials: Credentials
    concurrency: int
    rps: float
    connect_timeout: float
    read_timeout: float
    write_timeout: float
    pool_timeout: float
    call_deadline: float
    max_body_bytes: int
    max_attempts: int
    max_retry_wait: float
    backoff_initial: float
    backoff_max: float
    token_refresh_margin: float
    # Per type, the custom fields read with `?properties=` before each DELETE (a snapshot);
    # a type not named: none. Pairs, not a dict, so that the config stays hashable.
    properties: tuple[tuple[ObjectType, tuple[str, ...]], ...]

    def properties_of(self, object_type: ObjectType) -> tuple[str, ...]:
        """The names a read of `object_type` asks for (empty: no snapshot of that type)."""
        return next((names for kind, names in self.properties if kind is object_type), ())

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values that must never appear in a message, a log line or a table."""
        if isinstance(self.credentials, AccessToken):
            return (self.credentials.token,)
        return (self.credentials.client_secret,)

    def to_wire(self) -> dict[str, Any]:
        """A JSON-able form that `from_wire` turns back into this config (secrets included:
        for a pipe to the call worker only)."""
        values = dataclasses.asdict(self)
        values["credentials"]["kind"] = type(self.credentials).__name__
        return values

    @classmethod
    def from_wire(cls, values: dict[str, Any]) -> ClientConfig:
        credentials = dict(values["credentials"])
        kind = credentials.pop("kind")
        chosen = {AccessToken.__name__: AccessToken, ClientCredentials.__name__: ClientCredentials}
        # JSON made the pairs lists, and each type its text.
        properties = tuple((ObjectType(kind), tuple(names)) for kind, names in values["properties"])
        return cls(
            **{**values, "credentials": chosen[kind](**credentials), "properties": properties}
        )
