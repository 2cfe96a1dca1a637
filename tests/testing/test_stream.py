"""The fake's private stream (``/websocket/v1/private``), driven by a plain aiohttp WebSocket.

Events are read from the wire and compared with the fake's own order states; nothing here
trusts the stream's counters alone.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest

from tests.conftest import SessionFor
from upbit_cancel import BatchCanceller
from upbit_cancel.testing import FakeUpbit, StreamFaults

SUBSCRIBE_ALL: list[dict[str, Any]] = [{"ticket": "test"}, {"type": "myOrder"}]


def bearer(access_key: str, secret_key: str) -> str:
    payload = {"access_key": access_key, "nonce": str(uuid.uuid4())}
    return "Bearer " + jwt.encode(payload, secret_key, algorithm="HS256")


def stream_url(fake: FakeUpbit) -> str:
    return fake.base_url.replace("http://", "ws://") + "/websocket/v1/private"


async def connect(
    http: aiohttp.ClientSession, fake: FakeUpbit, secret_key: str | None = None
) -> aiohttp.ClientWebSocketResponse:
    headers = {"Authorization": bearer(fake.access_key, secret_key or fake.secret_key)}
    return await http.ws_connect(stream_url(fake), headers=headers)


async def events(socket: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    """The next ``count`` events (binary frames), in order."""
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while len(received) < count:
            message = await socket.receive()
            assert message.type == aiohttp.WSMsgType.BINARY, message
            received.append(json.loads(message.data))
    return received


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def subscribed(
    http: aiohttp.ClientSession, fake: FakeUpbit, request: list[dict[str, Any]]
) -> aiohttp.ClientWebSocketResponse:
    """A connection whose subscription is in force (a PING answered after it proves it)."""
    socket = await connect(http, fake)
    await socket.send_str(json.dumps(request))
    await socket.send_str("PING")
    assert (await socket.receive(timeout=5)).data == '{"status":"UP"}'
    return socket


async def test_changes_after_the_subscription_arrive_as_binary_json(
    http: aiohttp.ClientSession, session_for: SessionFor
) -> None:
    """No snapshot: an order closed before subscribing never shows; one created and one
    canceled after it do, with the fake's state."""
    async with FakeUpbit() as fake:
        before = fake.add_orders(3)
        async with session_for(fake) as session:
            await session.cancel_orders(uuids=before[:1])
            socket = await subscribed(http, fake, SUBSCRIBE_ALL)
            created = fake.add_order("SGD-ETH", identifier="mine-1")
            await session.cancel_orders(uuids=[created])
        first, second = await events(socket, 2)
        assert (first["uuid"], first["state"], first["code"]) == (created, "wait", "SGD-ETH")
        assert first["identifier"] == "mine-1"
        assert (second["uuid"], second["state"]) == (created, "cancel")
        assert {first["type"], first["stream_type"], first["ask_bid"]} == {
            "myOrder",
            "REALTIME",
            "BID",
        }
        await socket.close()


async def test_codes_filter_and_the_simple_format(http: aiohttp.ClientSession) -> None:
    async with FakeUpbit() as fake:
        request: list[dict[str, Any]] = [
            {"ticket": "t"},
            {"type": "myOrder", "codes": ["SGD-ETH"]},
            {"format": "SIMPLE"},
        ]
        socket = await subscribed(http, fake, request)
        fake.add_order("SGD-BTC")
        wanted = fake.add_order("SGD-ETH")
        (event,) = await events(socket, 1)
        assert event["uid"] == wanted
        assert event["cd"] == "SGD-ETH"
        assert event["s"] == "wait"
        assert event["ty"] == "myOrder"
        assert "uuid" not in event
        await socket.close()


async def test_a_new_subscription_replaces_the_previous(http: aiohttp.ClientSession) -> None:
    async with FakeUpbit() as fake:
        socket = await subscribed(
            http, fake, [{"ticket": "a"}, {"type": "myOrder", "codes": ["X-A"]}]
        )
        await socket.send_str(json.dumps([{"ticket": "b"}, {"type": "myOrder", "codes": ["X-B"]}]))
        await socket.send_str("PING")
        assert (await socket.receive(timeout=5)).data == '{"status":"UP"}'
        fake.add_order("X-A")
        wanted = fake.add_order("X-B")
        (event,) = await events(socket, 1)
        assert event["uuid"] == wanted
        await socket.close()


async def test_delayed_cancels_and_fills_are_told_when_they_take_effect(
    http: aiohttp.ClientSession, session_for: SessionFor
) -> None:
    """With a cancel delay, the final state is pushed when it happens, with no request after
    it, and it is the fake's state (a fill that won the race included)."""
    async with FakeUpbit(cancel_delay=0.2, fill_rate=0.3, seed=3) as fake:
        uuids = fake.add_orders(40)
        socket = await subscribed(http, fake, SUBSCRIBE_ALL)
        async with session_for(fake) as session:
            await BatchCanceller(session).cancel(uuids=uuids)
        received = await events(socket, 40)
        states = {event["uuid"]: event["state"] for event in received}
        assert states == {uuid: fake.state(uuid) for uuid in uuids}
        assert set(states.values()) == {"cancel", "done"}
        await socket.close()


