"""RedisLimiter against a real redis-server on loopback: one budget for every process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from tests.conftest import RedisServer, SessionFor
from tests.helpers import until
from tests.limiter.workers import workers_of
from upbit_cancel import (
    BatchCanceller,
    BlockedError,
    Feedback,
    RedisLimiter,
    SessionClosedError,
    UpbitSession,
)
from upbit_cancel._limiter.redis.store import RedisStore
from upbit_cancel._limiter.shared.rules import State, decode
from upbit_cancel._limiter.shared.store import StoreUnavailableError
from upbit_cancel.instrumentation import BudgetStoreChanged, set_instruments
from upbit_cancel.testing import FakeUpbit, Faults, RequestRecord, most_in_window

ROOT = Path(__file__).resolve().parents[2]
UNKNOWN = "0000abcd-0000-4000-8000-000000000000"


async def queued(client: redis.asyncio.Redis) -> int:
    """Tickets waiting in line in every budget Redis holds: only Redis can tell."""
    count = 0
    for key in await client.keys("upbit_cancel:{*"):
        value = await client.get(key)
        if value is not None:
            text = value.decode() if isinstance(value, bytes) else str(value)
            state = decode(text.partition("|")[2])
            count += 0 if state is None else sum(run[2] for run in state.queue)
    return count


async def the_state(client: redis.asyncio.Redis) -> State:
    """The one budget's state Redis holds."""
    [key] = await client.keys("upbit_cancel:{*")
    value = await client.get(key)
    assert isinstance(value, bytes)
    state = decode(value.decode().partition("|")[2])
    assert state is not None
    return state


def incidents(records: list[RequestRecord], window: float = 1.0) -> int:
    """Groups of 429s: one more than a window after the previous 429 starts a new group."""
    count, last = 0, float("-inf")
    for arrival in sorted(record.arrival for record in records if record.status == 429):
        if arrival - last > window:
            count += 1
        last = arrival
    return count


