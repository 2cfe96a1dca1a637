"""How often a shared budget's limiter visits its store, on a virtual clock: the answers of a
moment go together in one visit, told within a poll; an answer the other processes must follow
is told at once."""

from __future__ import annotations

import asyncio
from typing import Literal

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


def limiter_on(store: MemoryStore) -> SharedLimiter:
    return SharedLimiter(
        store,
        account="account",
        settings=Settings.checked(30, 1.0),
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


def test_a_429_is_told_at_once_with_the_answers_waiting() -> None:
    """An answer that slows the account down is told in the next visit, at once, and carries
    the releases that were waiting for their poll."""

    async def main(clock: VirtualClock) -> None:
        store = MemoryStore(clock)
        async with limiter_on(store) as limiter:
            calm, limited = await answered(limiter, 2)
            limited.feedback = Feedback(429)
            granted = len(store.visits)
            calm.release()
            await asyncio.sleep(0)
            limited.release()
            at = clock.time()
            await until(lambda: len(store.visits) > granted)
            assert store.visits[granted] == at
            state = decode(store.texts["account:default"])
            assert state is not None
            assert state.paused_until > at  # every process of the account pauses
            assert not state.active  # the 200's slot went with it
            await until(lambda: limiter.idle)
            assert len(store.visits) == granted + 1

    run_virtual(main)
