"""The fake's pockets (sub-accounts): each with its own keys, orders, budgets, blocks and stream,
driven through the library's own session and order stream over loopback."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import jwt
import pytest

from tests.conftest import SessionFor
from tests.helpers import until
from upbit_cancel import (
    AuthenticationError,
    BlockedError,
    OrderNotFoundError,
    RateLimitError,
    SlidingWindowLimiter,
    UpbitSession,
)
from upbit_cancel._http.stream import OrderEvent, OrderStream
from upbit_cancel.testing import FakeUpbit, RequestRecord, most_in_window


def standing_clock() -> float:
    """A clock that stands still: every arrival falls in one window however slow the machine."""
    return 1000.0


async def cancel_each(session: UpbitSession, uuids: list[str]) -> list[object]:
    """One single-id cancel per uuid, all at once: each answer, or the error it raised."""
    return await asyncio.gather(
        *(session.cancel_orders(uuids=[order]) for order in uuids), return_exceptions=True
    )


async def test_without_pockets_nothing_changes(fake: FakeUpbit, session_for: SessionFor) -> None:
    """A fake nobody adds a pocket to has the main pocket only, and serves and records as ever."""
    assert fake.pockets == ("main",)
    uuids = fake.add_orders(2)
    async with session_for(fake) as session:
        await session.cancel_orders(uuids=uuids)
    assert fake.state_counts() == fake.state_counts("main")
    assert fake.state_counts()["cancel"] == 2
    (record,) = fake.records
    assert record.pocket == "main"
    assert fake.stats() == fake.stats("main")
    assert fake.stats()["admitted"] == 1


async def test_each_pocket_has_its_own_thirty_a_second(session_for: SessionFor) -> None:
    """61 cancels in one window: the main pocket's 30 and pocket a's first 30 are admitted, pocket
    a's 31st gets a 429 while the main pocket never sees one."""
    async with FakeUpbit(limit=30, window=1.0, clock=standing_clock) as fake:
        keys = fake.add_pocket("a")
        main_orders = fake.add_orders(30)
        pocket_orders = fake.add_orders(31, pocket="a")
        unpaced = SlidingWindowLimiter(100, 1.0)
        async with (
            session_for(fake) as main,
            session_for(fake, keys=keys, limiter=unpaced, rate_limit_retries=0) as pocket,
        ):
            main_outcomes, pocket_outcomes = await asyncio.gather(
                cancel_each(main, main_orders), cancel_each(pocket, pocket_orders)
            )
        assert not [outcome for outcome in main_outcomes if isinstance(outcome, Exception)]
        (refused,) = [outcome for outcome in pocket_outcomes if isinstance(outcome, Exception)]
        assert type(refused) is RateLimitError
        assert most_in_window(record.arrival for record in fake.records) == 61
        assert fake.max_in_window() == 30
        assert fake.max_in_window(pocket="a") == 30
        assert (fake.stats()["admitted"], fake.stats()["rejected_429"]) == (30, 0)
        assert (fake.stats("a")["admitted"], fake.stats("a")["rejected_429"]) == (30, 1)
        assert fake.state_counts()["cancel"] == 30
        assert fake.state_counts("a")["cancel"] == 30
        assert fake.state(refused.ids[0]) == "wait"


async def test_a_block_stays_in_its_pocket(session_for: SessionFor) -> None:
    """Pocket a's 429 blocks every key of pocket a (418), and leaves the main pocket alone."""
    async with FakeUpbit(limit=1, block_after=1, clock=standing_clock) as fake:
        first_keys = fake.add_pocket("a")
        second_keys = fake.add_credentials(pocket="a")
        pocket_orders = fake.add_orders(3, pocket="a")
        main_order = fake.add_order()
        async with (
            session_for(fake, keys=first_keys, rate_limit_retries=0) as first,
            session_for(fake, keys=second_keys, rate_limit_retries=0) as second,
            session_for(fake) as main,
        ):
            outcomes = await cancel_each(first, pocket_orders[:2])
            assert sorted(type(outcome).__name__ for outcome in outcomes) == [
                "CancelResult",
                "RateLimitError",
            ]
            with pytest.raises(BlockedError):
                await second.cancel_orders(uuids=pocket_orders[2:])
            result = await main.cancel_orders(uuids=[main_order])
        assert [order.uuid for order in result.success] == [main_order]
        assert fake.state(pocket_orders[2]) == "wait"
        statuses = [(record.pocket, record.status) for record in fake.records]
        assert sorted(statuses) == [("a", 200), ("a", 418), ("a", 429), ("main", 200)]


