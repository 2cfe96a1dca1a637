"""The order stream client against the fake's private stream (and a stand-in that misbehaves).

What it received is compared with the fake's order states; whether it may have missed events
is read from its marks, and checked against what the fake did to the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.conftest import SessionFor
from upbit_cancel import BatchCanceller, UpbitSession
from upbit_cancel._http.stream import OrderEvent, OrderStream, parse_event
from upbit_cancel.testing import FakeUpbit, StreamFaults


async def wait_until(condition: object, within: float = 10.0) -> None:
    """Poll ``condition()`` (a cheap check of state the test cannot await) until it holds."""
    async with asyncio.timeout(within):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 - no event for it
            await asyncio.sleep(0.01)


async def test_events_arrive_and_match_the_exchange(session_for: SessionFor) -> None:
    async with FakeUpbit(cancel_delay=0.2, fill_rate=0.2, seed=4) as fake:
        uuids = fake.add_orders(60)
        states: dict[str, str] = {}
        async with (
            session_for(fake) as session,
            OrderStream(session, on_event=lambda e: states.__setitem__(e.uuid, e.state)) as stream,
        ):
            assert await stream.ready(within=5)
            mark = stream.mark()
            await BatchCanceller(session).cancel(uuids=uuids)
            await wait_until(lambda: len(states) == 60 and "wait" not in states.values())
            assert stream.unbroken_since(mark)
        assert states == {uuid: fake.state(uuid) for uuid in uuids}


async def test_a_lost_connection_is_said_and_mended(session_for: SessionFor) -> None:
    """The fake closes the connection after one event: the mark says events may have been
    missed, the stream subscribes again, and a new mark is unbroken."""
    async with FakeUpbit() as fake, session_for(fake) as session:
        seen: list[OrderEvent] = []
        async with OrderStream(session, on_event=seen.append) as stream:
            assert await stream.ready(within=5)
            mark = stream.mark()
            fake.stream_faults = StreamFaults(close_after=1)
            fake.add_order()
            await wait_until(lambda: not stream.unbroken_since(mark))
            fake.stream_faults = StreamFaults()
            assert await stream.ready(within=5)
            assert stream.mark() != mark
            again = stream.mark()
            created = fake.add_order()
            await wait_until(lambda: any(event.uuid == created for event in seen))
            assert stream.unbroken_since(again)


async def test_the_keepalive_outlasts_the_idle_timeout(session_for: SessionFor) -> None:
    async with FakeUpbit() as fake, session_for(fake) as session:
        fake.stream_faults = StreamFaults(idle_timeout=0.3)
        async with OrderStream(session, on_event=print, keepalive=0.1) as stream:
            assert await stream.ready(within=5)
            mark = stream.mark()
            # Five idle timeouts later, the same subscription holds: wait on the fake's side
            # for pings to have come in that long, by counting answered PINGs indirectly.
            await asyncio.sleep(1.5)
            assert stream.unbroken_since(mark)
        fake.stream_faults = StreamFaults(idle_timeout=0.3)
        async with OrderStream(session, on_event=print, keepalive=5.0) as stream:
            assert await stream.ready(within=5)
            mark = stream.mark()
            await wait_until(lambda: not stream.unbroken_since(mark))
            assert stream.failure is not None


async def test_a_silent_connection_is_taken_for_dead(session_for: SessionFor) -> None:
    async with (
        FakeUpbit() as fake,
        session_for(fake) as session,
        OrderStream(session, on_event=print, keepalive=0.1) as stream,
    ):
        assert await stream.ready(within=5)
        mark = stream.mark()
        fake.stream_faults = StreamFaults(silent=True)
        await wait_until(lambda: not stream.unbroken_since(mark))
        assert stream.failure == "the stream went silent"


async def test_a_refused_key_stops_the_stream() -> None:
    async with (
        FakeUpbit() as fake,
        UpbitSession(fake.access_key, "x" * 40, base_url=fake.base_url) as session,
        OrderStream(session, on_event=print) as stream,
    ):
        assert not await stream.ready(within=1.0)
        await wait_until(lambda: "INVALID_AUTH" in (stream.failure or ""))
        assert "x" * 40 not in (stream.failure or "")


async def test_a_refused_endpoint_is_tried_again_until_it_serves(session_for: SessionFor) -> None:
    async with FakeUpbit() as fake, session_for(fake) as session:
        fake.stream_faults = StreamFaults(refuse=True)
        async with OrderStream(session, on_event=print) as stream:
            assert not await stream.ready(within=0.6)
            assert "503" in (stream.failure or "")
            fake.stream_faults = StreamFaults()
            assert await stream.ready(within=10)


@contextlib.asynccontextmanager
async def stand_in(frames: list[bytes | str]) -> AsyncIterator[str]:
    """A private stream that answers PING, then sends ``frames`` as they are."""

    async def handle(request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            if message.data == "PING":
                await socket.send_str('{"status":"UP"}')
                for frame in frames:
                    if isinstance(frame, bytes):
                        await socket.send_bytes(frame)
                    else:
                        await socket.send_str(frame)
                frames.clear()
        return socket

    app = web.Application()
    app.router.add_get("/websocket/v1/private", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_an_event_that_does_not_parse_is_ignored() -> None:
    good = {"type": "myOrder", "code": "SGD-BTC", "uuid": "u-1", "state": "cancel"}
    frames: list[bytes | str] = [
        b"\xff not json",
        json.dumps({"type": "myOrder", "code": "SGD-BTC"}).encode(),
        json.dumps([1, 2]).encode(),
        json.dumps(good).encode(),
    ]
    seen: list[OrderEvent] = []
    async with (
        stand_in(frames) as base_url,
        UpbitSession("a" * 40, "s" * 40, base_url=base_url) as session,
        OrderStream(session, on_event=seen.append) as stream,
    ):
        assert await stream.ready(within=5)
        await wait_until(lambda: bool(seen))
        assert seen == [OrderEvent(uuid="u-1", market="SGD-BTC", state="cancel")]
        assert stream.unparsed == 3


@pytest.mark.parametrize(
    "payload",
    [
        {"ty": "myOrder", "cd": "SGD-BTC", "uid": "u", "s": "done", "ab": "ASK", "tms": 5},
        {
            "type": "myOrder",
            "code": "SGD-BTC",
            "uuid": "u",
            "state": "done",
            "ask_bid": "ASK",
            "timestamp": 5,
        },
    ],
)
def test_both_formats_read_alike(payload: dict[str, object]) -> None:
    event = parse_event(json.dumps(payload))
    assert event == OrderEvent(uuid="u", market="SGD-BTC", state="done", side="ask", timestamp=5)


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "ticker"},
        {"type": "myOrder", "code": "SGD-BTC", "uuid": 3, "state": "done"},
        {"type": "myOrder", "code": "SGD-BTC", "uuid": "u", "state": "done", "ask_bid": "SELL"},
        {"type": "myOrder", "code": "SGD-BTC", "uuid": "u", "state": "done", "timestamp": "x"},
        {"type": "myOrder", "code": "SGD-BTC", "uuid": "u", "state": "done", "identifier": 1},
    ],
)
def test_off_shape_events_are_refused(payload: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"myOrder|missing|ask_bid|whole|identifier"):
        parse_event(json.dumps(payload))
