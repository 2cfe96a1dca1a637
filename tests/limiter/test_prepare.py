"""A session that warms up opens its budget's store ahead of the burst: the host's file, or a
connection to Redis with the scripts loaded, and the claim of the access key's name. The first
visit of the burst is then one transaction like the next ones."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from tests.conftest import RedisServer, SessionFor
from tests.limiter.test_redis import the_state
from upbit_cancel import BudgetUnavailableError, HostLimiter, RedisLimiter
from upbit_cancel._limiter.redis import store as redis_store
from upbit_cancel._limiter.shared.rules import State, decode
from upbit_cancel.testing import FakeUpbit


def names(directory: Path) -> list[tuple[str, float]]:
    """The claims of access keys' names the host's file holds: (owner, expiry)."""
    with contextlib.closing(sqlite3.connect(directory / "budgets.sqlite3")) as connection:
        rows = connection.execute("SELECT owner, expires FROM names").fetchall()
    return [(str(owner), float(expires)) for owner, expires in rows]


def budgets(directory: Path) -> list[tuple[str, State]]:
    """The budgets the host's file holds."""
    with contextlib.closing(sqlite3.connect(directory / "budgets.sqlite3")) as connection:
        rows = connection.execute("SELECT key, state FROM budgets").fetchall()
    states = [(str(key), decode(str(text))) for key, text in rows]
    return [(key, state) for key, state in states if state is not None]


async def script_loads(client: redis.asyncio.Redis) -> int:
    """How many times Redis was asked to load a script since it started."""
    stats: dict[str, Any] = await client.info("commandstats")
    return int(stats.get("cmdstat_script|load", {}).get("calls", 0))


async def test_a_warm_up_opens_the_hosts_file_and_claims_the_keys_name(
    tmp_path: Path, session_for: SessionFor
) -> None:
    """The file, the name's claim and the budget are made by warm_up(); the burst's first
    request claims nothing more and finds the budget made."""
    directory = tmp_path / "budgets"
    async with (
        FakeUpbit() as fake,
        HostLimiter(state_dir=directory) as limiter,
        session_for(fake, limiter=limiter) as session,
    ):
        assert not directory.exists()
        await session.warm_up(2, keep=False)
        [claim] = names(directory)
        [(_, made)] = budgets(directory)
        result = await session.cancel_orders(uuids=fake.add_orders(1))
        assert result.success.count == 1
        assert names(directory) == [claim]
        [(_, after)] = budgets(directory)
        assert (after.epoch, after.created) == (made.epoch, made.created)
        assert fake.access_key not in claim[0]


async def test_a_warm_up_loads_the_scripts_into_redis_and_claims_the_keys_name(
    redis_url: str, session_for: SessionFor
) -> None:
    """After warm_up() Redis knows the three scripts, holds the claim and the budget (made
    with its first pause running, and no share set aside): the burst's requests make Redis
    load nothing, and find the budget made."""
    client = redis.asyncio.Redis.from_url(redis_url)
    async with contextlib.aclosing(client):
        await client.script_flush()
        shas = [
            hashlib.sha1(script.encode()).hexdigest()
            for script in (redis_store._READ, redis_store._WRITE, redis_store._CLAIM)
        ]
        assert await client.script_exists(*shas) == [False, False, False]
        async with (
            FakeUpbit() as fake,
            RedisLimiter(redis_url) as limiter,
            session_for(fake, limiter=limiter) as session,
        ):
            await session.warm_up(2, keep=False)
            assert await client.script_exists(*shas) == [True, True, True]
            [claim] = await client.keys("upbit_cancel:key:*")
            loads = await script_loads(client)
            claimed_for = await client.ttl(claim)
            # The budget is made, joining nothing: no share is set aside for this process.
            made = await the_state(client)
            assert not made.members
            assert made.grants_from > made.created  # its first pause runs from the warm-up
            result = await session.cancel_orders(uuids=fake.add_orders(1))
            assert result.success.count == 1
            assert await script_loads(client) == loads
            assert await client.ttl(claim) <= claimed_for  # not claimed again
            after = await the_state(client)
            assert (after.epoch, after.created) == (made.epoch, made.created)


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
