"""The sliding-window limiter, on a virtual clock: no test here really sleeps."""

from __future__ import annotations

import asyncio

import pytest
from aiolimiter import AsyncLimiter
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._clock import VirtualClock, run_virtual
from upbit_cancel import BlockedError, RemainingReq, SlidingWindowLimiter

EPSILON = 1e-9


def most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of ``times`` inside any half-open interval of length ``window``."""
    times = sorted(times)
    most, start = 0, 0
    for end, time in enumerate(times):
        while times[start] <= time - window:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_idle_limiter_grants_the_whole_budget_at_once() -> None:
    """An idle limiter lets `max_rate` requests out at the same instant."""

    async def main(clock: VirtualClock) -> list[float]:
        limiter = SlidingWindowLimiter(30, 1.0)
        return list(await asyncio.gather(*(limiter.grant() for _ in range(30))))

    grants = run_virtual(main)
    assert grants == [1000.0] * 30


async def take(limiter: SlidingWindowLimiter) -> float:
    """A grant whose request ends at once (what ``acquire()`` does), returning its time."""
    granted = await limiter.grant()
    limiter.release()
    return granted


def test_next_request_waits_for_a_whole_window_plus_margin() -> None:
    """The 31st request goes once the first ended time_period + margin ago."""

    async def main(clock: VirtualClock) -> list[float]:
        limiter = SlidingWindowLimiter(30, 1.0, margin=0.04)
        return list(await asyncio.gather(*(take(limiter) for _ in range(61))))

    grants = run_virtual(main)
    assert grants[:30] == [1000.0] * 30
    assert grants[30:60] == pytest.approx([1001.04] * 30)
    assert grants[60] == pytest.approx(1002.08)


def test_a_slow_request_holds_its_slot_until_a_window_after_it_ended() -> None:
    """However long a request takes to reach the exchange, its slot frees a window after it."""

    async def main(clock: VirtualClock) -> list[float]:
        limiter = SlidingWindowLimiter(2, 1.0, margin=0.0)
        slow = await limiter.grant()
        fast = await take(limiter)

        async def slow_request() -> None:
            await asyncio.sleep(3.0)  # connecting, then a slow answer
            limiter.release()

        releasing = asyncio.create_task(slow_request())
        # The fast request's slot serves one request per second; the slow one's stays taken.
        third = await take(limiter)
        fourth = await take(limiter)
        fifth, sixth = await asyncio.gather(take(limiter), take(limiter))
        await releasing
        return [slow, fast, third, fourth, fifth, sixth]

    # The slow request ends at 1003.0: from 1004.0 both slots serve again.
    assert run_virtual(main) == pytest.approx([1000.0, 1000.0, 1001.0, 1002.0, 1003.0, 1004.0])


def test_a_bare_aiolimiter_lets_59_through_in_one_second_and_this_one_30() -> None:
    """The reason this limiter exists: a leaky bucket of 30/s admits 59 in one second."""

    async def count_in_first_second(limiter: AsyncLimiter, clock: VirtualClock) -> int:
        start = clock.now
        times: list[float] = []

        async def one() -> None:
            await limiter.acquire()
            times.append(clock.now)

        await asyncio.gather(*(one() for _ in range(120)))
        return sum(1 for time in times if time < start + 1.0)

    async def main(clock: VirtualClock) -> tuple[int, int]:
        bare = await count_in_first_second(AsyncLimiter(30, 1.0), clock)
        ours = await count_in_first_second(SlidingWindowLimiter(30, 1.0), clock)
        return bare, ours

    bare, ours = run_virtual(main)
    assert bare == 59
    assert ours == 30


@settings(max_examples=200, deadline=None)
@given(
    max_rate=st.integers(min_value=1, max_value=8),
    time_period=st.sampled_from([0.5, 1.0, 2.0]),
    margin=st.sampled_from([0.0, 0.01]),
    requests=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=0.7),  # gap before the request asks
            st.floats(min_value=0.0, max_value=1.5),  # how long until it ends
            st.floats(min_value=0.0, max_value=1.0),  # where in between the exchange counts it
        ),
        min_size=1,
        max_size=60,
    ),
)
def test_never_more_than_max_rate_in_any_window_and_never_later_than_needed(
    max_rate: int, time_period: float, margin: float, requests: list[tuple[float, float, float]]
) -> None:
    """For any pattern: at most max_rate counted per window, first come first served, no idling.

    Each request is counted by the exchange anywhere between its grant and its end. Each grant
    happens exactly when the earliest of these allows it: its arrival, the previous grant (first
    come, first served), and a slot freeing one window after the max_rate-th latest end among
    the earlier requests.
    """

    async def main(clock: VirtualClock) -> tuple[list[float], list[float], list[int]]:
        limiter = SlidingWindowLimiter(max_rate, time_period, margin=margin)
        arrivals: list[float] = []
        grants: list[float] = []
        order: list[int] = []

        async def one(index: int, hold: float) -> None:
            arrivals.append(clock.now)
            grants.append(await limiter.grant())
            order.append(index)
            await asyncio.sleep(hold)
            limiter.release()

        tasks = []
        for index, (gap, hold, _) in enumerate(requests):
            await asyncio.sleep(gap)
            tasks.append(asyncio.create_task(one(index, hold)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return arrivals, grants, order

    arrivals, grants, order = run_virtual(main)
    assert order == sorted(order)
    ends = [grant + hold for grant, (_, hold, _) in zip(grants, requests, strict=True)]
    counted = [
        grant + where * hold for grant, (_, hold, where) in zip(grants, requests, strict=True)
    ]
    for times in (grants, ends, counted):
        assert most_in_any_window(times, time_period - EPSILON) <= max_rate
    window = time_period + margin
    for index, granted in enumerate(grants):
        earliest = arrivals[index]
        if index >= 1:
            earliest = max(earliest, grants[index - 1])
        if index >= max_rate:
            earliest = max(earliest, sorted(ends[:index])[-max_rate] + window)
        assert granted == pytest.approx(earliest, abs=1e-6)


def test_a_cancelled_waiter_takes_no_grant_and_keeps_the_order() -> None:
    """Cancelling a waiting task frees its place; the others keep their turn."""

    async def main(clock: VirtualClock) -> list[int]:
        limiter = SlidingWindowLimiter(1, 1.0, margin=0.0)
        await take(limiter)
        served: list[int] = []

        async def one(index: int) -> None:
            await take(limiter)
            served.append(index)

        tasks = [asyncio.create_task(one(index)) for index in range(4)]
        await asyncio.sleep(0)
        tasks[1].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert clock.now == pytest.approx(1003.0)
        assert limiter.in_flight == 0
        return served

    assert run_virtual(main) == [0, 2, 3]


def test_a_grant_cancelled_before_use_frees_its_slot() -> None:
    """A task cancelled right after being granted releases the slot it never used."""

    async def main(clock: VirtualClock) -> None:
        limiter = SlidingWindowLimiter(1, 1.0, margin=0.0)
        first = await limiter.grant()
        waiter = asyncio.create_task(limiter.grant())
        await asyncio.sleep(0)
        limiter.release()  # the waiter is granted one window later, at 1001.0 ...
        # ... and cancelled in the same loop iteration, before it resumes: this timer is due at
        # the same time and runs after the limiter's.
        asyncio.get_running_loop().call_at(first + 1.0, waiter.cancel)
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert limiter.in_flight == 0
        assert await take(limiter) == pytest.approx(first + 2.0)

    run_virtual(main)


def test_pause_holds_every_grant_and_is_never_shortened() -> None:
    """A pause delays even an idle limiter; a shorter pause later does not cut it short."""

    async def main(clock: VirtualClock) -> float:
        limiter = SlidingWindowLimiter(30, 1.0)
        limiter.pause(clock.now + 2.0)
        limiter.pause(clock.now + 0.5)
        assert not limiter.has_capacity()
        return await limiter.grant()

    assert run_virtual(main) == pytest.approx(1002.0)


def test_remaining_zero_pauses_for_a_window_from_the_request() -> None:
    """`Remaining-Req: sec=0` holds grants until one window after that request's grant."""

    async def main(clock: VirtualClock) -> tuple[float, float]:
        limiter = SlidingWindowLimiter(30, 1.0, margin=0.04)
        granted = await limiter.grant()
        limiter.observe_remaining(RemainingReq(group="default", sec=5), granted)
        assert limiter.has_capacity()
        await asyncio.sleep(0.1)
        limiter.observe_remaining(RemainingReq(group="default", sec=0), granted)
        return granted, await limiter.grant()

    granted, after = run_virtual(main)
    assert after == pytest.approx(granted + 1.04)