async def test_a_pocket_s_key_never_reaches_another_pocket_s_orders(
    session_for: SessionFor,
) -> None:
    """Pocket a's key cannot list, query or cancel pocket b's or the main pocket's orders: to it
    they do not exist."""
    async with FakeUpbit(cancel_all_limit=10, cancel_all_window=1.0) as fake:
        a_keys = fake.add_pocket("a")
        fake.add_pocket("b")
        own = fake.add_orders(2, pocket="a")
        others = [*fake.add_orders(2, pocket="b"), *fake.add_orders(2)]
        async with session_for(fake, keys=a_keys) as session:
            listed = await session.open_orders()
            queried = await session.orders(uuids=others)
            result = await session.cancel_orders(uuids=others)
            with pytest.raises(OrderNotFoundError):
                await session.request("DELETE", "/v1/order", params={"uuid": others[0]})
            batch = await session.cancel_open_orders()
        assert [order.uuid for order in listed] == own
        assert queried == []
        assert (result.success.count, result.failed.count) == (0, 0)
        assert sorted(order.uuid for order in batch.success) == sorted(own)
        assert [fake.state(order) for order in others] == ["wait"] * 4
        assert [fake.state(order) for order in own] == ["cancel"] * 2
        assert fake.state_counts("b")["wait"] == fake.state_counts()["wait"] == 2


async def test_the_stream_tells_a_pocket_s_events_to_its_own_connections(
    session_for: SessionFor,
) -> None:
    """Each connection hears its own pocket's orders only, a delayed cancel included (told when
    it takes effect, with no request after it)."""
    async with FakeUpbit(cancel_delay=0.05) as fake:
        keys = fake.add_pocket("a")
        heard: dict[str, list[OrderEvent]] = {"main": [], "a": []}
        async with (
            session_for(fake) as main,
            session_for(fake, keys=keys) as pocket,
            OrderStream(main, on_event=heard["main"].append) as main_stream,
            OrderStream(pocket, on_event=heard["a"].append) as pocket_stream,
        ):
            assert await main_stream.ready(within=5)
            assert await pocket_stream.ready(within=5)
            pocket_order = fake.add_order(pocket="a")
            await pocket.cancel_orders(uuids=[pocket_order])
            await until(lambda: len(heard["a"]) == 2)
            main_order = fake.add_order()
            await until(lambda: len(heard["main"]) == 1)
        # Events of one connection are sent in order: had pocket a's reached the main
        # pocket's connection, they would have come before its own order's.
        assert [(event.uuid, event.state) for event in heard["main"]] == [(main_order, "wait")]
        assert [(event.uuid, event.state) for event in heard["a"]] == [
            (pocket_order, "wait"),
            (pocket_order, "cancel"),
        ]


async def test_each_pocket_has_its_own_five_connects_a_second() -> None:
    """Pocket a's sixth connect in a second is refused 429; the main pocket's first goes
    through."""

    def bearer(access_key: str, secret_key: str) -> dict[str, str]:
        token = jwt.encode({"access_key": access_key, "nonce": str(uuid.uuid4())}, secret_key)
        return {"Authorization": f"Bearer {token}"}

    async with FakeUpbit(clock=standing_clock) as fake, aiohttp.ClientSession() as http:
        url = fake.base_url.replace("http://", "ws://") + "/websocket/v1/private"
        keys = fake.add_pocket("a")
        sockets = [await http.ws_connect(url, headers=bearer(*keys)) for _ in range(5)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, headers=bearer(*fake.add_credentials(pocket="a")))
        assert refused.value.status == 429
        sockets.append(await http.ws_connect(url, headers=bearer(fake.access_key, fake.secret_key)))
        await fake.wait_for(lambda fake: fake.stream_connections == 6)
        for socket in sockets:
            await socket.close()


async def test_records_say_the_pocket_that_served_them(session_for: SessionFor) -> None:
    """Each record names the pocket of its key; a key the fake does not know is the main
    pocket's, refused there."""
    async with FakeUpbit() as fake:
        keys = fake.add_pocket("a")
        async with (
            session_for(fake) as main,
            session_for(fake, keys=keys) as pocket,
            session_for(fake, keys=("x" * 40, "y" * 40)) as stranger,
        ):
            await main.open_orders()
            await pocket.open_orders()
            with pytest.raises(AuthenticationError):
                await stranger.open_orders()
        assert [(record.pocket, record.status) for record in fake.records] == [
            ("main", 200),
            ("a", 200),
            ("main", 401),
        ]
        assert [record.to_dict()["pocket"] for record in fake.records] == ["main", "a", "main"]
        assert RequestRecord(0.0, "GET", "/", None, 200, None, (), True, None, ()).pocket == "main"
        assert fake.stats("a")["status_counts"] == {"200": 1}
        assert fake.stats()["status_counts"] == {"200": 1, "401": 1}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def admin(
    http: aiohttp.ClientSession, fake: FakeUpbit, method: str, path: str, **options: Any
) -> tuple[int, Any]:
    """A request to the admin API: its status and decoded JSON."""
    async with http.request(method, f"{fake.base_url}/_fake/{path}", **options) as response:
        return response.status, await response.json()