async def test_ping_is_answered_up(http: aiohttp.ClientSession) -> None:
    async with FakeUpbit() as fake:
        socket = await connect(http, fake)
        await socket.send_str("PING")
        assert (await socket.receive(timeout=5)).data == '{"status":"UP"}'
        await socket.close()


async def test_a_bad_key_is_told_invalid_auth_and_closed(http: aiohttp.ClientSession) -> None:
    async with FakeUpbit() as fake:
        socket = await connect(http, fake, secret_key="x" * 40)
        message = await socket.receive(timeout=5)
        assert json.loads(message.data)["error"]["name"] == "INVALID_AUTH"
        closing = await socket.receive(timeout=5)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert fake.stream_connections == 0


@pytest.mark.parametrize(
    "request_text",
    [
        "not json",
        json.dumps({"ticket": "t"}),
        json.dumps([{"type": "myOrder"}]),
        json.dumps([{"ticket": "t"}, {"type": "ticker"}]),
        json.dumps([{"ticket": "t"}, {"type": "myOrder"}, {"format": "FANCY"}]),
        json.dumps([{"ticket": "t"}, {"type": "myOrder", "codes": "SGD-BTC"}]),
    ],
)
async def test_a_bad_subscription_is_told_invalid_param(
    http: aiohttp.ClientSession, request_text: str
) -> None:
    async with FakeUpbit() as fake:
        socket = await connect(http, fake)
        await socket.send_str(request_text)
        message = await socket.receive(timeout=5)
        assert json.loads(message.data)["error"]["name"] == "INVALID_PARAM"
        fake.add_order()
        await socket.send_str("PING")
        assert (await socket.receive(timeout=5)).data == '{"status":"UP"}'  # no event came
        await socket.close()


async def test_at_most_five_connects_a_second(http: aiohttp.ClientSession) -> None:
    """Read on the fake's own clock, held still: the sixth connect in a second is refused 429;
    once the second has passed, a connect goes through again."""
    now = [100.0]
    async with FakeUpbit(clock=lambda: now[0]) as fake:
        sockets = [await connect(http, fake) for _ in range(5)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await connect(http, fake)
        assert refused.value.status == 429
        now[0] += 1.0
        sockets.append(await connect(http, fake))
        for socket in sockets:
            await socket.close()


async def test_faults_drop_events_close_connections_and_refuse_connects(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeUpbit() as fake:
        fake.stream_faults = StreamFaults(drop_rate=1.0)
        socket = await subscribed(http, fake, SUBSCRIBE_ALL)
        fake.add_orders(5)
        await socket.send_str("PING")
        assert (await socket.receive(timeout=5)).data == '{"status":"UP"}'  # nothing before it
        assert fake.stream_events_sent == 0
        fake.stream_faults = StreamFaults(close_after=2)
        fake.add_orders(5)
        assert len(await events(socket, 2)) == 2
        closing = await socket.receive(timeout=5)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        fake.stream_faults = StreamFaults(refuse=True)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await connect(http, fake)
        assert refused.value.status == 503
        with pytest.raises(ValueError, match="drop_rate"):
            StreamFaults(drop_rate=2.0)
        with pytest.raises(TypeError, match="StreamFaults"):
            fake.stream_faults = "broken"  # type: ignore[assignment]


async def test_the_admin_api_sets_the_stream_faults(http: aiohttp.ClientSession) -> None:
    async with FakeUpbit() as fake:
        url = f"{fake.base_url}/_fake/stream-faults"
        async with http.post(url, json={"drop_rate": 0.25, "refuse": True}) as response:
            assert response.status == 200
        assert fake.stream_faults == StreamFaults(drop_rate=0.25, refuse=True)
        for payload in ({"drop": 1}, {"drop_rate": 3}, {"refuse": "yes"}, [1]):
            async with http.post(url, json=payload) as response:
                assert response.status == 400
                assert (await response.json())["error"]["name"] == "validation_error"
        assert fake.stream_faults == StreamFaults(drop_rate=0.25, refuse=True)


async def test_a_key_without_the_order_query_permission_is_refused(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeUpbit() as fake:
        access_key, secret_key = fake.add_credentials(can_query=False)
        headers = {"Authorization": bearer(access_key, secret_key)}
        socket = await http.ws_connect(stream_url(fake), headers=headers)
        message = await socket.receive(timeout=5)
        error = json.loads(message.data)["error"]
        assert error["name"] == "INVALID_AUTH"
        assert "order query" in error["message"]
        await socket.close()
