"""A session that warms up has its budgets' store ready ahead of the burst: the host's file, or
a connection to Redis with the scripts loaded, the claim of the access key's name, and in
Redis every group's budget made if it holds none. The burst's first visit is then one
transaction, and finds a budget past its first pause."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from tests.conftest import RedisServer, SessionFor
from tests.helpers import until
from upbit_cancel import (
    BudgetUnavailableError,
    HostLimiter,
    RedisLimiter,
    SlidingWindowLimiter,
    UpbitSession,
)
from upbit_cancel._http import session as session_module
from upbit_cancel._limiter.redis import store as redis_store
from upbit_cancel._limiter.redis.store import RedisStore
from upbit_cancel._limiter.shared.rules import State, decode
from upbit_cancel.testing import FakeUpbit, PathProxy


def names(directory: Path) -> list[tuple[str, float]]:
    """The claims of access keys' names the host's file holds: (owner, expiry)."""
    with contextlib.closing(sqlite3.connect(directory / "budgets.sqlite3")) as connection:
        rows = connection.execute("SELECT owner, expires FROM names").fetchall()
    return [(str(owner), float(expires)) for owner, expires in rows]


def budgets(directory: Path) -> dict[str, State]:
    """The budgets the host's file holds, by the group that ends their key."""
    with contextlib.closing(sqlite3.connect(directory / "budgets.sqlite3")) as connection:
        rows = connection.execute("SELECT key, state FROM budgets").fetchall()
    found = {str(key).rpartition(":")[2]: decode(str(text)) for key, text in rows}
    return {group: state for group, state in found.items() if state is not None}


async def redis_budgets(client: redis.asyncio.Redis) -> dict[str, State]:
    """The budgets Redis holds, by the group that ends their key."""
    found: dict[str, State] = {}
    for key in await client.keys("upbit_cancel:{*"):
        value = await client.get(key)
        assert isinstance(value, bytes)
        state = decode(value.decode().partition("|")[2])
        assert state is not None
        name = key.decode() if isinstance(key, bytes) else str(key)
        found[name.rpartition(":")[2]] = state
    return found


async def script_loads(client: redis.asyncio.Redis) -> int:
    """How many times Redis was asked to load a script since it started."""
    stats: dict[str, Any] = await client.info("commandstats")
    return int(stats.get("cmdstat_script|load", {}).get("calls", 0))


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    async with contextlib.aclosing(client):
        yield client


async def test_a_warm_up_opens_the_hosts_file_and_claims_the_keys_name(
    tmp_path: Path, session_for: SessionFor
) -> None:
    """The file is made and the name claimed by warm_up(), and no budget is written (a budget
    the host's file makes grants at once: nothing to gain); the burst's first request claims
    nothing more."""
    directory = tmp_path / "budgets"
    async with (
        FakeUpbit() as fake,
        HostLimiter(state_dir=directory) as limiter,
        session_for(fake, limiter=limiter) as session,
    ):
        assert not directory.exists()
        await session.warm_up(2, keep=False)
        claims = names(directory)
        assert len(claims) == 2  # the given limiter's, for each group
        assert budgets(directory) == {}
        result = await session.cancel_orders(uuids=fake.add_orders(1))
        assert result.success.count == 1
        assert names(directory) == claims
        assert all(fake.access_key not in owner for owner, _ in claims)


