"""A warm session: connections opened ahead of a burst, with nothing sent on them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.helpers import until
from upbit_cancel import BatchCanceller, ConnectError, SlidingWindowLimiter, UpbitSession
from upbit_cancel._http import session as session_module
from upbit_cancel._http.transport import Transport
from upbit_cancel.testing import FakeUpbit, Faults, PathProxy


@pytest.fixture
async def tls_fake() -> AsyncIterator[FakeUpbit]:
    async with FakeUpbit(tls=True) as fake:
        yield fake


def session_through(fake: FakeUpbit, proxy: PathProxy) -> UpbitSession:
    return UpbitSession(
        fake.access_key,
        fake.secret_key,
        base_url=proxy.base_url,
        ssl=fake.client_ssl_context(),
        limiter=SlidingWindowLimiter(),
    )


async def test_the_burst_after_a_warm_up_opens_no_connection(
    tls_fake: FakeUpbit, caplog: pytest.LogCaptureFixture
) -> None:
    """warm_up(10) opens ten connections, TLS done, and times three handshakes of its own,
    sending nothing; the next ten requests leave on the ten; nothing secret is logged."""
    caplog.set_level(logging.DEBUG)
    uuids = tls_fake.add_orders(200)
    async with (
        PathProxy(tls_fake.base_url, one_way=0.01) as proxy,
        session_through(tls_fake, proxy) as session,
    ):
        await session.warm_up(10, keep=False)
        assert proxy.connections == 10 + 3
        assert tls_fake.received == 0
        result = await BatchCanceller(session, max_in_flight=10).cancel(uuids=uuids)
        assert proxy.connections == 10 + 3, "every request left on a connection already open"
    assert result.success.count == 200
    assert tls_fake.secret_key not in caplog.text
    assert "eyJ" not in caplog.text


async def test_a_second_warm_up_reuses_the_idle_connections(tls_fake: FakeUpbit) -> None:
    """Warming up a warm pool opens nothing new (it only resets the idle timers)."""
    async with PathProxy(tls_fake.base_url) as proxy, session_through(tls_fake, proxy) as session:
        await session.warm_up(5, keep=False)
        await session.warm_up(5, keep=False)
        assert proxy.connections == 5 + 3 + 3, "the pool's five are the same"


async def test_connections_the_server_closed_are_replaced() -> None:
    """The server closes connections idle after a request (after 1 s here): a warm-up then
    leaves none of them in the pool (aiohttp notices the close at once or when it next takes
    one, by its version), and the cancels that follow all reach the exchange and succeed."""
    async with (
        FakeUpbit(tls=True, keepalive_timeout=1.0) as tls_fake,
        PathProxy(tls_fake.base_url) as proxy,
        session_through(tls_fake, proxy) as session,
    ):
        first, second = tls_fake.add_orders(100), tls_fake.add_orders(100)
        await session.warm_up(5, keep=False)
        assert (await BatchCanceller(session).cancel(uuids=first)).success.count == 100
        used = proxy.connections
        await until(lambda: proxy.closed_by_target == used)
        await session.warm_up(5, keep=False)
        result = await BatchCanceller(session).cancel(uuids=second)
    assert result.success.count == 100
    assert not result.unresolved
    assert tls_fake.received == 5 + 5


async def test_a_warm_up_that_cannot_connect_is_a_connect_error(tls_fake: FakeUpbit) -> None:
    """No certificate trusted: a ConnectError saying so, nothing sent."""
    async with UpbitSession(
        tls_fake.access_key,
        tls_fake.secret_key,
        base_url=tls_fake.base_url,
        limiter=SlidingWindowLimiter(),
    ) as session:
        with pytest.raises(ConnectError, match="TLS certificate was refused") as caught:
            await session.warm_up(3)
    assert caught.value.__cause__ is None
    assert tls_fake.received == 0


async def test_warm_up_arguments_are_checked(tls_fake: FakeUpbit) -> None:
    """A number of connections from 1 to 100, a positive time."""
    async with PathProxy(tls_fake.base_url) as proxy, session_through(tls_fake, proxy) as session:
        with pytest.raises(ValueError, match="between 1 and 100"):
            await session.warm_up(0)
        with pytest.raises(ValueError, match="within"):
            await session.warm_up(1, within=-1)


async def test_a_warm_session_paces_its_first_window_on_the_floor_and_stays_within_it(
    tls_fake: FakeUpbit,
) -> None:
    """After a warm-up through a 50 ms path, the floor is known before the first request
    (the handshakes taught it), and a burst of three windows never crowds one at the fake."""
    uuids = tls_fake.add_orders(1800)
    limiter = SlidingWindowLimiter()
    async with (
        PathProxy(tls_fake.base_url, one_way=0.05, jitter=0.005) as proxy,
        UpbitSession(
            tls_fake.access_key,
            tls_fake.secret_key,
            base_url=proxy.base_url,
            ssl=tls_fake.client_ssl_context(),
            limiter=limiter,
        ) as session,
    ):
        await session.warm_up(keep=False)
        floor = limiter._pacer.estimate(asyncio.get_running_loop().time())
        assert floor is not None
        # About the round trip (0.1 s), never more than a little above it (the handshakes'
        # own work); what must hold is below: no window crowded at the exchange.
        assert 0.05 < floor < 0.15
        result = await BatchCanceller(session).cancel(uuids=uuids)
    assert result.success.count == 1800
    assert tls_fake.max_in_window() <= 30
    assert tls_fake.stats()["rejected_429"] == 0


async def test_a_kept_warm_session_warms_again_until_closed(tls_fake: FakeUpbit) -> None:
    """keep=True (the default) leaves a task that the session's close ends."""
    async with PathProxy(tls_fake.base_url) as proxy:
        session = session_through(tls_fake, proxy)
        async with session:
            await session.warm_up(2)
            keeper = session._keeper
            assert keeper is not None
            assert not keeper.done()
        assert keeper.done()


