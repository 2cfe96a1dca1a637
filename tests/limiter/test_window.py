"""The in-process limiter and the aiolimiter adapter, on a virtual clock: nothing really sleeps."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Literal

import pytest
from aiolimiter import AsyncLimiter
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests._clock import VirtualClock, run_virtual
from upbit_cancel import BlockedError, Feedback, Lease, Limiter, RemainingReq, SlidingWindowLimiter
from upbit_cancel._limiter.bucket import TokenBucketLimiter
from upbit_cancel._limiter.hold import hold_until

EPSILON = 1e-9
OK = Feedback(200)


def most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of ``times`` inside any half-open interval of length ``window``."""
    times = sorted(times)
    most, start = 0, 0
    for end, time in enumerate(times):
        while times[start] <= time - window:
            start += 1
        most = max(most, end - start + 1)
    return most


async def take(limiter: Limiter, feedback: Feedback = OK) -> float:
    """A request answered the moment it is granted; returns the grant time."""
    lease = await limiter.acquire()
    with lease:
        lease.sending()
        lease.answered(feedback)
    return lease.granted_at


def test_both_limiters_implement_the_contract() -> None:
    """The in-process limiter and the aiolimiter adapter are Limiters."""
    assert isinstance(SlidingWindowLimiter(), Limiter)
    assert isinstance(TokenBucketLimiter(AsyncLimiter(30, 1)), Limiter)
    assert SlidingWindowLimiter(7, 1.0).capacity == 7


def test_idle_limiter_grants_the_whole_budget_at_once() -> None:
    """An idle limiter lets `limit` requests out at the same instant."""

    async def main(clock: VirtualClock) -> list[float]:
        limiter = SlidingWindowLimiter(30, 1.0)
        leases = await asyncio.gather(*(limiter.acquire() for _ in range(30)))
        return [lease.granted_at for lease in leases]

    assert run_virtual(main) == [1000.0] * 30


def test_next_request_waits_for_a_whole_window_plus_margin() -> None:
    """The 31st request goes once the first was answered window + margin ago."""

    async def main(clock: VirtualClock) -> list[float]:
        limiter = SlidingWindowLimiter(30, 1.0, margin=0.04)
        return list(await asyncio.gather(*(take(limiter) for _ in range(61))))

    grants = run_virtual(main)
    assert grants[:30] == [1000.0] * 30
    assert grants[30:60] == pytest.approx([1001.04] * 30)
    assert grants[60] == pytest.approx(1002.08)


def test_a_slow_request_holds_its_slot_until_a_window_after_its_answer() -> None:
    """However long a request takes, its slot frees a window after its answer arrived."""

    async def main(clock: VirtualClock) -> list[float]:
        limiter = SlidingWindowLimiter(2, 1.0, margin=0.0)
        slow = await limiter.acquire()
        slow.sending()
        fast = await take(limiter)

        async def answer_late() -> None:
            await asyncio.sleep(3.0)  # connecting, then a slow answer
            slow.answered(OK)
            slow.release()

        answering = asyncio.create_task(answer_late())
        # The fast request's slot serves one request per second; the slow one's stays taken.
        third = await take(limiter)
        fourth = await take(limiter)
        fifth, sixth = await asyncio.gather(take(limiter), take(limiter))
        await answering
        return [slow.granted_at, fast, third, fourth, fifth, sixth]

    # The slow answer arrives at 1003.0: from 1004.0 both slots serve again.
    assert run_virtual(main) == pytest.approx([1000.0, 1000.0, 1001.0, 1002.0, 1003.0, 1004.0])


def test_an_abandoned_request_holds_its_slot_until_it_can_no_longer_arrive() -> None:
    """Sent, then given up on: the slot frees a window after max_transit past the lease's end."""

    async def main(clock: VirtualClock) -> float:
        limiter = SlidingWindowLimiter(1, 1.0, margin=0.0, max_transit=2.5)
        lease = await limiter.acquire()
        with lease:
            lease.sending()
            await asyncio.sleep(0.5)  # then a timeout, or the task is cancelled
        assert lease.outcome == "abandoned"
        return await take(limiter)

    assert run_virtual(main) == pytest.approx(1000.5 + 2.5 + 1.0)


