"""Pacing of requests to a rate: evenly spaced, close to the rate, never over it.

aiolimiter's `AsyncLimiter(1, 1 / rps)` (what the connector used first) is a bucket of one
request: every late wake-up of the event loop (a chunk load holding the GIL, a slow callback)
is time lost for good, and a run reached 91% of its limit (bench/RESULTS.md). A larger bucket
makes up for that, but sends a burst of its whole size after any pause, which is exactly what a
rate limit is there to refuse.

`RatePacer` does both jobs with two rules:

1. **Slots.** Each request takes the next slot of a fixed grid `1 / (rate x SLOT_SHARE)` apart,
   or now if the grid has fallen behind. A request that wakes late does not push the grid back,
   so the next ones catch up and the long-run rate is the grid's, not the grid's minus lateness.
2. **Window.** No request starts less than `WINDOW_S` after the request `rate` places before
   it, so however the slots bunch after a pause, no window of that length holds more than
   `rate` starts.

The window is a little longer than the server's one second because the server counts arrivals,
not our starts: between the two lies whatever delays a request after it was let go (an event
loop busy with other work, a load holding the GIL), and a request delayed across the edge of a
second lands in the next one. With the window `1 + J` seconds long, no one-second window at the
server holds more than `rate` arrivals as long as those delays differ by less than J. Measured
here (bench/RESULTS.md), they reach about 50 ms while chunks load; the price is that a run holds
`rate / WINDOW_S`, 95% of the rate, instead of 98%.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

# The grid runs a little under the rate, so that a catch-up after a pause seldom meets the
# window rule (which would then space the catch-up out again).
SLOT_SHARE = 0.96
# One second plus the spread of delays between a request's start and its arrival (see above).
WINDOW_S = 1.05


class RatePacer:
    """Waits so that requests start at most `rate` per second, evenly spaced."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"a pacing rate must be a positive number, got {rate!r}")
        self.rate = rate
        self._interval = 1.0 / (rate * SLOT_SHARE)
        # `rate` starts per WINDOW_S; for rates that are not whole numbers, the whole number of
        # starts below it per a window stretched to match (1.5/s: one per 0.7 s; 0.5/s: one per
        # 2.1 s), so that the window never cuts a rate down nor lets a late start come early.
        self._window_size = max(1, math.floor(rate))
        self._window_s = WINDOW_S * self._window_size / rate
        self._clock = clock
        self._sleep = sleep
        self._next_slot = -math.inf
        self._starts: deque[float] = deque(maxlen=self._window_size)

    async def wait(self) -> None:
        """Return when the caller may send its request (counted as started then)."""
        now = self._clock()
        slot = max(now, self._next_slot)
        # Reserved now, so a waiter that wakes late does not move the grid for the ones after.
        self._next_slot = slot + self._interval
        if slot > now:
            await self._sleep(slot - now)
        while len(self._starts) == self._window_size:
            now = self._clock()
            due = self._starts[0] + self._window_s
            if due <= now:
                break
            await self._sleep(due - now)
        self._starts.append(self._clock())
