"""The request pacer alone, without HTTP: how close to `--rps` it gets and its busiest second.

The connector first paced requests with `AsyncLimiter(1, 1 / rps)` (aiolimiter, a leaky bucket
of one request). Each wake-up comes a little late and a bucket of one cannot make up for it, so
the rate loses that lateness on every request (a run reached 91-92% of its limit). A pacer that
hands out fixed time slots (the next slot is `max(now, last slot + 1 / rps)`) keeps the average
rate while a late wake-up only shifts one request; the connector's `RatePacer` adds a one-second
window rule so that catching up can never go over the rate. No HTTP here: `workers`
coroutines acquire `count` times, and the rate and the most acquisitions in any one-second
window are printed. `--busy-ms B` adds a task that holds the loop for B ms out of every 5 ms,
as a CPU-bound connector's loop (and a load thread taking the GIL) does.

Usage: `python bench/limiter_check.py [--rps 100] [--count 500] [--workers 32] [--busy-ms 2]`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

from routera_archive.http.pacing import RatePacer

try:  # the pacer the connector used before RatePacer, for comparison where it is installed
    from aiolimiter import AsyncLimiter
except ImportError:
    AsyncLimiter = None


class SlotPacer:
    """Evenly spaced slots at `rps`; a late wake-up does not push the later slots back."""

    def __init__(self, rps: float) -> None:
        self.interval = 1 / rps
        self.next_slot = 0.0

    async def acquire(self) -> None:
        now = asyncio.get_running_loop().time()
        slot = max(now, self.next_slot)
        self.next_slot = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


async def hog(busy_s: float, period_s: float = 0.005) -> None:
    """Hold the event loop `busy_s` out of every `period_s` (a CPU-bound loop's wake-up lag)."""
    while True:
        time.sleep(busy_s)
        await asyncio.sleep(period_s - busy_s)


async def measure(
    acquire: Callable[[], Awaitable[object]], count: int, workers: int, busy_s: float = 0.0
) -> tuple[float, int]:
    """(acquisitions per second, most acquisitions in any [t, t + 1 s) window)."""
    stamps: list[float] = []
    remaining = iter(range(count))
    hogging = asyncio.create_task(hog(busy_s)) if busy_s else None

    async def worker() -> None:
        for _ in remaining:
            await acquire()
            stamps.append(time.perf_counter())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    seconds = time.perf_counter() - started
    if hogging is not None:
        hogging.cancel()
    stamps.sort()
    low = most = 0
    for high, moment in enumerate(stamps):
        while stamps[low] <= moment - 1.0:
            low += 1
        most = max(most, high - low + 1)
    return count / seconds, most


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--busy-ms", type=float, default=0.0)
    args = parser.parse_args()
    candidates: list[tuple[str, Callable[[], Callable[[], Awaitable[object]]]]] = [
        (f"RatePacer({args.rps:g}) (the connector's)", lambda: RatePacer(args.rps).wait),
        (f"slot pacer at {args.rps:g}/s", lambda: SlotPacer(args.rps).acquire),
    ]
    if AsyncLimiter is not None:
        candidates.append(
            (
                f"AsyncLimiter(1, 1/{args.rps:g}) (the connector's until RatePacer)",
                lambda: AsyncLimiter(1, 1 / args.rps).acquire,
            )
        )
    for name, make in candidates:
        rate, most = asyncio.run(measure(make(), args.count, args.workers, args.busy_ms / 1000))
        print(
            f"{name}: {rate:.1f}/s ({rate / args.rps:.1%} of {args.rps:g}), "
            f"max {most} in any 1 s window"
        )


if __name__ == "__main__":
    main()
