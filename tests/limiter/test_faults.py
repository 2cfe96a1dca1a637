"""One budget per account across processes, under faults: real worker processes, real
redis-server processes killed, stopped, restarted empty, evicting, refusing, or reached
through a proxy that cuts one process off. The rate is measured at the fake exchange's
arrivals: at most 30 in any second, and every id settled exactly once in every worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
import redis.asyncio
import redis.exceptions

from tests.conftest import RedisServer, SessionFor
from tests.helpers import until
from tests.limiter.workers import ROOT, Proxy, workers_of
from upbit_cancel import (
    BatchCanceller,
    BlockedError,
    BudgetUnavailableError,
    HostLimiter,
    RedisLimiter,
)
from upbit_cancel.testing import FakeUpbit, Faults, most_in_window

pytestmark = pytest.mark.processes

LIMIT = 30
BLOCKED = {"error": {"name": "blocked", "message": "Your access is blocked for 30 seconds."}}


def busiest(fake: FakeUpbit) -> int:
    """The most requests that arrived at the exchange in one second, refused ones included:
    what an exchange that admitted everything would have counted."""
    return most_in_window(record.arrival for record in fake.records)


def settled(outcomes: list[dict[str, object]]) -> bool:
    """Whether every worker listed each of its ids exactly once."""
    return all(outcome["placed"] for outcome in outcomes)


# -- one host, no server ------------------------------------------------------------------------


async def run_command(
    fake: FakeUpbit, uuids_file: Path, *arguments: str, **environment: str
) -> tuple[int, str]:
    """``upbit-cancel cancel --file`` (and ``arguments``) in a process of its own: its status
    and standard error."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("UPBIT_")}
    env |= {
        "UPBIT_ACCESS_KEY": fake.access_key,
        "UPBIT_SECRET_KEY": fake.secret_key,
        "UPBIT_CANCEL_STATE_DIR": os.environ["UPBIT_CANCEL_STATE_DIR"],
        **environment,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "upbit_cancel",
        "cancel",
        "--base-url",
        fake.base_url,
        "--file",
        str(uuids_file),
        *arguments,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode(errors="replace")


async def test_two_runs_of_the_command_back_to_back_never_trip_the_limiter(
    tmp_path: Path,
) -> None:
    """The natural move in an emergency: the command run again at once. The second run finds
    the first one's slots still counting in the host's budget and waits for them."""
    async with FakeUpbit(faults=Faults(jitter_in=0.005)) as fake:
        first, second = tmp_path / "first.txt", tmp_path / "second.txt"
        first.write_text("\n".join(fake.add_orders(600)), encoding="utf-8")
        second.write_text("\n".join(fake.add_orders(600)), encoding="utf-8")
        assert (await run_command(fake, first))[0] == 0
        assert (await run_command(fake, second))[0] == 0
        assert busiest(fake) <= LIMIT
        assert fake.state_counts()["wait"] == 0
        assert fake.stats()["rejected_429"] == 0


async def test_two_runs_of_the_command_at_once_share_one_budget(tmp_path: Path) -> None:
    """A bot's operator runs the command in two terminals at once: one budget for both."""
    async with FakeUpbit(faults=Faults(jitter_in=0.005)) as fake:
        first, second = tmp_path / "first.txt", tmp_path / "second.txt"
        first.write_text("\n".join(fake.add_orders(1_200)), encoding="utf-8")
        second.write_text("\n".join(fake.add_orders(1_200)), encoding="utf-8")
        statuses = await asyncio.gather(run_command(fake, first), run_command(fake, second))
        assert busiest(fake) <= LIMIT
        assert [status for status, _ in statuses] == [0, 0]
        assert fake.state_counts()["wait"] == 0
        assert fake.stats()["rejected_429"] == 0


async def test_three_processes_with_default_settings_share_the_hosts_budget(
    tmp_path: Path,
) -> None:
    """Three processes of one key (a bot, a second bot, the command line), each a session
    given no limiter: one budget."""
    async with FakeUpbit(faults=Faults(jitter_in=0.005)) as fake, workers_of(fake, tmp_path) as w:
        keys = fake.add_credentials()
        await w.start(orders=600, limiter="default", account=None, count=3, keys=keys)
        await w.go()
        outcomes = await w.outcomes()
        assert busiest(fake) <= LIMIT
        assert [outcome["success"] for outcome in outcomes] == [600] * 3
        assert settled(outcomes)
        assert fake.stats()["rejected_429"] == 0


async def test_a_process_killed_holding_leases_costs_the_host_a_few_seconds(
    tmp_path: Path,
) -> None:
    """SIGKILL one of three processes mid-batch: the others finish without a 429, and once its
    leases lapse (about four seconds) the whole budget is back."""
    async with FakeUpbit(faults=Faults(jitter_in=0.005)) as fake, workers_of(fake, tmp_path) as w:
        doomed, *others = await w.start(orders=900, limiter="host", count=3)
        await w.go()
        await fake.wait_for(lambda fake: fake.received >= 40)
        assert doomed.returncode is None, "the worker to kill ended on its own"
        doomed.send_signal(signal.SIGKILL)
        await doomed.wait()
        outcomes = await w.outcomes(others)
        assert busiest(fake) <= LIMIT
        assert [outcome["success"] for outcome in outcomes] == [900] * 2
        assert settled(outcomes)
        assert fake.stats()["rejected_429"] == 0
    async with HostLimiter(account="main") as limiter:
        limiter.bind("unused")
        leases = await asyncio.wait_for(
            asyncio.gather(*(limiter.acquire() for _ in range(LIMIT))), timeout=15
        )
        for lease in leases:
            lease.release()


async def test_a_state_directory_that_cannot_be_written_is_one_line_and_nothing_sent(
    tmp_path: Path,
) -> None:
    """The host's budget cannot be kept: a one-line error that names the directory and the
    variable, status 2, no traceback, nothing sent."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    directory = blocker / "state"
    async with FakeUpbit() as fake:
        uuids = tmp_path / "uuids.txt"
        uuids.write_text("\n".join(fake.add_orders(5)), encoding="utf-8")
        status, stderr = await run_command(fake, uuids, UPBIT_CANCEL_STATE_DIR=str(directory))
        assert status == 2
        assert "Traceback" not in stderr
        [line] = [line for line in stderr.splitlines() if "budget" in line]
        assert str(directory) in line
        assert "UPBIT_CANCEL_STATE_DIR" in line
        assert fake.records == []


# -- Redis --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("processes", "fallback_limit", "fault"),
    [
        (2, None, "kill"),
        (2, 15, "kill"),
        (2, None, "stop"),
        (2, 15, "stop"),
        (10, None, "kill"),
    ],
)
async def test_redis_lost_mid_run_keeps_every_process_within_the_budget(
    processes: int, fallback_limit: int | None, fault: str, tmp_path: Path
) -> None:
    """redis-server killed (or stopped, its queued scripts running late when it goes on) under
    several processes: each waits until the others can have noticed, then spends its own share
    at most; those without a share of their own are refused, never sent."""
    server = RedisServer()
    server.start()
    assert server.process is not None
    try:
        async with (
            FakeUpbit(faults=Faults(jitter_in=0.005)) as fake,
            workers_of(fake, tmp_path) as w,
        ):
            [first] = await w.start(
                orders=20 * (120 if processes == 2 else 20),
                redis_url=server.url,
                fallback_limit=fallback_limit,
            )
            others = await w.start(
                orders=20 * (40 if processes == 2 else 20),
                redis_url=server.url,
                fallback_limit=fallback_limit,
                count=processes - 1,
            )
            # With two, the first spends the whole budget of two windows; the second sets out
            # as Redis fails, with nothing of its own in the window: the first's slots are
            # what must count.
            await w.go([first] if processes == 2 else None)
            await fake.wait_for(lambda fake: fake.received >= 2 * LIMIT)
            if fault == "kill":
                server.process.send_signal(signal.SIGKILL)
                server.process.wait()
                if processes == 2:
                    await w.go(others)
            else:
                server.process.send_signal(signal.SIGSTOP)
                if processes == 2:
                    await w.go(others)
                stopped = fake.received
                # Until the fallback shares are in use, and on for a while.
                await fake.wait_for(lambda fake: fake.received >= stopped + 10)
                server.process.send_signal(signal.SIGCONT)
            outcomes = await w.outcomes()
        assert busiest(fake) <= LIMIT
        assert settled(outcomes)
        for outcome in outcomes:
            assert set(outcome["errors"]) <= {"BudgetUnavailableError"}, outcome
        assert fake.stats()["rejected_429"] == 0
    finally:
        server.stop()


async def test_one_process_cut_off_from_redis_while_the_others_go_on(
    redis_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Only one process loses Redis: the others keep its share out of their grants for as long
    as it may be using it on its own."""
    async with (
        Proxy(redis_server.port) as proxy,
        FakeUpbit(faults=Faults(jitter_in=0.005)) as fake,
        workers_of(fake, tmp_path) as w,
    ):
        proxied = f"redis://127.0.0.1:{proxy.port}/0"
        await w.start(orders=20 * 60, redis_url=redis_url, count=2)
        await w.start(orders=20 * 60, redis_url=proxied)
        await w.go()
        await fake.wait_for(lambda fake: fake.received >= LIMIT + 10)
        proxy.cut()
        outcomes = await w.outcomes()
        assert busiest(fake) <= LIMIT
        assert settled(outcomes)
        assert [outcome["errors"] for outcome in outcomes[:2]] == [{}, {}]
        assert "did not answer" in outcomes[2]["stderr"]
        assert fake.stats()["rejected_429"] == 0


async def test_a_process_with_a_wrong_password_is_refused_and_sends_nothing(
    tmp_path: Path,
) -> None:
    """Two processes reach Redis, a third's URL has a wrong password: it is refused with an
    error that says what to check, and none of its requests reaches the exchange."""
    server = RedisServer("--requirepass", "right")
    server.start()
    try:
        good = f"redis://:right@127.0.0.1:{server.port}/0"
        bad = f"redis://:wrong@127.0.0.1:{server.port}/0"
        async with (
            FakeUpbit(faults=Faults(jitter_in=0.005)) as fake,
            workers_of(fake, tmp_path) as w,
        ):
            await w.start(orders=20 * 45, redis_url=good, count=2)
            await w.start(orders=20 * 10, redis_url=bad)
            await w.go()
            outcomes = await w.outcomes()
            refused_key = w.keys[2]
        assert busiest(fake) <= LIMIT
        assert settled(outcomes)
        assert [outcome["success"] for outcome in outcomes[:2]] == [900, 900]
        assert outcomes[2]["errors"] == {"BudgetUnavailableError": 200}
        assert "password" in str(outcomes[2]["messages"])
        assert "wrong" not in str(outcomes[2])
        assert "right" not in outcomes[2]["stderr"]
        assert not [record for record in fake.records if record.access_key == refused_key]
        assert fake.stats()["rejected_429"] == 0
    finally:
        server.stop()


@pytest.mark.parametrize("how", ["allkeys-lru", "volatile-lru", "flushall"])
async def test_keys_that_vanish_are_a_lost_state_never_an_idle_account(
    how: str, tmp_path: Path
) -> None:
    """Redis configured as a cache evicts the budget's keys (or somebody flushes them) under
    two processes: the loss is noticed and waited out, never taken for an idle account."""
    options = () if how == "flushall" else ("--maxmemory", "4mb", "--maxmemory-policy", how)
    server = RedisServer(*options)
    server.start()
    admin = redis.asyncio.Redis.from_url(server.url)
    try:
        async with (
            FakeUpbit(faults=Faults(jitter_in=0.005)) as fake,
            workers_of(fake, tmp_path) as w,
        ):
            await w.start(orders=20 * 45, redis_url=server.url, count=2)
            await w.go()
            await fake.wait_for(lambda fake: fake.received >= LIMIT)
            if how == "flushall":
                await admin.flushall()
            else:
                # Fill memory past the limit, so that Redis evicts, then make room again.
                block = b"x" * 65536
                for index in range(160):
                    try:
                        await admin.set(f"filler:{index}", block)
                    except redis.exceptions.OutOfMemoryError:
                        break  # nothing left that the policy may evict
                    await asyncio.sleep(0.005)
                await admin.delete(*(f"filler:{index}" for index in range(160)))
            outcomes = await w.outcomes()
        assert busiest(fake) <= LIMIT
        assert settled(outcomes)
        assert [outcome["success"] for outcome in outcomes] == [900, 900]
        if how != "allkeys-lru":  # which keys an approximate LRU picks is its own business
            assert any("was lost" in outcome["stderr"] for outcome in outcomes)
        if how != "flushall":
            assert all("evicts keys" in outcome["stderr"] for outcome in outcomes)
        assert fake.stats()["rejected_429"] == 0
    finally:
        await admin.aclose()
        server.stop()


@pytest.mark.parametrize("limiter", ["redis", "host"])
async def test_a_path_slow_one_way_and_fast_the_other_never_crowds_a_window(
    limiter: str, redis_url: str, tmp_path: Path
) -> None:
    """One process next to the exchange, one whose path is 190 ms out and 10 ms back: a hold
    credits only its own process's path, so the other's requests never crowd a window."""
    async with FakeUpbit(faults=Faults(jitter_in=0.005)) as fake, workers_of(fake, tmp_path) as w:
        # Long enough for each process to trust its path's floor for many windows.
        near, far = await w.start(orders=20 * 150, limiter=limiter, redis_url=redis_url, count=2)
        fake.set_faults(
            Faults(latency_in=0.19, latency_out=0.01, jitter_in=0.005), access_key=w.keys[1]
        )
        await w.go()
        outcomes = await w.outcomes([near, far])
        assert busiest(fake) <= LIMIT
        assert settled(outcomes)
        assert fake.stats()["rejected_429"] == 0


async def test_a_block_met_on_the_fallback_is_honoured_after_redis_returns(
    session_for: SessionFor,
) -> None:
    """A 418 met while Redis was out of reach is told to Redis once it answers, even empty:
    another process of the account then sends nothing until the block ends."""
    server = RedisServer()
    server.start()
    try:
        async with FakeUpbit() as fake:
            uuids = fake.add_orders(6)
            other_keys = fake.add_credentials()
            async with (
                RedisLimiter(server.url, account="main", timeout=0.2) as first,
                session_for(fake, limiter=first) as session,
            ):
                await session.cancel_orders(uuids=uuids[:1])
                await asyncio.sleep(1.1)  # a member long enough for every other to know
                await session.cancel_orders(uuids=uuids[1:2])
                server.stop()
                fake.queue_response(418, BLOCKED)
                with pytest.raises(BlockedError):
                    await session.cancel_orders(uuids=uuids[2:3])  # on the fallback
                assert first.degraded
                server.start()  # empty
                await until(lambda: not first.degraded)
                sent = len(fake.records)
                async with (
                    RedisLimiter(server.url, account="main", timeout=0.2) as second,
                    session_for(fake, limiter=second, keys=other_keys) as other,
                ):
                    with pytest.raises(BlockedError):
                        await other.cancel_orders(uuids=uuids[3:])
                assert len(fake.records) == sent
    finally:
        server.stop()


async def test_one_key_under_two_names_is_refused_before_anything_is_sent(
    redis_url: str, tmp_path: Path
) -> None:
    """Same key, same Redis, one process with ``account="main"`` and one without: two budgets
    for one key. The second is refused, naming the cause, and sends nothing."""
    async with FakeUpbit(faults=Faults(jitter_in=0.005)) as fake, workers_of(fake, tmp_path) as w:
        keys = fake.add_credentials()
        [first] = await w.start(orders=20 * 60, redis_url=redis_url, keys=keys)
        await w.go([first])
        await fake.wait_for(lambda fake: fake.received >= 1)
        [second] = await w.start(orders=20 * 5, redis_url=redis_url, account=None, keys=keys)
        await w.go([second])
        one, two = await w.outcomes([first, second])
        assert busiest(fake) <= LIMIT
        assert one["success"] == 1200
        assert two["errors"] == {"BudgetUnavailableError": 100}
        assert "another name" in str(two["messages"])
        assert sum(len(record.ids) for record in fake.records) == 1200


async def test_the_command_says_in_one_line_when_it_spends_its_fallback_share(
    tmp_path: Path,
) -> None:
    """Redis killed under ``upbit-cancel cancel --redis``: one line says so, the run ends well
    on its own share, within the budget."""
    server = RedisServer()
    server.start()
    assert server.process is not None
    try:
        async with FakeUpbit(faults=Faults(jitter_in=0.005)) as fake:
            uuids = tmp_path / "uuids.txt"
            uuids.write_text("\n".join(fake.add_orders(20 * 60)), encoding="utf-8")
            command = asyncio.ensure_future(run_command(fake, uuids, "--redis", server.url))
            await fake.wait_for(lambda fake: fake.received >= LIMIT + 5)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
            status, stderr = await command
            assert busiest(fake) <= LIMIT
            assert status == 0, stderr
            assert "Traceback" not in stderr
            [line] = [line for line in stderr.splitlines() if "did not answer" in line]
            assert line.startswith("upbit-cancel cancel: Redis at redis://127.0.0.1:")
            assert "allows itself 5 requests per 1 s" in line
            assert fake.state_counts()["wait"] == 0
    finally:
        server.stop()


async def test_an_upper_case_scheme_is_a_redis_url_too(redis_server: RedisServer) -> None:
    """``REDIS://`` is ``redis://``: URL schemes ignore case."""
    async with RedisLimiter(f"REDIS://127.0.0.1:{redis_server.port}/0", account="main") as limiter:
        (await limiter.acquire()).release()
        assert not limiter.degraded


async def test_the_batch_reports_the_ids_of_an_account_whose_budget_refuses(
    session_for: SessionFor, tmp_path: Path
) -> None:
    """A host budget that cannot be kept settles every id as not sent, with the reason."""
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(45)
        async with (
            HostLimiter(state_dir=blocker / "state") as limiter,
            session_for(fake, limiter=limiter) as session,
        ):
            result = await BatchCanceller(session).cancel(uuids=uuids)
        assert result.unresolved.count == 45
        assert {type(entry.error) for entry in result.unresolved} == {BudgetUnavailableError}
        assert fake.records == []