async def test_the_admin_api_makes_and_serves_pockets(
    http: aiohttp.ClientSession, session_for: SessionFor
) -> None:
    """POST /_fake/pockets makes a pocket and answers its keys; orders, keys, states and stats
    take a pocket too, the main one when left out."""
    async with FakeUpbit(clock=standing_clock) as fake:
        status, keys = await admin(http, fake, "POST", "pockets", json={"name": "bot"})
        assert (status, set(keys)) == (200, {"access_key", "secret_key"})
        assert fake.pockets == ("main", "bot")
        status, created = await admin(
            http, fake, "POST", "orders", json={"count": 2, "pocket": "bot"}
        )
        assert status == 200
        status, more_keys = await admin(http, fake, "POST", "credentials", json={"pocket": "bot"})
        assert status == 200
        async with session_for(fake, keys=(keys["access_key"], keys["secret_key"])) as session:
            await session.cancel_orders(uuids=created["uuids"][:1])
        async with session_for(
            fake, keys=(more_keys["access_key"], more_keys["secret_key"])
        ) as session:
            assert [order.uuid for order in await session.open_orders()] == created["uuids"][1:]
        _, states = await admin(http, fake, "GET", "states", params={"pocket": "bot"})
        assert (states["wait"], states["cancel"]) == (1, 1)
        _, main_states = await admin(http, fake, "GET", "states")
        assert sum(main_states.values()) == 0
        _, stats = await admin(http, fake, "GET", "stats", params={"pocket": "bot"})
        assert (stats["admitted"], stats["groups"]["default"]["max_in_window"]) == (2, 2)
        _, main_stats = await admin(http, fake, "GET", "stats")
        assert main_stats["admitted"] == 0
        _, records = await admin(http, fake, "GET", "records")
        assert [record["pocket"] for record in records] == ["bot", "bot"]


async def test_the_admin_api_refuses_unknown_pockets_and_bad_names(
    http: aiohttp.ClientSession,
) -> None:
    """An unknown pocket is a 404 pocket_not_found; a bad name or field a 400; nothing is made."""
    async with FakeUpbit() as fake:
        unknown: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", "states", {"params": {"pocket": "nope"}}),
            ("GET", "stats", {"params": {"pocket": "nope"}}),
            ("POST", "orders", {"json": {"count": 1, "pocket": "nope"}}),
            ("POST", "credentials", {"json": {"pocket": "nope"}}),
        ]
        for method, path, options in unknown:
            status, body = await admin(http, fake, method, path, **options)
            assert (status, body["error"]["name"]) == (404, "pocket_not_found")
            assert "'nope'" in body["error"]["message"]
        for payload, message in [
            ({}, "name"),
            ({"name": 3}, "name"),
            ({"name": ""}, "non-empty"),
            ({"name": "main"}, "main pocket"),
            ({"name": "a", "colour": "red"}, "Unknown field(s): colour"),
            ({"name": "a", "can_order": "yes"}, "true or false"),
        ]:
            status, body = await admin(http, fake, "POST", "pockets", json=payload)
            assert (status, body["error"]["name"]) == (400, "validation_error")
            assert message in body["error"]["message"]
        status, body = await admin(http, fake, "POST", "orders", json={"pocket": 1})
        assert (status, body["error"]["name"]) == (400, "validation_error")
        assert fake.pockets == ("main",)


def test_bad_pocket_names_are_refused() -> None:
    """A pocket's name is a non-empty, unpadded string, not "main", not taken; at most five."""
    fake = FakeUpbit()
    for name, message in [
        ("", "non-empty"),
        (" a", "unpadded"),
        ("main", "main pocket"),
    ]:
        with pytest.raises(ValueError, match=message):
            fake.add_pocket(name)
    with pytest.raises(TypeError, match="string"):
        fake.add_pocket(None)  # type: ignore[arg-type]
    for number in range(5):
        fake.add_pocket(f"p{number}")
    with pytest.raises(ValueError, match="taken"):
        fake.add_pocket("p0")
    with pytest.raises(ValueError, match="at most 5 sub-pockets"):
        fake.add_pocket("p5")
    assert fake.pockets == ("main", "p0", "p1", "p2", "p3", "p4")


def test_an_unknown_pocket_is_refused_everywhere() -> None:
    """Every method that takes a pocket refuses one the fake does not have, naming the pockets."""
    fake = FakeUpbit()
    calls: list[Callable[[], object]] = [
        lambda: fake.add_credentials(pocket="nope"),
        lambda: fake.add_order(pocket="nope"),
        lambda: fake.add_orders(1, pocket="nope"),
        lambda: fake.state_counts("nope"),
        lambda: fake.stats("nope"),
        lambda: fake.max_in_window(pocket="nope"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="unknown pocket 'nope': use one of main"):
            call()
    assert sum(fake.state_counts().values()) == 0


def test_orders_are_found_in_whichever_pocket_holds_them() -> None:
    """order() and state() find an order of any pocket; each pocket counts only its own."""
    fake = FakeUpbit()
    fake.add_pocket("a")
    mine = fake.add_order("SGD-ETH", identifier="same", pocket="a")
    main = fake.add_order("SGD-ETH", identifier="same")
    assert fake.order(mine).identifier == fake.order(main).identifier == "same"
    assert fake.state(mine) == fake.state(main) == "wait"
    assert fake.state_counts("a")["wait"] == fake.state_counts()["wait"] == 1
