"""How often a shared budget's limiter visits its store, on a virtual clock: the answers of a
moment go together in one visit, told within a poll; an answer the other processes must follow
is told at once."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest

from tests._clock import VirtualClock, run_virtual
from tests.helpers import until
from upbit_cancel._limiter.contract import Feedback, Lease
from upbit_cancel._limiter.core import Settings
from upbit_cancel._limiter.shared.limiter import SharedLimiter
from upbit_cancel._limiter.shared.rules import Terms, decode
from upbit_cancel._limiter.shared.store import Change, Keep, R, Transacted

#: When the limiter tells its releases at the latest after the first of them.
POLL = Terms(limit=30, unit=1.01, abandoned=3.01).poll


class MemoryStore:
    """A store in this process, on the loop's clock, that notes when each visit came."""

    kind: Literal["host", "redis"] = "host"
    label = "memory"
    fresh_pause = 0.0

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self.texts: dict[str, str] = {}
        self.visits: list[float] = []

    def key(self, account: str, group: str) -> str:
        return f"{account}:{group}"

    async def open(self) -> None:
        return None

    async def transact(self, key: str, change: Change[R]) -> Transacted[R]:
        now = self._clock.time()
        self.visits.append(now)
        text, result = change(self.texts.get(key), now)
        if text is None:
            self.texts.pop(key, None)
        elif not isinstance(text, Keep):
            self.texts[key] = text
        return Transacted(result, sent_at=now, read_at=now)

    async def claim(self, name: str, owner: str, seconds: float) -> str | None:
        return None

    async def aclose(self) -> None:
        return None


class SlowStore(MemoryStore):
    """A store whose every transaction takes 50 ms, as a busy Redis or a locked file may."""

    delay = 0.05

    async def transact(self, key: str, change: Change[R]) -> Transacted[R]:
        await asyncio.sleep(self.delay)
        return await super().transact(key, change)


def limiter_on(store: MemoryStore, limit: int = 30) -> SharedLimiter:
    return SharedLimiter(
        store,
        account="account",
        settings=Settings.checked(limit, 1.0),
        fallback_limit=0,
        heartbeat=False,
    )


async def answered(limiter: SharedLimiter, count: int) -> list[Lease]:
    """``count`` leases granted, sent and answered with a 200, not yet released."""
    leases = await asyncio.gather(*(limiter.acquire() for _ in range(count)))
    for lease in leases:
        lease.sending()
        lease.answered(Feedback(200))
    return leases


def test_the_answers_of_a_moment_are_told_in_one_visit() -> None:
    """Thirty answers that come a millisecond apart take one visit per poll, not thirty; the
    first of them is told no later than a poll after it came."""

    async def main(clock: VirtualClock) -> None:
        store = MemoryStore(clock)
        async with limiter_on(store) as limiter:
            leases = await answered(limiter, 30)
            granted = len(store.visits)
            first = clock.time()
            for lease in leases:
                lease.release()
                await asyncio.sleep(0.001)
            last = clock.time()
            await until(lambda: limiter.idle)
            visits = store.visits[granted:]
            assert len(visits) <= 1 + (last - first) / POLL
            assert visits[0] <= first + POLL
            state = decode(store.texts["account:default"])
            assert state is not None
            assert not state.active  # every slot told as released, none left in flight

    run_virtual(main)


@pytest.mark.parametrize("status", [429, 418])
def test_an_answer_that_slows_the_account_is_told_at_once_with_the_answers_waiting(
    status: int,
) -> None:
    """A 429 or a 418 is told in the next visit, at once, and carries the releases that were
    waiting for their poll."""

    async def main(clock: VirtualClock) -> None:
        store = MemoryStore(clock)
        async with limiter_on(store) as limiter:
            calm, limited, _ = await answered(limiter, 3)  # the third stays in flight
            limited.feedback = Feedback(status, block_seconds=60.0 if status == 418 else None)
            granted = len(store.visits)
            calm.release()
            await asyncio.sleep(0)
            limited.release()
            at = clock.time()
            await until(lambda: len(store.visits) > granted)
            assert store.visits[granted] == at
            state = decode(store.texts["account:default"])
            assert state is not None
            # Every process of the account pauses, or is blocked.
            assert max(state.paused_until, state.blocked_until) > at
            assert len(state.active) == 1  # the 200's slot went with it
            assert len(store.visits) == granted + 1

    run_virtual(main)


def test_the_last_lease_in_flight_is_told_at_once() -> None:
    """With no other answer to wait for, the last one is told at once: a loop that ends right
    after it (a script's ``asyncio.run``) leaves nothing untold, and the limiter is idle."""

    async def main(clock: VirtualClock) -> None:
        store = MemoryStore(clock)
        async with limiter_on(store) as limiter:
            first, last = await answered(limiter, 2)
            granted = len(store.visits)
            first.release()
            last.release()
            at = clock.time()
            await until(lambda: len(store.visits) > granted)
            assert store.visits[granted:] == [at]
            assert limiter.idle

    run_virtual(main)


def test_a_slot_whose_request_never_left_goes_to_a_waiter_at_once() -> None:
    """A lease released unsent frees its slot now: the store hears of it at once, though other
    answers are still awaited, and the request waiting for a slot is granted that moment."""

    async def main(clock: VirtualClock) -> None:
        store = MemoryStore(clock)
        async with limiter_on(store, limit=2) as limiter:
            unused = await limiter.acquire()
            in_flight = await limiter.acquire()
            in_flight.sending()
            waiting = asyncio.ensure_future(limiter.acquire())
            await until(lambda: len(store.visits) >= 3)  # it asked, and was told to wait
            unused.release()
            at = clock.time()
            granted = await waiting
            assert clock.time() == at
            for lease in (in_flight, granted):
                lease.release()

    run_virtual(main)


def test_flush_and_idle_wait_for_the_visit_that_carries_the_releases() -> None:
    """With a slow store, ``flush()`` returns and ``idle`` holds only once the store has the
    releases, not while the visit that carries them is under way."""

    async def main(clock: VirtualClock) -> None:
        store = SlowStore(clock)
        async with limiter_on(store) as limiter:
            first, second, third = await answered(limiter, 3)
            first.release()
            await limiter.flush()
            state = decode(store.texts["account:default"])
            assert state is not None
            assert len(state.active) == 2
            # What flush() forced ends with it: the next answer waits for its poll again.
            visits = len(store.visits)
            second.release()
            at = clock.time()
            await until(lambda: len(store.visits) > visits)
            assert store.visits[visits] == pytest.approx(at + POLL + SlowStore.delay, abs=1e-9)
            third.release()
            await until(lambda: limiter.idle)
            state = decode(store.texts["account:default"])
            assert state is not None
            assert not state.active

    run_virtual(main)