def test_a_request_that_never_left_frees_its_slot_at_once() -> None:
    """No connection could be made: nothing can arrive, the next request goes at once."""

    async def main(clock: VirtualClock) -> float:
        limiter = SlidingWindowLimiter(1, 1.0)
        lease = await limiter.acquire()
        with lease:
            lease.sending()
            await asyncio.sleep(0.2)
            lease.unsent()
        assert lease.outcome == "not_sent"
        return await take(limiter)

    assert run_virtual(main) == pytest.approx(1000.2)


def test_a_bare_aiolimiter_lets_59_through_in_one_second_and_this_one_30() -> None:
    """Why this limiter exists: a leaky bucket of 30/s admits 59 in one second."""

    async def count_in_first_second(limiter: Limiter, clock: VirtualClock) -> int:
        start = clock.now
        grants = await asyncio.gather(*(take(limiter) for _ in range(120)))
        return sum(1 for time in grants if time < start + 1.0)

    async def main(clock: VirtualClock) -> tuple[int, int]:
        bucket = await count_in_first_second(TokenBucketLimiter(AsyncLimiter(30, 1.0)), clock)
        ours = await count_in_first_second(SlidingWindowLimiter(30, 1.0), clock)
        return bucket, ours

    assert run_virtual(main) == (59, 30)


