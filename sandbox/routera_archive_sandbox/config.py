"""Settings of the sandbox server.

One dataclass holds every knob so the CLI, the tests and the benchmarks describe a sandbox the same
way, and so a run can be reproduced from its config alone (the data and the fault dice are seeded).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal, get_args

# What an object answer holds: every field (as the published examples show), or, as the
# reference says of the archive page, only the type's default properties (plus `created_at`,
# `updated_at`, `archived_by` once archived, and on reads the names asked for in `properties`).
AnswerFields = Literal["all", "default"]


@dataclass
class FaultConfig:
    """What can go wrong, per request to the API (never to `/_sandbox/*`).

    All zero means a perfect API. Rates are probabilities in [0, 1], drawn from an RNG seeded by
    `SandboxConfig.seed`, so a sequential client sees the same faults on every run.

    - `latency_ms`, `jitter_ms`: every answer waits `latency_ms + uniform(0, jitter_ms)`; the
      latency is a floor, never shortened by the jitter.
    - `rate_limit`: requests per second (token bucket, one second of burst); beyond it the answer
      is 429 with `Retry-After`. 0 turns it off.
    - `throttle_rate`: a 429 with `Retry-After: 1` regardless of the request rate.
    - `error_rate`: a 500, 502 or 503.
    These three are decided *before* the request is handled: the request has no effect.
    - `malformed_rate`: the request is handled, then its JSON body is cut in half (status kept).
    - `hang_rate`: the request is handled, then no answer is ever sent; the server waits until the
      client gives up (its stats entry has status 0). This is the "did my DELETE happen?" case.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    rate_limit: float = 0.0
    hang_rate: float = 0.0
    malformed_rate: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value < 0:
                raise ValueError(f"faults.{f.name} must be >= 0, got {value!r}")
            if f.name.endswith("_rate") and value > 1:
                raise ValueError(f"faults.{f.name} is a probability in [0, 1], got {value!r}")

    @property
    def any_active(self) -> bool:
        """True when any fault or delay is configured (the fast path skips them all otherwise)."""
        return any(getattr(self, f.name) for f in fields(self))


@dataclass
class SandboxConfig:
    """A sandbox: where it listens, what it holds, whom it lets in and how it misbehaves.

    `contacts`, `companies`, `deals`, `tickets`: how many records of each type are seeded.

    `port=0` asks the OS for a free port; `SandboxServer.url` tells which one it got.
    `static_tokens` are bearer tokens accepted as-is (for the connector's static-token mode); a
    DELETE made with one is attributed to `STATIC_TOKEN_CLIENT_ID`. `answer_fields`: see
    `AnswerFields` (`default` is how Routera's reference reads; `all` how its examples look).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    contacts: int = 200
    companies: int = 50
    deals: int = 50
    tickets: int = 50
    seed: int = 0
    client_id: str = "sandbox-client"
    client_secret: str = "sandbox-secret"
    static_tokens: tuple[str, ...] = ()
    token_ttl: float = 3600.0
    answer_fields: AnswerFields = "all"
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port!r}")
        for name in ("contacts", "companies", "deals", "tickets"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.token_ttl <= 0:
            raise ValueError(f"token_ttl must be > 0 seconds, got {self.token_ttl!r}")
        if not self.client_id or not self.client_secret:
            raise ValueError("client_id and client_secret must not be empty")
        if self.answer_fields not in get_args(AnswerFields):
            raise ValueError(
                f"answer_fields must be 'all' or 'default', got {self.answer_fields!r}"
            )
        # A list from a CLI option or a TOML file would otherwise be accepted and compared oddly.
        self.static_tokens = tuple(self.static_tokens)
        if any(not token for token in self.static_tokens):
            raise ValueError("static_tokens must not contain an empty token")


# `archived_by` for a DELETE made with one of `SandboxConfig.static_tokens`.
STATIC_TOKEN_CLIENT_ID = "static-token-client"
