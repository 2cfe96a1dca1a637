"""Each rate-limit group spends its own budget: the transport maps a group to its limiter.

Upbit's batch cancel (``DELETE /v1/orders/open``) is in the ``order-cancel-all`` group, one call
per 2 s, beside the ``default`` group's 30 a second. A stand-in exchange records when each call
arrives; the pace is read there.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import redis.asyncio
from aiohttp import web

from upbit_cancel import HostLimiter, RedisLimiter, SlidingWindowLimiter, UpbitSession

SECRET = "s" * 40


@contextlib.asynccontextmanager
async def exchange(arrivals: list[tuple[str, float]]) -> AsyncIterator[str]:
    """A stand-in that answers every call with an empty cancel result and records the method
    and the time of each arrival."""
    loop = asyncio.get_running_loop()

    async def answer(request: web.Request) -> web.StreamResponse:
        arrivals.append((request.method, loop.time()))
        return web.json_response({"success": {"count": 0, "orders": []}, "failed": {}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_the_batch_cancel_has_a_budget_of_its_own() -> None:
    """Two batch cancels arrive a whole window of their group apart, while the default group's
    calls sent between them all go at once: neither group waits for the other."""
    arrivals: list[tuple[str, float]] = []
    async with (
        exchange(arrivals) as base_url,
        UpbitSession("a" * 40, SECRET, base_url=base_url) as session,
    ):
        await session.request("DELETE", "/v1/orders/open", params={"count": 300})
        second = asyncio.ensure_future(
            session.request("DELETE", "/v1/orders/open", params={"count": 300})
        )
        await asyncio.gather(
            *(session.request("GET", "/v1/orders/open", params={"page": n}) for n in range(30))
        )
        assert not second.done()  # waiting for its own group's slot, not the default's
        await second
    deletes = [at for method, at in arrivals if method == "DELETE"]
    gets = [at for method, at in arrivals if method == "GET"]
    assert len(deletes) == 2
    assert len(gets) == 30
    assert deletes[1] - deletes[0] >= 2.0
    assert max(gets) < deletes[1]


async def test_a_redis_limiter_keeps_every_groups_budget_in_redis(redis_url: str) -> None:
    """Given a RedisLimiter, the batch cancel's budget lives in the same Redis, apart."""
    async with RedisLimiter(redis_url, account="main") as limiter:
        other = limiter.for_group("order-cancel-all")
        assert isinstance(other, RedisLimiter)
        assert other.group == "order-cancel-all"
        assert (other.limit, other.window) == (1, 2.0)
        assert limiter.for_group("order-cancel-all") is other
        lease = await other.acquire()
        with lease:
            lease.sending()
        await other.flush()
        client = redis.asyncio.Redis.from_url(redis_url)
        keys = {key.decode() if isinstance(key, bytes) else key for key in await client.keys("*")}
        await client.aclose()
    assert any(key.endswith(":order-cancel-all") for key in keys)
    assert not any(key.endswith(":default") for key in keys)


async def test_sessions_of_one_key_share_every_groups_budget() -> None:
    """A second session of the key finds the first one's limiter of each group."""
    async with (
        UpbitSession("a" * 40, SECRET, base_url="http://127.0.0.1:1") as first,
        UpbitSession("a" * 40, SECRET, base_url="http://127.0.0.1:1") as second,
    ):
        assert first.limiter is second.limiter
        group = first._transport.limiter("order-cancel-all")
        assert second._transport.limiter("order-cancel-all") is group
        assert group is not first.limiter
        assert isinstance(group, HostLimiter)
        assert (group.limit, group.window, group.group) == (1, 2.0, "order-cancel-all")


async def test_keys_given_one_limiter_share_the_batch_cancels_budget_too() -> None:
    """The keys of one account given one limiter: their batch cancels arrive a window of their
    group apart, as one key's would."""
    arrivals: list[tuple[str, float]] = []
    limiter = SlidingWindowLimiter()
    async with (
        exchange(arrivals) as base_url,
        UpbitSession("a" * 40, SECRET, base_url=base_url, limiter=limiter) as first,
        UpbitSession("b" * 40, SECRET, base_url=base_url, limiter=limiter) as second,
    ):
        await asyncio.gather(
            first.request("DELETE", "/v1/orders/open"),
            second.request("DELETE", "/v1/orders/open"),
        )
    deletes = sorted(at for method, at in arrivals if method == "DELETE")
    assert len(deletes) == 2
    assert deletes[1] - deletes[0] >= 2.0


async def test_the_batch_cancel_spelled_otherwise_is_still_the_batch_cancel() -> None:
    """A path a server would decode or tidy into the batch cancel spends that group's budget."""
    arrivals: list[tuple[str, float]] = []
    spellings = ["/v1/orders/open", "/v1/orders/%6Fpen", "/v1//orders/open/"]
    async with (
        exchange(arrivals) as base_url,
        UpbitSession("a" * 40, SECRET, base_url=base_url) as session,
    ):
        await asyncio.gather(*(session.request("DELETE", path) for path in spellings))
    deletes = sorted(at for method, at in arrivals if method == "DELETE")
    assert len(deletes) == len(spellings)
    assert all(later - earlier >= 2.0 for earlier, later in itertools.pairwise(deletes))