Ending = Literal["answered", "abandoned", "not_sent"]


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=8),
    window=st.sampled_from([0.5, 1.0, 2.0]),
    margin=st.sampled_from([0.0, 0.01]),
    max_transit=st.sampled_from([0.0, 0.3, 1.0]),
    requests=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=0.7),  # gap before the request asks
            st.floats(min_value=0.0, max_value=0.3),  # from grant to departure
            st.floats(min_value=0.0, max_value=1.0),  # share of max_transit until arrival
            st.floats(min_value=0.0, max_value=1.5),  # from departure to the lease's end
            st.sampled_from(["answered", "abandoned", "not_sent"]),
        ),
        min_size=1,
        max_size=60,
    ),
)
def test_never_more_than_limit_at_the_exchange_and_never_later_than_needed(
    limit: int,
    window: float,
    margin: float,
    max_transit: float,
    requests: list[tuple[float, float, float, float, Ending]],
) -> None:
    """Holding until the answer, for any pattern of outcomes: at most `limit` arrive per window;
    grants are FIFO, no idling.

    An answered request arrives between its departure and its answer; an abandoned one up to
    max_transit after its departure, even after the lease ended; one never sent never arrives.
    Each grant happens exactly when the earliest constraint allows it: its asking, the previous
    grant (first come, first served), and a slot freeing when the limit-th latest hold among
    the earlier leases ends.
    """

    async def main(clock: VirtualClock) -> tuple[list[float], list[Lease], list[int]]:
        limiter = SlidingWindowLimiter(
            limit, window, margin=margin, max_transit=max_transit, hold="answer"
        )
        asked: list[float] = []
        leases: list[Lease] = []
        order: list[int] = []

        async def one(index: int, departure: float, duration: float, ending: Ending) -> None:
            asked.append(clock.now)
            lease = await limiter.acquire()
            leases.append(lease)
            order.append(index)
            with lease:
                await asyncio.sleep(departure)
                if ending != "not_sent":
                    lease.sending()
                await asyncio.sleep(duration)
                if ending == "answered":
                    lease.answered(OK)

        tasks = []
        for index, (gap, departure, _, duration, ending) in enumerate(requests):
            await asyncio.sleep(gap)
            tasks.append(asyncio.create_task(one(index, departure, duration, ending)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return asked, leases, order

    asked, leases, order = run_virtual(main)
    assert order == sorted(order)
    arrivals = []
    for lease, (_, _, where, _, ending) in zip(leases, requests, strict=True):
        assert lease.released_at is not None
        if ending == "answered":
            assert lease.sent_at is not None
            assert lease.answered_at is not None
            arrivals.append(lease.sent_at + where * (lease.answered_at - lease.sent_at))
        elif ending == "abandoned":
            assert lease.sent_at is not None
            # It left no later than the lease's end, and travels up to max_transit.
            assert lease.released_at is not None
            arrivals.append(lease.released_at + where * max_transit)
    assert most_in_any_window(arrivals, window - EPSILON) <= limit
    holds = [
        hold_until(
            sent_at=lease.sent_at,
            answered_at=lease.answered_at,
            released_at=lease.released_at or 0.0,
            window=window,
            margin=margin,
            max_transit=max_transit,
        )
        for lease in leases
    ]
    for index, lease in enumerate(leases):
        earliest = asked[index]
        if index >= 1:
            earliest = max(earliest, leases[index - 1].granted_at)
        if index >= limit:
            earliest = max(earliest, sorted(holds[:index])[-limit])
        assert lease.granted_at == pytest.approx(earliest, abs=1e-6)


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
    """A task cancelled right after being granted gives back the slot it never used."""

    async def main(clock: VirtualClock) -> None:
        limiter = SlidingWindowLimiter(1, 1.0, margin=0.0)
        first = await take(limiter)
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        # The waiter is granted one window later, at 1001.0, and cancelled in the same loop
        # iteration, before it resumes: this timer is due then and runs after the limiter's.
        asyncio.get_running_loop().call_at(first + 1.0, waiter.cancel)
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert limiter.in_flight == 0
        assert await take(limiter) == pytest.approx(first + 1.0)

    run_virtual(main)


def test_pause_holds_every_grant_and_is_never_shortened() -> None:
    """A pause delays even an idle limiter; a shorter pause later does not cut it short."""

    async def main(clock: VirtualClock) -> float:
        limiter = SlidingWindowLimiter(30, 1.0)
        limiter.pause(clock.now + 2.0)
        limiter.pause(clock.now + 0.5)
        return await take(limiter)

    assert run_virtual(main) == pytest.approx(1002.0)


def test_remaining_zero_pauses_for_a_window_from_the_request() -> None:
    """`Remaining-Req: sec=0` holds grants until one window after that request's grant."""

    async def main(clock: VirtualClock) -> tuple[float, float]:
        limiter = SlidingWindowLimiter(30, 1.0, margin=0.04)
        granted = await take(limiter, Feedback(200, RemainingReq(group="default", sec=5)))
        assert await take(limiter) == granted
        lease = await limiter.acquire()
        with lease:
            lease.sending()
            await asyncio.sleep(0.1)
            lease.answered(Feedback(200, RemainingReq(group="default", sec=0)))
        return lease.granted_at, await take(limiter)

    granted, after = run_virtual(main)
    assert after == pytest.approx(granted + 1.04)


def test_a_429_pauses_the_account_and_halves_its_share() -> None:
    """A 429 answer pauses every grant about a window and halves the window's share."""

    async def main(clock: VirtualClock) -> None:
        limiter = SlidingWindowLimiter(30, 1.0, margin=0.0, rng=random.Random(1))
        await take(limiter, Feedback(429))
        assert limiter.share() == 15
        assert 1001.0 <= limiter.paused_until <= 1001.25
        resumed = await take(limiter)
        assert resumed == pytest.approx(limiter.paused_until)

    run_virtual(main)


def test_a_418_answer_blocks_waiters_new_requests_and_requests_about_to_leave() -> None:
    """During a block every acquisition raises BlockedError, even a granted request's send."""

    async def main(clock: VirtualClock) -> None:
        limiter = SlidingWindowLimiter(1, 1.0, margin=0.0)
        granted = await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        other = SlidingWindowLimiter(2, 1.0)
        await asyncio.sleep(0)
        blocked = Feedback(418, block_seconds=30.0, block_reason="HTTP 418: blocked for 30 s")
        with granted:
            granted.sending()
            granted.answered(blocked)
        with pytest.raises(BlockedError) as waiting:
            await waiter
        assert waiting.value.retry_after == pytest.approx(30.0)
        await asyncio.sleep(10.0)
        with pytest.raises(BlockedError) as fresh:
            await limiter.acquire()
        assert fresh.value.retry_after == pytest.approx(20.0)
        assert "418" in str(fresh.value)
        # A lease granted before a block must not send once it is on.
        lease = await other.acquire()
        other.block(5.0, "HTTP 418")
        with lease, pytest.raises(BlockedError, match="not sent"):
            lease.sending()
        assert lease.outcome == "not_sent"
        await asyncio.sleep(20.0)
        assert await take(limiter) == pytest.approx(1030.0)

    run_virtual(main)


def test_the_aiolimiter_adapter_heeds_feedback() -> None:
    """An AsyncLimiter given as limiter= still pauses after a 429 and stops during a 418."""

    async def main(clock: VirtualClock) -> None:
        limiter = TokenBucketLimiter(AsyncLimiter(30, 1.0), rng=random.Random(1))
        assert limiter.capacity == 30
        assert limiter.idle
        await take(limiter, Feedback(429))
        resumed = await take(limiter)
        assert resumed >= 1001.0
        await take(limiter, Feedback(418, block_seconds=5.0))
        with pytest.raises(BlockedError):
            await limiter.acquire()

    run_virtual(main)


def test_a_lease_is_released_once_and_refuses_use_afterwards() -> None:
    """Releasing twice does nothing; a released lease cannot be used for another request."""

    async def main(clock: VirtualClock) -> None:
        limiter = SlidingWindowLimiter(1, 1.0)
        lease = await limiter.acquire()
        lease.release()
        lease.release()
        assert limiter.in_flight == 0
        with pytest.raises(RuntimeError, match="released"):
            lease.sending()

    run_virtual(main)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"limit": 0}, ValueError, "limit"),
        ({"limit": 2.5}, TypeError, "limit"),
        ({"window": 0.0}, ValueError, "window"),
        ({"window": float("nan")}, ValueError, "window"),
        ({"window": "1"}, TypeError, "window"),
        ({"margin": -0.1}, ValueError, "margin"),
        ({"max_transit": float("inf")}, ValueError, "max_transit"),
    ],
)
def test_rejects_nonsense_settings(
    arguments: dict[str, object], error: type[Exception], message: str
) -> None:
    """Settings that cannot describe a budget are refused with a message naming them."""
    with pytest.raises(error, match=message):
        SlidingWindowLimiter(**arguments)  # type: ignore[arg-type]