async def test_two_processes_of_one_account_share_one_budget(
    redis_url: str, session_for: SessionFor
) -> None:
    """Two limiters (as two processes would have), two keys of one account: 30 a second in all."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(120)
        other = fake.add_credentials()
        async with (
            RedisLimiter(redis_url, account="main") as first,
            RedisLimiter(redis_url, account="main") as second,
            session_for(fake, limiter=first) as one,
            session_for(fake, limiter=second, keys=other) as two,
        ):
            await asyncio.gather(
                BatchCanceller(one).cancel(uuids=uuids[:60]),
                *(two.cancel_orders(uuids=[uuid]) for uuid in uuids[60:]),
            )
        assert fake.state_counts()["wait"] == 0
        assert fake.stats()["rejected_429"] == 0
        assert fake.max_in_window() <= 30


async def test_the_keys_carry_a_hash_tag_and_never_the_access_key(
    redis_url: str, session_for: SessionFor
) -> None:
    """One hash tag per account (usable on Redis Cluster), keyed by a hash of the access key."""
    async with FakeUpbit() as fake, RedisLimiter(redis_url) as limiter:
        async with session_for(fake, limiter=limiter) as session:
            await session.cancel_orders(uuids=[UNKNOWN])
        client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        keys = [str(key) for key in await client.keys("*")]
        await client.aclose()
    budgets = [key for key in keys if not key.startswith("upbit_cancel:key:")]
    claims = [key for key in keys if key.startswith("upbit_cancel:key:")]
    assert budgets
    assert claims  # which name the key's budget is kept under
    assert len({key.split("}")[0] for key in budgets}) == 1
    assert all(key.startswith("upbit_cancel:{") for key in budgets)
    assert not any(fake.access_key in key for key in keys)


async def test_a_block_met_by_one_process_stops_every_process(
    redis_url: str, session_for: SessionFor
) -> None:
    """A 418 answered to one limiter's request: the other's requests are refused unsent."""
    async with FakeUpbit() as fake:
        other = fake.add_credentials()
        fake.queue_response(418, {"error": {"name": "blocked", "message": "blocked for 30 s"}})
        async with (
            RedisLimiter(redis_url, account="main") as first,
            RedisLimiter(redis_url, account="main") as second,
            session_for(fake, limiter=first) as one,
            session_for(fake, limiter=second, keys=other) as two,
        ):
            with pytest.raises(BlockedError):
                await one.cancel_orders(uuids=[UNKNOWN])
            await first.flush()
            with pytest.raises(BlockedError) as caught:
                await two.cancel_orders(uuids=[UNKNOWN])
        assert caught.value.retry_after > 25
        assert len(fake.records) == 1


async def test_a_429_met_by_one_process_pauses_every_process(redis_url: str) -> None:
    """Someone else spends the budget: every process of the account pauses together."""
    async with (
        RedisLimiter(redis_url, account="main") as first,
        RedisLimiter(redis_url, account="main") as second,
    ):
        lease = await first.acquire()
        with lease:
            lease.sending()
            lease.answered(Feedback(429))
        await first.flush()
        with pytest.raises(TimeoutError):
            # The pause lasts at least a window: nothing is granted meanwhile.
            await asyncio.wait_for(second.acquire(), timeout=0.3)


async def test_waiting_processes_are_served_in_the_order_they_asked(redis_url: str) -> None:
    """When the budget is full, a slot goes to whoever reached Redis first, not to the nearest."""
    async with (
        RedisLimiter(redis_url, account="main", limit=1, window=0.3) as first,
        RedisLimiter(redis_url, account="main", limit=1, window=0.3) as second,
    ):
        lease = await first.acquire()
        with lease:
            lease.sending()
            lease.answered(Feedback(200))
        served: list[str] = []

        async def take(limiter: RedisLimiter, name: str) -> None:
            lease = await limiter.acquire()
            served.append(name)
            lease.release()

        early = asyncio.ensure_future(take(second, "second, earlier"))
        client = redis.asyncio.Redis.from_url(redis_url)
        # Until the earlier ticket is in line: only Redis can tell.
        while not await queued(client):  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        await client.aclose()
        late = asyncio.ensure_future(take(first, "first, later"))
        await asyncio.gather(early, late)
    assert served == ["second, earlier", "first, later"]


@pytest.mark.processes
async def test_a_member_that_loses_redis_waits_then_spends_its_share_then_goes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis goes away under a member: nothing is granted until the others can have noticed
    (a membership and the time a slot may still count), then its share and never more, one
    warning; once Redis answers, Redis grants again. The instruments are told each change."""
    caplog.set_level(logging.WARNING, logger="upbit_cancel")
    changes: list[object] = []
    set_instruments([changes.append])
    server = RedisServer()
    server.start()
    try:
        async with RedisLimiter(server.url, fallback_limit=3, timeout=0.2) as limiter:
            (await limiter.acquire()).release()
            await asyncio.sleep(2 * 0.5 + 0.1)  # a member long enough for every other to know
            (await limiter.acquire()).release()
            assert limiter.fallback_share == 3
            server.stop()
            loop = asyncio.get_running_loop()
            lost = loop.time()
            leases = [await limiter.acquire() for _ in range(3)]
            first = loop.time() - lost
            assert limiter.degraded
            assert all(lease.handle is None for lease in leases)  # the fallback's
            # A membership (2 s) and the longest a granted slot may count (3.01 s + 1 s).
            assert first >= 2.0 + 4.0
            for lease in leases:
                with lease:
                    lease.sending()
                    lease.answered(Feedback(200))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(limiter.acquire(), timeout=0.3)
            server.start()
            async with asyncio.timeout(10):
                while (lease := await limiter.acquire()).handle is None:
                    lease.release()  # never sent
            assert not limiter.degraded
            lease.release()
    finally:
        server.stop()
        set_instruments([])
    assert caplog.text.count("did not answer (ConnectionError)") == 1
    assert caplog.text.count("answers again; the shared") == 1
    assert [e for e in changes if isinstance(e, BudgetStoreChanged)] == [
        BudgetStoreChanged("default", "redis", "out_of_reach", share=3),
        BudgetStoreChanged("default", "redis", "back"),
        # Restarted without persistence, Redis lost the budget's state.
        BudgetStoreChanged("default", "redis", "lost"),
    ]


