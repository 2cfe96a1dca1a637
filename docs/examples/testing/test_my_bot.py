"""Tests of the bot's kill switch against a fake Upbit exchange."""

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from my_bot import kill_switch

from upbit_cancel import OutOfScopeError, UpbitSession
from upbit_cancel.testing import FakeUpbit, Faults

# Every test here is a coroutine run by pytest-asyncio.
pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeUpbit]:
    """A fake exchange that counts like Upbit: 30 requests in any 1 s, 429 beyond."""
    async with FakeUpbit(policy="sliding", limit=30, window=1.0) as exchange:
        yield exchange


@pytest_asyncio.fixture
async def session(fake: FakeUpbit) -> AsyncIterator[UpbitSession]:
    async with UpbitSession(fake.access_key, fake.secret_key, base_url=fake.base_url) as opened:
        yield opened


async def test_cancels_every_open_order_of_its_market(
    fake: FakeUpbit, session: UpbitSession
) -> None:
    mine = fake.add_orders(500, market="SGD-BTC")
    other = fake.add_orders(10, market="SGD-ETH")
    result = await kill_switch(session, "SGD-BTC")
    assert result.success.count == 500
    assert result.still_open == ()
    assert all(fake.state(uuid) == "cancel" for uuid in mine)
    assert all(fake.state(uuid) == "wait" for uuid in other)
    # Within Upbit's limit all along.
    assert fake.max_in_window() <= 30
    assert fake.stats()["rejected_429"] == 0


async def test_a_gateway_error_is_no_reason_to_give_up(
    fake: FakeUpbit, session: UpbitSession
) -> None:
    """The first answer is a load balancer's 502 page: the listing is asked again."""
    uuids = fake.add_orders(100, market="SGD-BTC")
    fake.queue_response(502, "<html>502 Bad Gateway</html>", content_type="text/html")
    result = await kill_switch(session, "SGD-BTC")
    assert result.success.count == 100
    assert all(fake.state(uuid) == "cancel" for uuid in uuids)


async def test_a_distant_exchange_is_never_overrun() -> None:
    """80 ms each way, give or take 20: slower, and still within the limit."""
    faults = Faults(latency_in=0.08, jitter_in=0.02, latency_out=0.08, jitter_out=0.02)
    async with FakeUpbit(faults=faults) as far:
        uuids = far.add_orders(300, market="SGD-BTC")
        async with UpbitSession(far.access_key, far.secret_key, base_url=far.base_url) as s:
            result = await kill_switch(s, "SGD-BTC")
        assert all(far.state(uuid) == "cancel" for uuid in uuids)
        assert far.max_in_window() <= 30
        assert far.stats()["rejected_429"] == 0
    assert result.still_open == ()


async def test_cancels_that_lose_the_race_to_a_fill_are_reported() -> None:
    """Cancels take 0.2 s to take effect, and a quarter of the orders fill meanwhile."""
    async with FakeUpbit(cancel_delay=0.2, fill_rate=0.25, seed=7) as slow:
        uuids = slow.add_orders(200, market="SGD-BTC")
        async with UpbitSession(slow.access_key, slow.secret_key, base_url=slow.base_url) as s:
            result = await kill_switch(s, "SGD-BTC")
        filled = [uuid for uuid in uuids if result.states[uuid] == "done"]
        assert filled  # accepted cancels whose orders filled first
        assert all(slow.state(uuid) == "done" for uuid in filled)
    assert result.still_open == ()


async def test_a_key_without_permission_is_an_alarm_not_a_silence(fake: FakeUpbit) -> None:
    access_key, secret_key = fake.add_credentials(can_order=False)
    uuids = fake.add_orders(30, market="SGD-BTC")
    async with UpbitSession(access_key, secret_key, base_url=fake.base_url) as session:
        result = await kill_switch(session, "SGD-BTC")
    assert all(isinstance(entry.error, OutOfScopeError) for entry in result.unresolved)
    assert sorted(result.still_open) == sorted(uuids)