def test_429_backoff_doubles_only_for_requests_sent_after_the_pause() -> None:
    """Concurrent 429s from one full window count once; a 429 after resuming doubles the pause.

    Only an answer to a request granted after the last 429 resets the backoff.
    """

    async def main(clock: VirtualClock) -> list[float]:
        limiter = SlidingWindowLimiter(30, 1.0, margin=0.0)
        first = await take(limiter)
        second = await take(limiter)
        pauses = [limiter.rate_limited(first), limiter.rate_limited(second)]
        limiter.succeeded(second)  # an answer to a request sent before the 429: no reset
        resumed = await take(limiter)
        pauses.append(limiter.rate_limited(resumed))
        fresh = await take(limiter)
        limiter.succeeded(fresh)
        again = await take(limiter)
        pauses.append(limiter.rate_limited(again))
        return pauses

    pauses = run_virtual(main)
    assert 1.0 <= pauses[0] <= 1.25
    assert 1.0 <= pauses[1] <= 1.25
    assert 2.0 <= pauses[2] <= 2.5
    assert 1.0 <= pauses[3] <= 1.25


def test_429_backoff_is_capped() -> None:
    """However many 429s in a row, one pause lasts at most 8 windows plus jitter."""

    async def main(clock: VirtualClock) -> list[float]:
        limiter = SlidingWindowLimiter(30, 1.0, margin=0.0)
        pauses = []
        for _ in range(8):
            pauses.append(limiter.rate_limited(await take(limiter)))
        return pauses

    pauses = run_virtual(main)
    assert max(pauses) <= 8 * 1.25
    assert pauses[-1] >= 8.0