async def test_a_restart_of_redis_mid_run_loses_no_id(session_for: SessionFor) -> None:
    """Redis stops and comes back while a batch runs: every id settled, the run completes."""
    server = RedisServer()
    server.start()
    try:
        async with FakeUpbit(faults=Faults(jitter_in=0.005)) as fake:
            uuids = fake.add_orders(900)
            async with (
                RedisLimiter(server.url, account="main", timeout=0.2) as limiter,
                session_for(fake, limiter=limiter) as session,
            ):
                batch = asyncio.ensure_future(BatchCanceller(session).cancel(uuids=uuids))
                await fake.wait_for(lambda fake: fake.received >= 10)
                server.stop()
                await fake.wait_for(lambda fake: fake.received >= 25)
                server.start()
                result = await batch
            assert result.success.count == 900
            assert fake.state_counts()["wait"] == 0
            assert incidents(fake.records) <= 1
    finally:
        server.stop()


@pytest.mark.processes
async def test_a_redis_turned_read_only_falls_back_and_settles_every_id(
    caplog: pytest.LogCaptureFixture,
    session_for: SessionFor,
) -> None:
    """Redis answers with errors (a read-only replica after a failover): the batch goes on with
    the local share, back on Redis once it is writable, every id settled, one warning."""
    server = RedisServer()
    server.start()
    nowhere = RedisServer()  # never started: the replica never reaches its master
    admin = redis.asyncio.Redis.from_url(server.url)
    try:
        async with FakeUpbit(faults=Faults(jitter_in=0.005)) as fake:
            uuids = fake.add_orders(20 * 60)
            async with (
                RedisLimiter(server.url, account="main") as limiter,
                session_for(fake, limiter=limiter) as session,
            ):
                batch = asyncio.ensure_future(BatchCanceller(session).cancel(uuids=uuids))
                await fake.wait_for(lambda fake: fake.received >= 10)
                await admin.replicaof("127.0.0.1", str(nowhere.port))
                await until(lambda: limiter.degraded)
                read_only = fake.received
                await fake.wait_for(lambda fake: fake.received >= read_only + 3)
                await admin.replicaof("NO", "ONE")
                result = await asyncio.wait_for(batch, timeout=60)
            assert result.success.count == len(uuids)
            assert fake.state_counts()["wait"] == 0
    finally:
        await admin.aclose()
        server.stop()
    assert caplog.text.count("did not answer (ReadOnlyError)") == 1
    assert "answers again" in caplog.text


@pytest.mark.processes
async def test_requests_waiting_on_the_fallback_go_back_to_redis_when_it_answers(
    session_for: SessionFor,
) -> None:
    """Redis stops answering under a batch, then answers again: the local share counts what
    was taken through Redis, and the requests queued on it are granted by Redis again once it
    answers, so neither switch overruns the budget."""
    server = RedisServer()
    server.start()
    assert server.process is not None
    try:
        async with FakeUpbit(faults=Faults(jitter_in=0.005)) as fake:
            uuids = fake.add_orders(20 * 240)
            async with (
                RedisLimiter(server.url, account="main") as limiter,
                session_for(fake, limiter=limiter) as session,
            ):
                batch = asyncio.ensure_future(BatchCanceller(session).cancel(uuids=uuids))
                await fake.wait_for(lambda fake: fake.received >= 45)
                server.process.send_signal(signal.SIGSTOP)
                try:
                    await until(lambda: limiter.degraded)
                    stopped = fake.received
                    # Two windows' worth of the fallback's share: its queue is long by now.
                    await fake.wait_for(lambda fake: fake.received >= stopped + 10)
                finally:
                    server.process.send_signal(signal.SIGCONT)
                resumed = asyncio.get_running_loop().time()
                result = await asyncio.wait_for(batch, timeout=60)
                assert not limiter.degraded
            assert result.success.count == len(uuids)
            await fake.wait_for(lambda fake: fake.in_transit == 0)
        # Neither when the local share took over (it counts the slots taken through Redis)
        # nor when Redis took over again.
        assert [record.status for record in fake.records if record.status == 429] == []
        after = [record for record in fake.records if record.arrival >= resumed]
        assert most_in_window([record.arrival for record in after if record.admitted]) <= 30
    finally:
        server.stop()


