"""Leave no one stranded: a new limiter of a key whose old limiter still holds slots takes
them over, or waits for them, and never refuses a caller who closed the old one."""

from __future__ import annotations

from aiolimiter import AsyncLimiter

from tests.conftest import RedisServer, SessionFor
from upbit_cancel import (
    BatchCanceller,
    BudgetUnavailableError,
    RedisLimiter,
    SlidingWindowLimiter,
)
from upbit_cancel.testing import FakeUpbit


async def test_a_new_limiter_takes_over_the_slots_of_a_closed_sessions_limiter(
    session_for: SessionFor,
) -> None:
    """A kill switch closes its session and opens another with a limiter of its own at once:
    its first call goes through, and the exchange never sees more than 30 in a window."""
    async with FakeUpbit() as fake:
        orders = fake.add_orders(1_200)
        async with session_for(fake) as first:
            await BatchCanceller(first).cancel(uuids=orders[:600])
        async with session_for(fake, limiter=SlidingWindowLimiter(30, 1.0)) as second:
            result = await BatchCanceller(second).cancel(uuids=orders[600:])
        assert result.success.count == 600
        assert fake.max_in_window() <= 30
        assert fake.stats()["rejected_429"] == 0


async def test_a_limiter_that_cannot_take_slots_over_waits_for_them(
    session_for: SessionFor,
) -> None:
    """A token bucket after the default limiter: it waits until the old slots are free."""
    async with FakeUpbit() as fake:
        orders = fake.add_orders(620)
        async with session_for(fake) as first:
            await BatchCanceller(first).cancel(uuids=orders[:600])
        async with session_for(fake, limiter=AsyncLimiter(30, 1)) as second:
            await second.cancel_orders(uuids=orders[600:])
        assert fake.max_in_window() <= 30


async def test_a_redis_limiter_closed_is_replaced_at_once(
    session_for: SessionFor, redis_url: str
) -> None:
    """A RedisLimiter closed while its slots still count: a new one of the key is not refused,
    and the exchange never sees more than the limit in a window."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(1_200)
        async with (
            RedisLimiter(redis_url) as old,
            session_for(fake, limiter=old) as first,
        ):
            await BatchCanceller(first).cancel(uuids=uuids[:600])
        async with (
            RedisLimiter(redis_url) as new,
            session_for(fake, limiter=new) as second,
        ):
            result = await BatchCanceller(second).cancel(uuids=uuids[600:])
        assert result.success.count == 600
        assert fake.max_in_window() <= 30
        assert fake.stats()["rejected_429"] == 0


async def test_a_redis_limiter_that_never_reached_redis_refuses_without_sending(
    session_for: SessionFor,
) -> None:
    """A process that never reached Redis has no share of the budget of its own: its requests
    are refused as not sent, with an error that says why, and nothing reaches the exchange."""
    server = RedisServer()  # never started
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(3)
        async with (
            RedisLimiter(server.url, timeout=0.2) as limiter,
            session_for(fake, limiter=limiter) as session,
        ):
            result = await BatchCanceller(session).cancel(uuids=uuids)
        assert result.unresolved.count == 3
        assert {type(entry.error) for entry in result.unresolved} == {BudgetUnavailableError}
        assert "no share" in str(result.unresolved[0].error)
        assert fake.records == []
