"""Fault injection: the ways a real API misbehaves, reproducible under a seed.

The connector's retry, rate-limit and recovery logic can only be trusted if it has met these
failures; a seeded RNG makes a failing test replayable. See `FaultConfig` for the semantics.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from routera_archive_sandbox.config import FaultConfig


@dataclass(frozen=True)
class Rejection:
    """An answer given instead of handling the request (the request has no effect)."""

    status: int
    message: str
    retry_after: int | None = None


@dataclass(frozen=True)
class Spoiler:
    """What to do to the answer of a request that was handled."""

    malformed: bool = False
    hang: bool = False


class FaultInjector:
    """Rolls the dice for each request; one instance per app, shared by all its requests."""

    def __init__(
        self,
        faults: FaultConfig,
        seed: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.faults = faults
        self._rng = random.Random(f"routera-sandbox:{seed}:faults")
        self._monotonic = monotonic
        self._lock = threading.Lock()  # the RNG and the bucket may be shared by two loops
        self._bucket = max(1.0, faults.rate_limit)  # one second of burst
        self._bucket_at = monotonic()

    async def delay(self) -> None:
        """Wait the configured latency (a floor) plus jitter."""
        if not (self.faults.latency_ms or self.faults.jitter_ms):
            return
        with self._lock:
            jitter = self._rng.uniform(0, self.faults.jitter_ms) if self.faults.jitter_ms else 0.0
        await asyncio.sleep((self.faults.latency_ms + jitter) / 1000)

    def reject(self) -> Rejection | None:
        """A 429 or 5xx to answer instead of handling the request, or None to handle it."""
        faults = self.faults
        with self._lock:
            if faults.rate_limit:
                now = self._monotonic()
                capacity = max(1.0, faults.rate_limit)
                elapsed = now - self._bucket_at
                self._bucket = min(capacity, self._bucket + elapsed * faults.rate_limit)
                self._bucket_at = now
                if self._bucket < 1.0:
                    wait = (1.0 - self._bucket) / faults.rate_limit
                    return Rejection(429, "Too many requests", max(1, math.ceil(wait)))
                self._bucket -= 1.0
            if faults.throttle_rate and self._rng.random() < faults.throttle_rate:
                return Rejection(429, "Too many requests", 1)
            if faults.error_rate and self._rng.random() < faults.error_rate:
                status = self._rng.choice((500, 502, 503))
                return Rejection(status, _REASONS[status])
        return None

    def spoil(self) -> Spoiler:
        """Whether to cut the body of, or withhold, the answer of a handled request."""
        faults = self.faults
        if not (faults.malformed_rate or faults.hang_rate):
            return Spoiler()
        with self._lock:
            hang = bool(faults.hang_rate) and self._rng.random() < faults.hang_rate
            malformed = bool(faults.malformed_rate) and self._rng.random() < faults.malformed_rate
        return Spoiler(malformed=malformed, hang=hang)


_REASONS = {500: "Internal server error", 502: "Bad gateway", 503: "Service unavailable"}