async def test_the_timeout_bounds_every_call_on_a_client_given_too() -> None:
    """A client made elsewhere (without socket timeouts), Redis stops answering: the limiter
    knows after about `timeout`, as with a client the limiter makes."""
    server = RedisServer()
    server.start()
    assert server.process is not None
    client = redis.asyncio.Redis.from_url(server.url)
    try:
        async with RedisLimiter(client, account="main", timeout=0.2) as limiter:
            (await limiter.acquire()).release()
            server.process.send_signal(signal.SIGSTOP)
            waiting = asyncio.ensure_future(limiter.acquire())
            try:
                async with asyncio.timeout(2.0):  # redis-py alone waits 5 s or more
                    await until(lambda: limiter.degraded)
            finally:
                server.process.send_signal(signal.SIGCONT)
            (await waiting).release()
    finally:
        await client.aclose()
        server.stop()


@pytest.mark.processes
async def test_a_faster_process_joining_later_lengthens_the_holds_already_set(
    redis_url: str,
    session_for: SessionFor,
) -> None:
    """One process on a slow path (80 ms each way) spends the budget, then one next to the
    exchange starts: the slower one's holds grow to what the faster path needs, no 429."""
    async with FakeUpbit() as fake:
        fast_keys = fake.add_credentials()
        fake.set_faults(Faults(latency_in=0.08, latency_out=0.08), access_key=fake.access_key)
        slow_uuids, fast_uuids = fake.add_orders(20 * 90), fake.add_orders(20 * 60)
        async with (
            RedisLimiter(redis_url, account="main") as slow_limiter,
            RedisLimiter(redis_url, account="main") as fast_limiter,
            session_for(fake, limiter=slow_limiter) as slow,
            session_for(fake, limiter=fast_limiter, keys=fast_keys) as fast,
        ):
            await BatchCanceller(slow).cancel(uuids=slow_uuids)
            await BatchCanceller(fast).cancel(uuids=fast_uuids)
        await fake.wait_for(lambda fake: fake.in_transit == 0)
        assert fake.state_counts()["wait"] == 0
        assert fake.stats()["rejected_429"] == 0
        assert fake.max_in_window() <= 30


async def test_a_waiter_given_up_on_leaves_the_line_in_redis_at_once(redis_url: str) -> None:
    """A cancelled acquire takes its ticket out of the shared line, rather than leaving it at
    the head, where it would hold the next free slot back from every process."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with (
            RedisLimiter(redis_url, account="main", limit=1) as first,
            RedisLimiter(redis_url, account="main", limit=1) as second,
        ):
            lease = await first.acquire()
            waiting = asyncio.ensure_future(second.acquire())
            async with asyncio.timeout(10):
                while not await queued(client):  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            async with asyncio.timeout(1):  # nobody else asks: it goes at the next visit
                while await queued(client):  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            lease.release()
    finally:
        await client.aclose()


async def test_an_unexpected_failure_reaches_every_waiter_and_is_logged(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault nobody foresaw stops the limiter's driver: every waiter raises it, none hangs."""

    async def broken(*_: Any) -> Any:
        raise ZeroDivisionError("a fault nobody foresaw")

    async with RedisLimiter(redis_url, account="main") as limiter:
        monkeypatch.setattr(RedisStore, "transact", broken)
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(limiter.acquire() for _ in range(3)), return_exceptions=True),
            timeout=10,
        )
    assert [type(outcome) for outcome in outcomes] == [ZeroDivisionError] * 3
    assert [record.levelno for record in caplog.records] == [logging.ERROR]