def test_a_429_halves_the_share_of_the_window_until_it_grows_back() -> None:
    """Someone else spends the budget: after a 429 only half a window goes out, then more."""

    async def main(clock: VirtualClock) -> None:
        limiter = SlidingWindowLimiter(30, 1.0, margin=0.0)
        first = await take(limiter)
        limiter.rate_limited(first)
        limiter.rate_limited(first)  # the same full window refused several requests: one incident
        assert limiter.share() == 15
        # The share grows back by 3 (a tenth of 30) per window since the 429.
        await asyncio.sleep(1.5)
        assert limiter.share() == 18
        grants = await asyncio.gather(*(take(limiter) for _ in range(19)))
        assert grants[:18] == [1001.5] * 18
        assert grants[18] >= 1002.5
        await asyncio.sleep(10.0)
        assert limiter.share() == 30

    run_virtual(main)


def test_block_fails_waiters_and_new_requests_until_it_ends() -> None:
    """During a block every acquisition raises BlockedError; afterwards grants resume."""

    async def main(clock: VirtualClock) -> None:
        limiter = SlidingWindowLimiter(1, 1.0, margin=0.0)
        await limiter.grant()
        waiter = asyncio.create_task(limiter.grant())
        await asyncio.sleep(0)
        limiter.block(30.0, "HTTP 418: blocked for 30 seconds")
        limiter.release()
        with pytest.raises(BlockedError) as waiting:
            await waiter
        assert waiting.value.retry_after == pytest.approx(30.0)
        await asyncio.sleep(10.0)
        with pytest.raises(BlockedError) as fresh:
            await limiter.grant()
        assert fresh.value.retry_after == pytest.approx(20.0)
        assert "418" in str(fresh.value)
        await asyncio.sleep(20.0)
        assert await limiter.grant() == pytest.approx(1030.0)

    run_virtual(main)


def test_is_an_aiolimiter_drop_in() -> None:
    """`async with limiter` and `acquire()` work as with aiolimiter, one grant each."""

    async def main(clock: VirtualClock) -> float:
        limiter = SlidingWindowLimiter(2, 1.0, margin=0.0)
        assert isinstance(limiter, AsyncLimiter)
        async with limiter:
            pass
        await limiter.acquire()
        with pytest.raises(ValueError, match="one request at a time"):
            await limiter.acquire(2)
        async with limiter:
            return clock.now

    assert run_virtual(main) == pytest.approx(1001.0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"max_rate": 0}, "max_rate"),
        ({"max_rate": 2.5}, "max_rate"),
        ({"time_period": 0.0}, "time_period"),
        ({"margin": -0.1}, "margin"),
    ],
)
def test_rejects_nonsense_settings(arguments: dict[str, float], message: str) -> None:
    """Settings that cannot describe a rate are refused with a message naming them."""
    settings_ = {"max_rate": 30, "time_period": 1.0, "margin": 0.04} | arguments
    with pytest.raises(ValueError, match=message):
        SlidingWindowLimiter(
            settings_["max_rate"],  # type: ignore[arg-type]
            settings_["time_period"],
            margin=settings_["margin"],
        )