async def test_a_warm_up_loads_the_scripts_into_redis_and_makes_every_groups_budget(
    redis_client: redis.asyncio.Redis,
    redis_url: str,
    session_for: SessionFor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After warm_up() Redis knows the three scripts, holds the name's claim and a budget for
    each group (made with its first pause running, no share set aside): the burst's requests
    make Redis load nothing, claim nothing again, and find the budget made."""
    client = redis_client
    await client.script_flush()
    shas = [
        hashlib.sha1(script.encode()).hexdigest()
        for script in (redis_store._READ, redis_store._WRITE, redis_store._CLAIM)
    ]
    assert await client.script_exists(*shas) == [False, False, False]
    claims: list[str] = []
    claim = RedisStore.claim

    async def counted(store: RedisStore, name: str, owner: str, seconds: float) -> str | None:
        claims.append(name)
        return await claim(store, name, owner, seconds)

    monkeypatch.setattr(RedisStore, "claim", counted)
    async with (
        FakeUpbit() as fake,
        RedisLimiter(redis_url) as limiter,
        session_for(fake, limiter=limiter) as session,
    ):
        await session.warm_up(2, keep=False)
        assert await client.script_exists(*shas) == [True, True, True]
        assert len(claims) == len(await client.keys("upbit_cancel:key:*")) == 2  # one a group
        loads = await script_loads(client)
        made = await redis_budgets(client)
        assert sorted(made) == ["default", "order-cancel-all"]
        assert not any(state.members for state in made.values())
        assert all(state.grants_from > state.created for state in made.values())
        result = await session.cancel_orders(uuids=fake.add_orders(1))
        assert result.success.count == 1
        assert await script_loads(client) == loads
        assert len(claims) == 2  # not claimed again
        after = (await redis_budgets(client))["default"]
        assert (after.epoch, after.created) == (made["default"].epoch, made["default"].created)


@pytest.mark.parametrize("held", ["a budget", "a text no version reads"])
async def test_a_budget_the_store_holds_is_never_written_by_getting_ready(
    held: str,
    redis_client: redis.asyncio.Redis,
    redis_url: str,
    session_for: SessionFor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Getting ready writes no budget that exists, readable or not (a write would make every
    other process's transaction under way start again, and the text of another version is for
    a visit to judge)."""
    client = redis_client
    async with FakeUpbit() as fake:
        if held == "a budget":
            async with (
                RedisLimiter(redis_url) as first,
                session_for(fake, limiter=first) as session,
            ):
                await session.cancel_orders(uuids=fake.add_orders(1))
            [key] = await client.keys("upbit_cancel:{*:default")
        else:
            async with (
                RedisLimiter(redis_url) as first,
                session_for(fake, limiter=first) as session,
            ):
                await session.warm_up(1, keep=False)
            [key] = await client.keys("upbit_cancel:{*:default")
            await client.set(key, "0123456789ab|not a state")
        stored = await client.get(key)
        read: list[str] = []
        transact = RedisStore.transact

        async def counted(store: RedisStore, key: str, change: Any) -> Any:
            read.append(key)
            return await transact(store, key, change)

        monkeypatch.setattr(RedisStore, "transact", counted)
        # As another process would: a limiter of the same key that never knew the budget.
        async with RedisLimiter(redis_url) as second:
            second.bind(fake.access_key)
            await second.prepare_budget()
            assert read  # it did look
            assert await client.get(key) == stored


async def test_the_keeper_keeps_the_budget_made(
    redis_client: redis.asyncio.Redis,
    redis_url: str,
    session_for: SessionFor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A warm session's upkeep gets the store ready again: a budget Redis lost while the session
    stood idle (a restart, say) is made again by the next round, its first pause running."""
    monkeypatch.setattr(session_module, "_WARM_EVERY", 0.05)
    async with (
        FakeUpbit() as fake,
        RedisLimiter(redis_url) as limiter,
        session_for(fake, limiter=limiter) as session,
    ):
        await session.warm_up(2)
        made = await redis_budgets(redis_client)
        await redis_client.flushall()
        async with asyncio.timeout(20):  # the state changes in another task
            while "default" not in (again := await redis_budgets(redis_client)):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert again["default"].epoch != made["default"].epoch


async def _silent_server() -> tuple[asyncio.Server, int]:
    """A server that takes connections and never answers: a Redis that hangs."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(1024):
                pass
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def test_closing_the_limiter_ends_getting_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    """Getting ready from a Redis that hangs ends when the limiter is closed, before the limiter
    lets go of its store: nothing of it outlives the limiter (it would write after the limiter
    left, on a client closed under it), and its caller is told nothing."""
    server, port = await _silent_server()
    async with server:
        limiter = RedisLimiter(f"redis://127.0.0.1:{port}/0", timeout=30)
        limiter.bind("a" * 40)
        still_getting_ready: list[bool] = []
        let_go = RedisStore.aclose

        async def recorded(store: RedisStore) -> None:
            still_getting_ready.append(bool(limiter._preparing))
            await let_go(store)

        monkeypatch.setattr(RedisStore, "aclose", recorded)
        getting_ready = asyncio.create_task(limiter.prepare_budget())
        await until(lambda: bool(limiter._preparing))
        await limiter.aclose()
        assert still_getting_ready == [False]
        await getting_ready  # returns: the caller was not cancelled


async def test_a_warm_up_waits_for_a_hanging_store_no_longer_than_within(
    session_for: SessionFor,
) -> None:
    """A Redis that hangs never holds the connections back, and warm_up() gives it no more
    than ``within``: the connections are open, the budget left for the first request."""
    server, port = await _silent_server()
    async with (
        server,
        FakeUpbit() as fake,
        PathProxy(fake.base_url) as proxy,
        RedisLimiter(f"redis://127.0.0.1:{port}/0", timeout=60) as limiter,
        UpbitSession(
            fake.access_key, fake.secret_key, base_url=proxy.base_url, limiter=limiter
        ) as session,
    ):
        async with asyncio.timeout(30):
            await session.warm_up(2, within=0.5, keep=False)
        assert proxy.connections >= 2
        assert not limiter._preparing


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("store", ["refusing", "out of reach"])
async def test_a_store_that_cannot_be_opened_is_left_for_the_first_request(
    store: str, session_for: SessionFor, caplog: pytest.LogCaptureFixture
) -> None:
    """warm_up() still opens the connections and raises nothing for the store: the first
    request meets the store as it always did (a refusal is an error that says what to check).
    The URL's password appears in no log record."""
    server = RedisServer("--requirepass", "hunter2-right")
    server.start()
    try:
        port = server.port if store == "refusing" else _closed_port()
        url = f"redis://:hunter2-wrong@127.0.0.1:{port}/0"
        async with (
            FakeUpbit() as fake,
            RedisLimiter(url, timeout=0.5) as limiter,
            session_for(fake, limiter=limiter) as session,
        ):
            with caplog.at_level(logging.DEBUG, logger="upbit_cancel"):
                await session.warm_up(2, keep=False)
            assert "the budget's store was not opened ahead" in caplog.text
            if store == "refusing":
                with pytest.raises(BudgetUnavailableError, match="password"):
                    await session.cancel_orders(uuids=fake.add_orders(1))
            assert not fake.records
        assert "hunter2" not in caplog.text
    finally:
        server.stop()


async def test_a_warm_up_claims_no_limiter_another_session_of_the_key_gives_its_own(
    redis_url: str, session_for: SessionFor
) -> None:
    """Getting ready claims nothing in the loop's registry: a second session of the key, sharing
    the first one's limiter but giving its own for the batch cancel, still may, after the first
    warmed up."""
    async with (
        FakeUpbit() as fake,
        RedisLimiter(redis_url) as shared,
        session_for(fake, limiter=shared) as first,
        session_for(
            fake,
            limiter=shared,
            group_limiters={
                "order-cancel-all": SlidingWindowLimiter(1, 2.0, group="order-cancel-all")
            },
        ) as second,
    ):
        await first.warm_up(2, keep=False)
        fake.add_orders(3)
        result = await second.cancel_open_orders()
        assert result.success.count == 3


async def test_a_limiter_given_for_the_batch_cancel_is_readied_under_the_key(
    redis_client: redis.asyncio.Redis, redis_url: str, session_for: SessionFor
) -> None:
    """A store's limiter given in group_limiters is readied for this access key, as its first
    request would use it: its budget and its claim sit beside the default group's."""
    async with (
        FakeUpbit() as fake,
        RedisLimiter(redis_url) as limiter,
        RedisLimiter(redis_url) as other,
        session_for(
            fake,
            limiter=limiter,
            group_limiters={"order-cancel-all": other.for_group("order-cancel-all")},
        ) as session,
    ):
        await session.warm_up(2, keep=False)
        keys = sorted(
            key.decode() if isinstance(key, bytes) else str(key)
            for key in await redis_client.keys("upbit_cancel:{*")
        )
        assert [key.rpartition(":")[2] for key in keys] == ["default", "order-cancel-all"]
        assert len({key.rpartition(":")[0] for key in keys}) == 1  # one account's
        assert len(await redis_client.keys("upbit_cancel:key:*")) == 2