def test_without_redis_py_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import upbit_cancel` needs no redis; RedisLimiter says which extra to install."""
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"\[redis\]"):
        RedisLimiter("redis://127.0.0.1:6379/0")


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"redis": "http://host"}, ValueError, "redis://"),
        ({"redis": 5}, TypeError, "redis"),
        ({"account": ""}, TypeError, "account"),
        ({"prefix": "a{b}"}, ValueError, "prefix"),
        ({"fallback_limit": -1}, ValueError, "fallback_limit"),
        ({"limit": 0}, ValueError, "limit"),
        ({"timeout": -1}, ValueError, "timeout"),
    ],
)
def test_bad_settings_are_refused(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Settings that cannot work fail at once, naming the setting."""
    options: dict[str, Any] = {"redis": "redis://127.0.0.1:6379/0"} | arguments
    with pytest.raises(error, match=message):
        RedisLimiter(**options)


async def test_three_processes_cancel_together_within_one_budget(
    redis_url: str, tmp_path: Path
) -> None:
    """Three worker processes, 900 orders each: all canceled, never over 30 in a second."""
    async with (
        FakeUpbit(faults=Faults(jitter_in=0.01)) as fake,
        workers_of(fake, tmp_path) as workers,
    ):
        await workers.start(orders=900, redis_url=redis_url, count=3)
        await workers.go()
        results = await workers.outcomes()
        assert [result["success"] for result in results] == [900] * 3
        assert all(result["placed"] for result in results)
        assert fake.state_counts()["wait"] == 0
        assert fake.stats()["rejected_429"] == 0
        assert fake.max_in_window() <= 30


async def test_a_killed_process_leaves_no_stuck_budget(redis_url: str, tmp_path: Path) -> None:
    """SIGKILL one worker mid-batch: the others finish without a 429; its slots come back."""
    async with (
        FakeUpbit(faults=Faults(jitter_in=0.01)) as fake,
        # 60 requests each: the first to start may take a whole idle window, never all of them.
        workers_of(fake, tmp_path) as workers,
    ):
        doomed, *others = await workers.start(orders=1200, redis_url=redis_url, count=3)
        await workers.go()
        await fake.wait_for(lambda fake: fake.received >= 40)
        assert doomed.returncode is None, "the worker to kill ended on its own"
        doomed.send_signal(signal.SIGKILL)
        await doomed.wait()
        results = await workers.outcomes(others)
        assert [result["success"] for result in results] == [1200] * 2
        assert fake.stats()["rejected_429"] == 0
        assert fake.max_in_window() <= 30
    # Once the dead process's leases expire, a fresh process gets the budget but the dead one's
    # fallback share (5), reserved in case it only lost Redis, until the reservation ends.
    async with RedisLimiter(redis_url, account="main") as limiter:
        leases = await asyncio.wait_for(
            asyncio.gather(*(limiter.acquire() for _ in range(25))), timeout=15
        )
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(limiter.acquire(), timeout=0.5)
        for lease in leases:
            lease.release()


async def test_a_process_far_back_in_line_waits_instead_of_asking_again_and_again(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process whose requests wait behind another's, several windows' worth, is told so: it
    asks again ten times a second at most, not every few milliseconds."""
    asked = 0
    client = redis.asyncio.Redis.from_url(redis_url)
    transact = RedisStore.transact

    async def counted(store: RedisStore, key: str, change: Any) -> Any:
        nonlocal asked
        asked += store is behind._store
        return await transact(store, key, change)

    monkeypatch.setattr(RedisStore, "transact", counted)

    async def take(limiter: RedisLimiter) -> None:
        lease = await limiter.acquire()
        with lease:
            lease.sending()
            lease.answered(Feedback(200))

    try:
        async with (
            RedisLimiter(redis_url, account="main", limit=5, window=0.5) as first,
            RedisLimiter(redis_url, account="main", limit=5, window=0.5) as ahead,
            RedisLimiter(client, account="main", limit=5, window=0.5) as behind,
        ):
            await asyncio.gather(*(take(first) for _ in range(5)))
            waiting_ahead = asyncio.gather(*(take(ahead) for _ in range(5)))
            # Until the five are in line: only Redis can tell.
            while await queued(client) < 5:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            asked = 0
            # Five more behind those five and the five held: two windows (1 s) to wait.
            await asyncio.gather(*(take(behind) for _ in range(5)))
            await waiting_ahead
    finally:
        await client.aclose()
    # Asking every 20 ms would be about fifty calls; ten a second at most, about twenty.
    assert asked <= 30


async def test_a_limiter_closed_under_a_batch_settles_every_id_and_logs_no_error(
    redis_url: str, caplog: pytest.LogCaptureFixture, session_for: SessionFor
) -> None:
    """The caller closes its RedisLimiter mid-batch: what was sent is reported, the rest is
    unresolved with a clear error; no exception group, no failed task in the log."""
    caplog.set_level(logging.WARNING, logger="upbit_cancel")
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(2000)
        limiter = RedisLimiter(redis_url, account="main")
        async with session_for(fake, limiter=limiter) as session:
            batch = asyncio.ensure_future(BatchCanceller(session).cancel(uuids=uuids))
            await fake.wait_for(lambda fake: fake.received >= 40)
            await limiter.aclose()
            result = await batch
    placed = [order.uuid for order in (*result.success.orders, *result.failed.orders)]
    placed += [entry.id for entry in result.unresolved]
    assert sorted(placed) == sorted(uuids)
    assert result.success.count == fake.state_counts()["cancel"]
    assert result.unresolved
    assert all(isinstance(entry.error, SessionClosedError) for entry in result.unresolved)
    assert "closed" in str(result.unresolved[0].error)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_a_limiter_closed_with_requests_waiting_and_in_flight_can_be_replaced(
    redis_url: str,
) -> None:
    """Closed while one request waits and another is in flight: the waiter is told, and once
    the request in flight ends, a new session and limiter of the key start in the same loop."""
    keys = ("A" * 40, "S" * 40)
    admin = redis.asyncio.Redis.from_url(redis_url)
    try:
        first = RedisLimiter(redis_url, account="main", limit=1)
        async with UpbitSession(*keys, limiter=first):
            lease = await first.acquire()
            lease.sending()
            waiting = asyncio.ensure_future(first.acquire())
            while not await queued(admin):  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            await first.aclose()
            with pytest.raises(SessionClosedError, match="closed while the request waited"):
                await waiting
            lease.answered(Feedback(200))
            lease.release()
        assert first.idle
        async with (
            RedisLimiter(redis_url, account="main", limit=1) as second,
            UpbitSession(*keys, limiter=second),
        ):
            pass
    finally:
        await admin.aclose()


async def test_a_release_failing_as_the_limiter_closes_logs_no_error(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stalls while a release is on its way and the limiter closes meanwhile: the release
    gives up quietly (its slot lapses in Redis), no failed task in the log."""
    caplog.set_level(logging.WARNING, logger="upbit_cancel")
    admin = redis.asyncio.Redis.from_url(redis_url)
    try:
        limiter = RedisLimiter(redis_url, account="main", timeout=0.2)
        lease = await limiter.acquire()
        lease.sending()
        lease.answered(Feedback(200))
        await admin.client_pause(500, all=True)
        lease.release()  # told to Redis in the background, which does not answer in time
        await asyncio.sleep(0)
        await limiter.aclose()
    finally:
        await admin.aclose()
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.processes
async def test_releases_told_as_the_limiter_closes_reach_redis(redis_url: str) -> None:
    """Leases released just before ``aclose()``, while a visit carrying them is on its way:
    they reach Redis with the leaving visit, never left active to lapse on their own."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        for yields in range(8):  # the visit caught at each of its first steps
            await client.flushdb()
            limiter = RedisLimiter(redis_url, account="main")
            leases = await asyncio.gather(*(limiter.acquire() for _ in range(5)))
            for lease in leases:
                lease.sending()
            await asyncio.sleep(0.1)  # answered a moment later
            for lease in leases:
                lease.release()  # the driver sets out to tell Redis
            for _ in range(yields):
                await asyncio.sleep(0)
            await limiter.aclose()
            state = await the_state(client)
            assert state.active == {}
            assert len(state.holds) == 5
    finally:
        await client.aclose()


def answer_held_back(monkeypatch: pytest.MonkeyPatch, answer: asyncio.Event) -> asyncio.Event:
    """Redis applies the next visit's write, but its answer comes back only once ``answer`` is
    set; the event returned is set when the write is applied."""
    call = RedisStore._call
    written = asyncio.Event()

    async def held_back(store: RedisStore, script: Any, keys: Any, args: Any) -> Any:
        result = await call(store, script, keys, args)
        if script is store._write and not written.is_set():
            written.set()
            await answer.wait()
        return result

    monkeypatch.setattr(RedisStore, "_call", held_back)
    return written


async def test_a_visit_under_way_as_the_limiter_closes_is_not_told_twice(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``aclose()`` while a visit's write is applied but its answer not back yet: the visit
    ends first, and its releases are not told again by the leaving visit (each slot held once,
    not twice)."""
    client = redis.asyncio.Redis.from_url(redis_url)
    answer = asyncio.Event()
    try:
        limiter = RedisLimiter(redis_url, account="main")
        leases = await asyncio.gather(*(limiter.acquire() for _ in range(5)))
        await limiter.flush()
        for lease in leases:
            lease.sending()
        written = answer_held_back(monkeypatch, answer)
        for lease in leases:
            lease.release()  # the driver sets out to tell Redis
        await written.wait()
        closing = asyncio.create_task(limiter.aclose())
        await until(lambda: limiter._closed)  # aclose reaches the visit under way
        answer.set()
        await closing
        state = await the_state(client)
        assert state.active == {}
        assert len(state.holds) == 5
    finally:
        await client.aclose()


async def test_a_close_cancelled_while_it_waits_for_a_visit_still_leaves_the_budget(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``aclose()`` cancelled (a timeout, a shutdown) while it lets a visit end: the limiter
    still leaves the budget and lets go of Redis."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        limiter = RedisLimiter(redis_url, account="main")
        lease = await limiter.acquire()
        await limiter.flush()
        lease.sending()
        written = answer_held_back(monkeypatch, asyncio.Event())  # never set: no answer
        lease.release()  # the driver sets out to tell Redis
        await written.wait()
        closing = asyncio.create_task(limiter.aclose())
        await until(lambda: limiter._closed)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        state = await the_state(client)
        assert state.members == {}
        assert state.active == {}
    finally:
        await client.aclose()


@pytest.mark.processes
async def test_a_write_whose_answer_is_lost_delays_the_fallback_from_its_reading(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis applies a visit's write but its answer is lost: the membership may have been
    renewed then, so the fallback waits a membership and a settle from that visit's reading,
    not from the last visit whose answer came back."""
    async with RedisLimiter(redis_url, account="main", timeout=0.2) as limiter:
        (await limiter.acquire()).release()
        await asyncio.sleep(1.1)  # a member long enough to have a share of its own
        (await limiter.acquire()).release()
        await limiter.flush()
        call = RedisStore._call
        written: list[bool] = []
        lost_at: list[float] = []

        async def answer_lost(store: RedisStore, script: Any, keys: Any, args: Any) -> Any:
            # One write applied, its answer lost; then Redis answers nothing.
            if written:
                raise StoreUnavailableError("Redis did not answer (ConnectionError)")
            answer = await call(store, script, keys, args)
            if script is store._write:
                written.append(True)
                lost_at.append(asyncio.get_running_loop().time())
                raise StoreUnavailableError("Redis did not answer (TimeoutError)")
            return answer

        monkeypatch.setattr(RedisStore, "_call", answer_lost)
        await until(lambda: limiter.degraded)  # the next renewal's write was the lost one
        lease = await asyncio.wait_for(limiter.acquire(), timeout=15)
        waited = asyncio.get_running_loop().time() - lost_at[0]
        lease.release()
    # The membership (2 s) and a settle (4.01 s) from the lost write's reading.
    assert waited >= 2.0 + 4.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def cluster(directory: Path, nodes: int = 3) -> AsyncIterator[list[RedisServer]]:
    """A Redis Cluster of ``nodes`` masters on loopback, its slots split between them."""
    # A node's bus port defaults to its port plus 10,000, which may not exist or be free.
    buses = [free_port() for _ in range(nodes)]
    servers = [
        RedisServer(
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            str(buses[index]),
            "--cluster-config-file",
            str(directory / f"nodes-{index}.conf"),
            "--dir",
            str(directory),
        )
        for index in range(nodes)
    ]
    clients: list[redis.asyncio.Redis] = []
    try:
        for server in servers:
            server.start()
            clients.append(redis.asyncio.Redis.from_url(server.url))
        size = 16384 // nodes
        for index, client in enumerate(clients):
            last = 16383 if index == nodes - 1 else (index + 1) * size - 1
            await client.execute_command(  # type: ignore[no-untyped-call]
                "CLUSTER ADDSLOTSRANGE", index * size, last
            )
            if index:
                await clients[0].execute_command(  # type: ignore[no-untyped-call]
                    "CLUSTER MEET", "127.0.0.1", servers[index].port, buses[index]
                )

        async def ready() -> bool:
            for client in clients:
                info = await client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
                fields = {str(name): str(value) for name, value in dict(info).items()}
                if fields.get("cluster_state") != "ok":
                    return False
                if fields.get("cluster_known_nodes") != str(nodes):
                    return False
            return True

        async with asyncio.timeout(20):
            while not await ready():  # noqa: ASYNC110 - the nodes agree in their own time
                await asyncio.sleep(0.05)
        yield servers
    finally:
        for client in clients:
            await client.aclose()
        for server in servers:
            server.stop()


async def test_a_redis_cluster_client_keeps_the_budget_across_its_nodes(
    tmp_path: Path, session_for: SessionFor
) -> None:
    """Given a RedisCluster client, two limiters of one account (as two processes would be)
    share one budget on a real three-node cluster."""
    async with cluster(tmp_path) as servers:
        port = servers[0].port
        clients = [RedisCluster(host="127.0.0.1", port=port) for _ in range(2)]
        try:
            async with FakeUpbit(faults=Faults(jitter_in=0.005)) as fake:
                uuids = fake.add_orders(1_200)
                other = fake.add_credentials()
                async with (
                    RedisLimiter(clients[0], account="main") as first,
                    RedisLimiter(clients[1], account="main") as second,
                    session_for(fake, limiter=first) as one,
                    session_for(fake, limiter=second, keys=other) as two,
                ):
                    results = await asyncio.gather(
                        BatchCanceller(one).cancel(uuids=uuids[:600]),
                        BatchCanceller(two).cancel(uuids=uuids[600:]),
                    )
                    assert not first.degraded
                    assert not second.degraded
                assert most_in_window(record.arrival for record in fake.records) <= 30
                assert [result.success.count for result in results] == [600, 600]
                assert fake.stats()["rejected_429"] == 0
        finally:
            for client in clients:
                await client.aclose()
