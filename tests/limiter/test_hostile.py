"""What a hostile user tries on the budget: no more than the limit reaches the exchange in any
window, abandoned requests included, and one key never gets two budgets.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest
from aiolimiter import AsyncLimiter

from tests.conftest import SessionFor
from upbit_cancel import (
    BatchCanceller,
    SlidingWindowLimiter,
    UpbitError,
)
from upbit_cancel.testing import FakeUpbit, Faults


async def test_abandoned_requests_that_arrive_late_never_crowd_a_window(
    session_for: SessionFor,
) -> None:
    """Requests given up on (read timeout) may still arrive: they keep their slot until then."""
    limit, window = 5, 0.2
    faults = Faults(jitter_in=0.25)
    async with FakeUpbit(limit=limit, window=window, faults=faults, seed=3) as fake:
        uuids = fake.add_orders(40)
        limiter = SlidingWindowLimiter(limit, window, max_transit=0.3)
        async with session_for(fake, limiter=limiter, read_timeout=0.05) as session:

            async def one(uuid: str) -> None:
                with contextlib.suppress(UpbitError):
                    await session.cancel_orders(uuids=[uuid])

            await asyncio.gather(*(one(uuid) for uuid in uuids))
        # Wait until every request the client gave up on has arrived at the exchange.
        await fake.wait_for(lambda fake: fake.in_transit == 0)
        assert len(fake.records) == fake.received
        # Every arrival admitted (no 429), and no window holds more than the limit.
        assert fake.stats()["rejected_429"] == 0
        assert fake.max_in_window() <= limit


async def test_a_cancelled_request_keeps_its_slot_until_it_can_no_longer_arrive(
    session_for: SessionFor,
) -> None:
    """Tasks cancelled while their requests travel slowly: faster ones after them still fit."""
    limit, window = 5, 0.2
    async with FakeUpbit(limit=limit, window=window, faults=Faults(latency_in=0.3)) as fake:
        uuids = fake.add_orders(10)
        limiter = SlidingWindowLimiter(limit, window, max_transit=0.4)
        async with session_for(fake, limiter=limiter) as session:
            first = [asyncio.ensure_future(session.cancel_orders(uuids=[u])) for u in uuids[:5]]
            # Cancelled once the exchange has their bytes: they will arrive all the same, and
            # the path gets faster for the requests after them.
            await fake.wait_for(lambda fake: fake.received >= 5)
            fake.faults = Faults(latency_in=0.05)
            for task in first:
                task.cancel()
            await asyncio.gather(*first, return_exceptions=True)
            await asyncio.gather(*(session.cancel_orders(uuids=[u]) for u in uuids[5:]))
        await fake.wait_for(lambda fake: fake.in_transit == 0)
        assert len(fake.records) == fake.received == 10
        assert fake.stats()["rejected_429"] == 0
        assert fake.max_in_window() <= limit


async def test_an_explicit_limiter_and_the_automatic_one_share_one_budget(
    session_for: SessionFor,
) -> None:
    """A session given limiter= and another of the same key without: one budget, no 429."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(60)
        explicit = session_for(fake, limiter=SlidingWindowLimiter(30, 1.0))
        automatic = session_for(fake)
        async with explicit, automatic:
            await asyncio.gather(
                *(explicit.cancel_orders(uuids=[uuid]) for uuid in uuids[:30]),
                *(automatic.cancel_orders(uuids=[uuid]) for uuid in uuids[30:]),
            )
        assert fake.stats()["rejected_429"] == 0
        assert fake.max_in_window() <= 30


async def test_two_different_busy_limiters_for_one_key_are_a_clear_error(
    session_for: SessionFor,
) -> None:
    """A second limiter for a key whose first one is in use is refused, saying what to do."""
    async with FakeUpbit() as fake:
        uuid = fake.add_order()
        async with session_for(fake, limiter=SlidingWindowLimiter(30, 1.0)) as first:
            await first.cancel_orders(uuids=[uuid])
            with pytest.raises(ValueError, match="same limiter"):
                async with session_for(fake, limiter=SlidingWindowLimiter(30, 1.0)):
                    pass


async def test_an_aiolimiter_is_accepted_as_the_limiter(session_for: SessionFor) -> None:
    """limiter=aiolimiter.AsyncLimiter(30, 1) works: the design's token bucket, by adapter."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(40)
        limiter = AsyncLimiter(30, 1)
        async with session_for(fake, limiter=limiter) as session:
            result = await BatchCanceller(session).cancel(uuids=uuids)
        assert result.success.count == 40


async def test_a_request_abandoned_after_waiting_for_a_connection_still_fits_the_window(
    session_for: SessionFor,
) -> None:
    """Marked leaving, then it waits for a pooled connection: its hold counts from its end."""
    limit, window = 2, 0.2
    # The first answer takes 0.45 s: the second request waits that long for the connection.
    faults = Faults(latency_in=0.15, latency_out=0.3)
    async with FakeUpbit(limit=limit, window=window, faults=faults) as fake:
        uuids = fake.add_orders(6)
        limiter = SlidingWindowLimiter(limit, window, max_transit=0.2)
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        async with http, session_for(fake, limiter=limiter, http_session=http) as session:
            first = asyncio.ensure_future(session.cancel_orders(uuids=[uuids[0]]))
            # Waits for the only connection, then leaves once the first is answered.
            second = asyncio.ensure_future(session.cancel_orders(uuids=[uuids[1]]))
            await fake.wait_for(lambda fake: fake.received >= 2)
            second.cancel()
            await asyncio.gather(first, second, return_exceptions=True)
            fake.faults = Faults()
            await asyncio.gather(*(session.cancel_orders(uuids=[u]) for u in uuids[2:]))
        await fake.wait_for(lambda fake: fake.in_transit == 0)
        assert fake.stats()["rejected_429"] == 0
        assert fake.max_in_window() <= limit
