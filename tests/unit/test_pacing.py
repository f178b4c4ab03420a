"""RatePacer on a simulated clock: never over the rate in any one-second window, close to it on
average however late the event loop wakes, and evenly spaced rather than in bursts."""

import asyncio
import heapq
import itertools
import random
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from routera_archive.http.pacing import SLOT_SHARE, WINDOW_S, RatePacer

T = TypeVar("T")


class SimulatedLoop:
    """Virtual time for coroutines: sleeping moves no real clock, and each sleeper wakes at its
    due time plus up to `lateness` (a loop busy with other work), earliest first.

    `run` drives the simulation: whenever every coroutine is asleep, time jumps to the earliest
    wake-up and that sleeper resumes.
    """

    def __init__(self, lateness: float = 0.0, seed: int = 0) -> None:
        self.now = 0.0
        self._random = random.Random(seed)
        self._lateness = lateness
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake = self.now + max(0.0, seconds) + self._random.uniform(0, self._lateness)
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (wake, next(self._order), woken))
        await woken

    async def run(self, work: Awaitable[T]) -> T:
        task = asyncio.ensure_future(work)
        while not task.done():
            for _ in range(5):  # let every coroutine that can run reach its next sleep
                await asyncio.sleep(0)
            if self._sleepers and not task.done():
                wake, _, woken = heapq.heappop(self._sleepers)
                self.now = max(self.now, wake)
                woken.set_result(None)
        return task.result()


def most_in_any_window(starts: list[float], window: float = 1.0) -> int:
    starts = sorted(starts)
    low = most = 0
    for high, moment in enumerate(starts):
        while starts[low] <= moment - window + 1e-9:  # a start a full window back is out
            low += 1
        most = max(most, high - low + 1)
    return most


async def run_workers(
    pacer: RatePacer, loop: SimulatedLoop, count: int, workers: int, stall_at: int | None = None
) -> list[float]:
    starts: list[float] = []
    remaining = iter(range(count))

    async def worker() -> None:
        for number in remaining:
            if number == stall_at:
                loop.now += 0.5  # half a second with the loop held (a long load, say)
            await pacer.wait()
            starts.append(loop.now)

    await loop.run(asyncio.gather(*(worker() for _ in range(workers))))
    return starts


@pytest.mark.parametrize("lateness", [0.0, 0.002, 0.02])
def test_never_over_the_rate_and_close_to_it_however_late_the_loop_wakes(lateness: float) -> None:
    loop = SimulatedLoop(lateness)
    pacer = RatePacer(100, clock=loop.clock, sleep=loop.sleep)

    starts = asyncio.run(run_workers(pacer, loop, 1000, workers=32))

    assert most_in_any_window(starts, window=WINDOW_S) <= 100
    achieved = (len(starts) - 1) / (max(starts) - min(starts))
    # The grid's rate, or the window's where that binds first: 95% of the rate.
    assert achieved >= 0.99 * min(100 * SLOT_SHARE, 100 / WINDOW_S), f"{achieved:.1f}/s of 100"


def test_a_stalled_loop_catches_up_without_a_burst_over_the_rate() -> None:
    loop = SimulatedLoop(0.001)
    pacer = RatePacer(100, clock=loop.clock, sleep=loop.sleep)

    starts = asyncio.run(run_workers(pacer, loop, 600, workers=32, stall_at=250))

    assert most_in_any_window(starts, window=WINDOW_S) <= 100
    # The slots missed during the stall are made up for, up to the window rule.
    assert (len(starts) - 1) / (max(starts) - min(starts)) >= 90


def test_requests_are_spaced_not_sent_in_bursts() -> None:
    loop = SimulatedLoop()
    pacer = RatePacer(50, clock=loop.clock, sleep=loop.sleep)

    starts = sorted(asyncio.run(run_workers(pacer, loop, 100, workers=16)))

    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) == pytest.approx(1 / (50 * SLOT_SHARE))


def test_a_rate_under_one_per_second_still_lets_requests_through() -> None:
    loop = SimulatedLoop()
    pacer = RatePacer(0.5, clock=loop.clock, sleep=loop.sleep)

    starts = asyncio.run(run_workers(pacer, loop, 5, workers=2))

    assert len(starts) == 5
    assert most_in_any_window(starts, window=2.0) == 1


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
def test_a_rate_that_is_not_a_positive_number_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="positive number"):
        RatePacer(rate)


@pytest.mark.parametrize("rate", [0.5, 1.5, 2.5])
def test_rates_that_are_not_whole_numbers_are_neither_cut_down_nor_exceeded(rate: float) -> None:
    """Late wake-ups included: the spacing a rate under one implies is kept, and a rate like
    1.5/s is held, not floored to one a second."""
    loop = SimulatedLoop(lateness=0.3 / rate)
    pacer = RatePacer(rate, clock=loop.clock, sleep=loop.sleep)

    starts = sorted(asyncio.run(run_workers(pacer, loop, 40, workers=4)))

    achieved = (len(starts) - 1) / (starts[-1] - starts[0])
    assert achieved >= 0.85 * rate, f"{achieved:.2f}/s of {rate}"
    assert achieved <= rate
    whole = max(1, int(rate))
    span = WINDOW_S * whole / rate  # the window that holds `whole` starts at most
    assert most_in_any_window(starts, window=span) <= whole