#: Extra delays, often at their extremes, where arrivals bunch up.
EXTRA = st.one_of(st.sampled_from([0.0, 0.3]), st.floats(min_value=0.0, max_value=0.3))


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=6),
    window=st.sampled_from([0.5, 1.0]),
    margin=st.sampled_from([0.0, 0.01]),
    # The path: the least delay to the exchange, and the least from arrival to answer.
    least_in=st.floats(min_value=0.0, max_value=0.3),
    least_back=st.floats(min_value=0.0, max_value=0.3),
    warm=st.booleans(),
    requests=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=0.4),  # gap before the request asks
            st.floats(min_value=0.0, max_value=0.1),  # from grant to departure
            EXTRA,  # delay to the exchange above the least
            EXTRA,  # delay back above the least
            st.sampled_from(["answered", "answered", "abandoned", "not_sent"]),
        ),
        min_size=1,
        max_size=50,
    ),
)
def test_holding_until_the_latest_arrival_never_crowds_a_window(
    limit: int,
    window: float,
    margin: float,
    least_in: float,
    least_back: float,
    warm: bool,
    requests: list[tuple[float, float, float, float, Ending]],
) -> None:
    """Whatever the delays, as long as none beats the path's least ones and the floor they make
    is seen: at most `limit` per window.

    The floor is ``least_in + least_back``; the limiter learns it from the least round trip of
    the last few windows, so a round trip taking both least delays must be among them (the
    assumption the limiter documents: without it, a way there that is fast in one request and a
    way back fast in another, never both at once, add up to less than any round trip seen).
    Every other request takes the least delays, and an example where such a round trip is still
    missing from the limiter's horizon when a hold is set is discarded. With `warm`, eight
    requests first take exactly the least delays; without, the limiter starts from nothing and
    must fall back on the answers. Abandoned requests arrive up to max_transit after their lease
    ended.
    """
    max_transit = least_in + 0.2
    floor = least_in + least_back
    horizon = max(5.0, 5 * window)  # as SlidingWindowLimiter's path observer keeps them

    # (answered at, round trip) of every answered request.
    trips: list[tuple[float, float]] = []

    async def main(clock: VirtualClock) -> list[float]:
        limiter = SlidingWindowLimiter(limit, window, margin=margin, max_transit=max_transit)
        arrivals: list[float] = []

        async def one(departure: float, extra_in: float, extra_back: float, end: Ending) -> None:
            lease = await limiter.acquire()
            with lease:
                await asyncio.sleep(departure)
                if end == "not_sent":
                    return
                lease.sending()
                delay_in = least_in + extra_in
                if end == "abandoned":
                    # Given up on before it arrives; it arrives all the same, in time.
                    giving_up = delay_in * extra_back / 0.3
                    await asyncio.sleep(giving_up)
                    arrival = clock.now + min(delay_in - giving_up, max_transit)
                    arrivals.append(arrival)
                    return
                sent = clock.now
                await asyncio.sleep(delay_in)
                arrivals.append(clock.now)
                await asyncio.sleep(least_back + extra_back)
                lease.answered(OK)
                trips.append((clock.now, clock.now - sent))

        if warm:
            for _ in range(8):
                await one(0.0, 0.0, 0.0, "answered")
        tasks = []
        for index, (gap, departure, extra_in, extra_back, end) in enumerate(requests):
            if index % 2 == 0:
                extra_in, extra_back, end = 0.0, 0.0, "answered"
            await asyncio.sleep(gap)
            tasks.append(asyncio.create_task(one(departure, extra_in, extra_back, end)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return arrivals

    arrivals = run_virtual(main)
    # Each hold is set when its request is answered: the floor must be in view then.
    assume(
        all(
            any(
                answered - horizon <= seen <= answered and trip <= floor + EPSILON
                for seen, trip in trips
            )
            for answered, _ in trips
        )
    )
    assert most_in_any_window(arrivals, window - EPSILON) <= limit


def test_a_known_path_shortens_the_hold_by_its_floor() -> None:
    """Until eight round trips are seen over a window, a slot frees a window after the answer;
    then a round trip earlier."""

    async def main(clock: VirtualClock) -> list[float]:
        limiter = SlidingWindowLimiter(1, 0.3, margin=0.0)
        grants = []
        for _ in range(10):
            lease = await limiter.acquire()
            grants.append(lease.granted_at)
            with lease:
                lease.sending()
                await asyncio.sleep(0.3)  # 0.15 each way: the same round trip every time
                lease.answered(OK)
        return [later - earlier for earlier, later in itertools.pairwise(grants)]

    cycles = run_virtual(main)
    # From the answers: a round trip plus a window, until the eighth answer is in.
    assert cycles[:7] == pytest.approx([0.6] * 7)
    # From then on the floor (0.3) comes off: one window per cycle.
    assert cycles[7:] == pytest.approx([0.3] * 2)


def test_a_429_makes_the_limiter_forget_the_path() -> None:
    """After a 429 the estimate is dropped: slots are held from the answers again."""

    async def main(clock: VirtualClock) -> float:
        limiter = SlidingWindowLimiter(1, 0.3, margin=0.0, rng=random.Random(0))
        for _ in range(8):
            lease = await limiter.acquire()
            with lease:
                lease.sending()
                await asyncio.sleep(0.3)
                lease.answered(OK)
        lease = await limiter.acquire()
        with lease:
            lease.sending()
            await asyncio.sleep(0.3)
            lease.answered(Feedback(429))
        answered = clock.now
        after = await limiter.acquire()
        after.release()
        return after.granted_at - answered

    # A window after the answer (the 429's pause is about as long, with jitter).
    assert run_virtual(main) >= 0.3