async def test_a_warm_up_in_the_background_gives_way_to_a_burst(tls_fake: FakeUpbit) -> None:
    """A burst that starts while the session warms up again in the background, holding its
    five idle connections while it opens five more, leaves at once on the five: the warm-up
    gives them back and ends, and no request opens a connection of its own."""
    uuids = tls_fake.add_orders(100)
    async with (
        PathProxy(tls_fake.base_url, one_way=0.1) as proxy,
        session_through(tls_fake, proxy) as session,
    ):
        await session.warm_up(5, keep=False)
        assert proxy.connections == 5 + 3
        refresh = asyncio.create_task(session._transport.refresh(10, 3, within=10.0))
        await until(lambda: proxy.connections == 5 + 3 + 5)  # its handshakes under way
        result = await BatchCanceller(session, max_in_flight=5).cancel(uuids=uuids)
        assert await refresh is False
        assert proxy.connections == 5 + 3 + 5, "the burst left on the five open connections"
    assert result.success.count == 100
    assert tls_fake.received == 5


async def test_a_request_granted_during_a_warm_up_in_the_background_ends_it(
    tls_fake: FakeUpbit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that was already waiting for its turn when a warm-up in the background
    began (holding the two idle connections while it opens two more) ends it once granted:
    it leaves on one of the two, opening none of its own."""
    turn = asyncio.Event()
    lease = Transport._lease

    async def waiting(self: Transport, limiter: Any, stop: asyncio.Event | None) -> Any:
        await turn.wait()
        return await lease(self, limiter, stop)

    async with (
        PathProxy(tls_fake.base_url, one_way=0.15) as proxy,
        session_through(tls_fake, proxy) as session,
    ):
        await session.warm_up(2, keep=False)
        monkeypatch.setattr(Transport, "_lease", waiting)
        cancel = asyncio.create_task(session.cancel_orders(uuids=tls_fake.add_orders(20)))
        opened = proxy.connections
        refresh = asyncio.create_task(session._transport.refresh(5, 3, within=10.0))
        await until(lambda: proxy.connections == opened + 2)  # its handshakes under way
        turn.set()
        assert (await cancel).success.count == 20
        assert await refresh is False
        assert proxy.connections == opened + 2, "the request left on an idle connection"


async def test_a_warm_up_ended_before_it_took_a_connection_takes_none(
    tls_fake: FakeUpbit,
) -> None:
    """A request that starts in the very turn a background warm-up begins, before it took
    any connection, ends it all the same: it takes none after that, so the requests that
    follow a turn later find the pool's idle connections, and nobody opens a new one."""
    uuids = tls_fake.add_orders(5)
    async with PathProxy(tls_fake.base_url) as proxy, session_through(tls_fake, proxy) as session:
        await session.warm_up(5, keep=False)
        opened = proxy.connections
        refresh = asyncio.create_task(session._transport.refresh(5, 3, within=10.0))
        first = asyncio.create_task(session.cancel_orders(uuids=uuids[:1]))
        await asyncio.sleep(0)
        rest = [asyncio.create_task(session.cancel_orders(uuids=[uuid])) for uuid in uuids[1:]]
        results = await asyncio.gather(first, *rest)
        assert await refresh is False
        assert proxy.connections == opened, "neither the warm-up nor a request opened one"
    assert sum(result.success.count for result in results) == 5


async def test_a_stream_connecting_ends_a_warm_up_in_the_background(tls_fake: FakeUpbit) -> None:
    """A stream's connection is a request too: it ends the warm-up under way and finds the
    idle connection it needs given back."""
    async with (
        PathProxy(tls_fake.base_url, one_way=0.1) as proxy,
        session_through(tls_fake, proxy) as session,
    ):
        await session.warm_up(5, keep=False)
        refresh = asyncio.create_task(session._transport.refresh(10, 3, within=10.0))
        await until(lambda: proxy.connections == 5 + 3 + 5)
        stream = await session._transport.connect_stream("/websocket/v1/private", within=10.0)
        await stream.close()
        assert await refresh is False
        assert proxy.connections == 5 + 3 + 5, "the stream took an idle connection"


async def test_a_warm_up_in_the_background_leaves_a_request_its_connection() -> None:
    """While a request waits for its answer on one of the three connections, a warm-up in the
    background for three marks the two idle ones used and opens none for the third, nor times
    any handshake (its probes wait for a moment with no request under way)."""
    async with (
        FakeUpbit(tls=True, faults=Faults(latency_out=1.0)) as fake,
        PathProxy(fake.base_url) as proxy,
        session_through(fake, proxy) as session,
    ):
        await session.warm_up(3, keep=False)
        opened = proxy.connections
        cancel = asyncio.create_task(session.cancel_orders(uuids=fake.add_orders(20)))
        await until(lambda: fake.received == 1)
        assert await session._transport.refresh(3, 3, within=10.0) is True
        assert proxy.connections == opened
        assert (await cancel).success.count == 20


async def test_a_warm_up_in_the_background_left_out_is_tried_again_soon(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A session kept warm with one connection, its one request waiting for an answer: the
    keeper's warm-ups are skipped (nothing left to warm), and tried again every half second
    rather than 20 s later, so the first once the request has ended runs to its end."""
    ran: list[bool] = []
    async with (
        FakeUpbit(tls=True, faults=Faults(latency_out=1.0)) as fake,
        PathProxy(fake.base_url) as proxy,
        session_through(fake, proxy) as session,
    ):
        refresh = Transport.refresh

        async def spied(self: Transport, connections: int, probes: int, *, within: float) -> bool:
            outcome = await refresh(self, connections, probes, within=within)
            ran.append(outcome)
            if not outcome:
                # From here on only the retry after a skip comes soon enough to be seen.
                monkeypatch.setattr(session_module, "_WARM_EVERY", 1000.0)
            return outcome

        monkeypatch.setattr(Transport, "refresh", spied)
        monkeypatch.setattr(session_module, "_WARM_EVERY", 0.05)
        monkeypatch.setattr(session_module, "_WARM_RETRY", 0.05)
        cancel = asyncio.create_task(session.cancel_orders(uuids=fake.add_orders(20)))
        await until(lambda: fake.received == 1)
        await session.warm_up(1)
        opened = proxy.connections
        await until(lambda: False in ran)
        assert proxy.connections == opened
        assert (await cancel).success.count == 20
        await until(lambda: ran[-1])
        assert proxy.connections == opened + 3, "once idle, it warms up again (its probes)"


async def test_a_kept_warm_session_carries_on_after_a_failure(
    tls_fake: FakeUpbit, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """While no connection can be had the keeper warns once, and it carries on: once they can
    be had again it says so, and keeps the pool warm."""
    monkeypatch.setattr(session_module, "_WARM_EVERY", 0.02)
    down = [False]
    async with PathProxy(tls_fake.base_url) as proxy, session_through(tls_fake, proxy) as session:
        await session.warm_up(2)
        connector = session._transport.open().connector
        assert connector is not None
        connect = connector.connect

        async def flaky(*arguments: Any) -> Any:
            if down[0]:
                raise aiohttp.ClientConnectionError("the exchange is out of reach")
            return await connect(*arguments)

        monkeypatch.setattr(connector, "connect", flaky)
        down[0] = True
        await until(lambda: "cannot keep the connections open" in caplog.text)
        down[0] = False
        await until(lambda: "are open again" in caplog.text)
        probed = proxy.connections
        await until(lambda: proxy.connections > probed)  # it warms up again: its probes
        keeper = session._keeper
        assert keeper is not None
        assert not keeper.done()
    assert caplog.text.count("cannot keep the connections open") == 1


async def test_a_keeper_that_meets_the_unexpected_says_so_and_carries_on(
    tls_fake: FakeUpbit, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever a warm-up in the background raises, the keeper logs it and carries on."""
    monkeypatch.setattr(session_module, "_WARM_EVERY", 0.02)
    calls: list[bool] = []
    refresh = Transport.refresh

    async def broken_once(self: Transport, connections: int, probes: int, *, within: float) -> bool:
        calls.append(True)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return await refresh(self, connections, probes, within=within)

    monkeypatch.setattr(Transport, "refresh", broken_once)
    async with PathProxy(tls_fake.base_url) as proxy, session_through(tls_fake, proxy) as session:
        await session.warm_up(2)
        await until(lambda: len(calls) >= 2)
        keeper = session._keeper
        assert keeper is not None
        assert not keeper.done()
    assert "keeping the connections open failed" in caplog.text


async def test_closing_while_a_warm_up_in_the_background_fails_ends_it(
    tls_fake: FakeUpbit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection of the keeper's warm-up that fails in the very turn the session closes:
    the close ends the keeper all the same."""
    monkeypatch.setattr(session_module, "_WARM_EVERY", 0.01)
    session = UpbitSession(
        tls_fake.access_key,
        tls_fake.secret_key,
        base_url=tls_fake.base_url,
        ssl=tls_fake.client_ssl_context(),
        limiter=SlidingWindowLimiter(),
    )
    async with session:
        await session.warm_up(2)
        connector = session._transport.open().connector
        assert connector is not None
        gates: list[asyncio.Future[None]] = []
        connect = connector.connect

        async def gated(*arguments: Any) -> Any:
            gate = asyncio.get_running_loop().create_future()
            gates.append(gate)
            await gate
            return await connect(*arguments)

        monkeypatch.setattr(connector, "connect", gated)
        await until(lambda: len(gates) == 2)
        gates[0].set_exception(aiohttp.ClientConnectionError("refused"))
        async with asyncio.timeout(5):
            await session.aclose()
    assert session._keeper is None
