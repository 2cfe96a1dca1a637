"""The bot's Heartbeat and the library's watch(), in one process against the fake exchange."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from tests.conftest import SessionFor
from tests.helpers import until
from upbit_cancel import (
    AuthenticationError,
    Heartbeat,
    HeartbeatError,
    SlidingWindowLimiter,
    UpbitSession,
    WatchOutcome,
    watch,
)
from upbit_cancel._watch.beat import Beat, decode
from upbit_cancel._watch.places import place_of
from upbit_cancel.testing import FakeUpbit, Faults, RequestRecord


async def a_bot_that_fails(path: Path, *, every: float, ending: BaseException) -> None:
    """Beats a few times, then leaves its heartbeat by ``ending``."""
    async with Heartbeat(path, every=every):
        await until(lambda: read(path).sequence >= 3)
        raise ending


def cancels(fake: FakeUpbit) -> list[RequestRecord]:
    return [record for record in fake.records if record.method == "DELETE"]


def only_the_check(fake: FakeUpbit) -> bool:
    """Nothing but the check before watching: one listing of one open order."""
    return [(record.method, record.path) for record in fake.records] == [("GET", "/v1/orders/open")]


def read(path: Path) -> Beat:
    found = decode(path.read_bytes())
    assert found is not None
    return found


async def test_beats_until_left_then_disarms(tmp_path: Path) -> None:
    """While entered the heartbeat beats; leaving normally writes a disarmed beat."""
    path = tmp_path / "heartbeat"
    async with Heartbeat(path, every=0.01) as heartbeat:
        first = read(path)
        assert first.state == "beating"
        assert first.pid == os.getpid()
        await until(lambda: read(path).sequence >= 3)
        assert heartbeat.beats >= 3
    last = read(path)
    assert (last.writer, last.state) == (first.writer, "disarmed")
    assert sorted(os.listdir(tmp_path)) == ["heartbeat"], "no temporary file left behind"


@pytest.mark.parametrize("ending", [RuntimeError("the bot fails"), asyncio.CancelledError()])
async def test_an_exception_leaves_it_to_expire(tmp_path: Path, ending: BaseException) -> None:
    """Leaving by an exception (cancellation too) writes nothing more: the beats stop."""
    path = tmp_path / "heartbeat"
    with pytest.raises(type(ending)):
        await a_bot_that_fails(path, every=0.01, ending=ending)
    stopped = read(path)
    assert stopped.state == "beating"
    await asyncio.sleep(0.05)  # five beats' time: none comes
    assert read(path) == stopped


async def test_a_blocked_loop_stops_the_beats(tmp_path: Path) -> None:
    """The beats come from the bot's own event loop: while it is blocked, none is written."""
    path = tmp_path / "heartbeat"
    async with Heartbeat(path, every=0.01):
        await until(lambda: read(path).sequence >= 2)
        before = read(path)
        seen = []
        for _ in range(5):
            time.sleep(0.02)  # noqa: ASYNC251 - the loop blocked, as by a bot's synchronous call
            seen.append(read(path))
        assert seen == [before] * 5


async def test_a_place_that_cannot_take_the_first_beat_raises(tmp_path: Path) -> None:
    """A missing directory is a HeartbeatError at the start, naming the path, not a raw
    OSError."""
    missing = tmp_path / "no-such-directory" / "heartbeat"
    with pytest.raises(HeartbeatError, match="no-such-directory") as caught:
        async with Heartbeat(missing):
            pytest.fail("the block must not run")
    assert caught.value.__cause__ is None


def test_bad_arguments_are_refused() -> None:
    """Nonsense is refused where it is given, with what to give instead."""
    with pytest.raises(ValueError, match="positive"):
        Heartbeat("hb", every=0)
    with pytest.raises(TypeError, match="path or a redis"):
        Heartbeat(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path or a redis"):
        Heartbeat(" ")
    with pytest.raises(ValueError, match="name"):
        Heartbeat("redis://127.0.0.1:1/0#no spaces")


async def test_a_failing_beat_is_logged_and_tried_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A beat that cannot be written is a warning, once, and the beats resume after."""
    directory = tmp_path / "beats"
    directory.mkdir()
    path = directory / "heartbeat"
    caplog.set_level(logging.WARNING, "upbit_cancel.heartbeat")
    async with Heartbeat(path, every=0.01):
        path.unlink()
        directory.rmdir()
        await until(lambda: "cannot write the heartbeat" in caplog.text)
        directory.mkdir()
        await until(lambda: path.exists())
    assert caplog.text.count("cannot write the heartbeat") == 1
    assert "is written again" in caplog.text


async def test_a_redis_heartbeat_is_a_key_that_expires(redis_url: str) -> None:
    """In Redis the heartbeat is one key per name, with an expiry, read back whole."""
    target = f"{redis_url}#bot-1"
    place = place_of(target)
    try:
        async with Heartbeat(target, every=0.01):
            raw = await place.read()
            assert raw is not None
            assert decode(raw) is not None
        raw = await place.read()
        assert raw is not None
        disarmed = decode(raw)
        assert disarmed is not None
        assert disarmed.state == "disarmed"
        other = place_of(f"{redis_url}#bot-2")
        try:
            assert await other.read() is None
        finally:
            await other.aclose()
        client = place._client  # type: ignore[attr-defined]
        ttl = await client.pttl("upbit_cancel:heartbeat:bot-1")
        assert 0 < ttl <= 60_000
    finally:
        await place.aclose()


async def test_a_redis_out_of_reach_is_a_heartbeat_error() -> None:
    """No Redis at the URL: a HeartbeatError at the start, with the password redacted."""
    with pytest.raises(HeartbeatError, match="redacted") as caught:
        async with Heartbeat("redis://user:hunter2@127.0.0.1:1/0"):
            pytest.fail("the block must not run")
    assert "hunter2" not in str(caught.value)


async def test_watch_cancels_everything_once_the_beats_stop(
    fake: FakeUpbit, session_for: SessionFor, tmp_path: Path
) -> None:
    """A bot that fails: watch() cancels every open order, of every market, and confirms."""
    path = tmp_path / "heartbeat"
    btc = fake.add_orders(120, market="SGD-BTC")
    eth = fake.add_orders(30, market="SGD-ETH")
    async with session_for(fake, limiter=SlidingWindowLimiter()) as session:
        watching = asyncio.create_task(watch(path, after=0.2, session=session))
        with pytest.raises(RuntimeError):
            await a_bot_that_fails(path, every=0.02, ending=RuntimeError("the bot fails"))
        assert not cancels(fake), "nothing canceled while the bot beats"
        outcome = await watching
    assert outcome.reason == "expired"
    assert outcome.silent_for is not None
    assert outcome.silent_for > 0.2
    (result,) = outcome.results.values()
    assert result.confirmed
    assert {order.uuid for order in result.success} == set(btc + eth)
    assert fake.state_counts()["wait"] == 0


async def test_watch_stands_down_when_disarmed(
    fake: FakeUpbit, session_for: SessionFor, tmp_path: Path
) -> None:
    """A bot that leaves normally: watch() returns "disarmed" and sends nothing."""
    path = tmp_path / "heartbeat"
    fake.add_orders(10)
    async with session_for(fake, limiter=SlidingWindowLimiter()) as session:
        watching = asyncio.create_task(watch(path, after=5.0, session=session))
        async with Heartbeat(path, every=0.02):
            await until(lambda: read(path).sequence >= 3)
        outcome = await watching
    assert outcome.reason == "disarmed"
    assert outcome.results == {}
    assert only_the_check(fake)


async def test_watch_cancels_only_the_markets_given(
    fake: FakeUpbit, session_for: SessionFor, tmp_path: Path
) -> None:
    """With markets, each is cancelled at once and the others are left alone."""
    path = tmp_path / "heartbeat"
    btc = fake.add_orders(40, market="SGD-BTC")
    eth = fake.add_orders(40, market="SGD-ETH")
    xrp = fake.add_orders(40, market="SGD-XRP")
    async with session_for(fake, limiter=SlidingWindowLimiter()) as session:
        watching = asyncio.create_task(
            watch(path, after=0.1, session=session, markets=["SGD-BTC", "SGD-ETH", "SGD-BTC"])
        )
        with pytest.raises(RuntimeError):
            await a_bot_that_fails(path, every=0.02, ending=RuntimeError("the bot fails"))
        outcome = await watching
    assert list(outcome.results) == ["SGD-BTC", "SGD-ETH"]
    assert {order.uuid for order in outcome.results["SGD-BTC"].success} == set(btc)
    assert {order.uuid for order in outcome.results["SGD-ETH"].success} == set(eth)
    assert {fake.state(uuid) for uuid in xrp} == {"wait"}


async def test_watch_refuses_what_it_cannot_use(
    fake: FakeUpbit, session_for: SessionFor, tmp_path: Path
) -> None:
    """Bad arguments, and a heartbeat that cannot be read at the start, are refused at once."""
    async with session_for(fake, limiter=SlidingWindowLimiter()) as session:
        with pytest.raises(ValueError, match="after"):
            await watch(tmp_path / "hb", after=0, session=session)
        with pytest.raises(TypeError, match="list of market codes"):
            await watch(tmp_path / "hb", after=1, session=session, markets="SGD-BTC")
        with pytest.raises(ValueError, match="at least one market"):
            await watch(tmp_path / "hb", after=1, session=session, markets=[])
        with pytest.raises(TypeError, match="UpbitSession"):
            await watch(tmp_path / "hb", after=1, session="session")  # type: ignore[arg-type]
        (tmp_path / "dir").mkdir()
        with pytest.raises(HeartbeatError, match="not a regular file"):
            await watch(tmp_path / "dir", after=1, session=session)
    assert fake.records == []


async def test_a_heartbeat_that_is_not_a_file_is_refused_at_once(
    fake: FakeUpbit, session_for: SessionFor, tmp_path: Path
) -> None:
    """A FIFO at the path never blocks the watchdog: it is refused, nothing sent."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    async with session_for(fake, limiter=SlidingWindowLimiter()) as session:
        with pytest.raises(HeartbeatError, match="not a regular file"):
            await watch(fifo, after=1, session=session)
    assert fake.records == []


async def test_a_bot_that_beats_no_faster_than_after_is_refused(
    fake: FakeUpbit, session_for: SessionFor, tmp_path: Path
) -> None:
    """every=0.3 against after=0.2 would cancel a healthy bot: refused once armed."""
    path = tmp_path / "heartbeat"
    fake.add_orders(5)
    async with session_for(fake, limiter=SlidingWindowLimiter()) as session:
        watching = asyncio.create_task(watch(path, after=0.2, session=session))
        async with Heartbeat(path, every=0.3):
            with pytest.raises(HeartbeatError, match="several beats"):
                await watching
    assert not cancels(fake)


async def test_one_heartbeat_entered_twice_at_once_is_refused(tmp_path: Path) -> None:
    """A second task entering the same Heartbeat while the first enters is refused."""
    heartbeat = Heartbeat(tmp_path / "heartbeat", every=0.05)

    async def enter() -> None:
        async with heartbeat:
            await asyncio.sleep(0)

    results = await asyncio.gather(enter(), enter(), return_exceptions=True)
    assert sum(isinstance(result, RuntimeError) for result in results) == 1


def test_a_directory_or_nul_is_no_heartbeat_path() -> None:
    """'/', '.', '..' and a path with a NUL byte are refused where given."""
    for target in ("/", ".", "..", "a\0b"):
        with pytest.raises(ValueError, match="path"):
            Heartbeat(target)


async def test_watch_refuses_a_key_the_exchange_refuses(fake: FakeUpbit, tmp_path: Path) -> None:
    """A wrong secret is found before watching, not when the bot has died."""
    async with UpbitSession(
        fake.access_key, "x" * 40, base_url=fake.base_url, limiter=SlidingWindowLimiter()
    ) as session:
        with pytest.raises(AuthenticationError):
            await watch(tmp_path / "heartbeat", after=1, session=session)


async def test_a_bot_that_stops_while_the_watchdog_gets_ready_is_seen(
    fake: FakeUpbit, session_for: SessionFor, tmp_path: Path
) -> None:
    """The baseline is read before the check (slow here: answers take 1 s), so a bot whose
    last beats come during the check still counts as stopped."""
    path = tmp_path / "heartbeat"
    orders = fake.add_orders(20)
    fake.faults = Faults(latency_out=1.0)
    async with session_for(fake, limiter=SlidingWindowLimiter()) as session:
        watching: asyncio.Task[WatchOutcome] | None = None
        try:
            async with Heartbeat(path, every=0.05):
                await until(lambda: read(path).sequence >= 2)
                watching = asyncio.create_task(watch(path, after=0.3, session=session))
                # The check has reached the exchange; its answer takes a second to come back.
                await fake.wait_for(lambda fake: bool(fake.records))
                # A beat after the baseline (one beat alone could be an old file's), then none.
                beaten = read(path).sequence
                await until(lambda: read(path).sequence > beaten)
                assert not watching.done()
                raise RuntimeError("the bot dies while the watchdog checks the key")
        except RuntimeError:
            pass
        fake.faults = Faults()
        assert watching is not None
        async with asyncio.timeout(30):  # a watchdog that missed the stop waits forever
            outcome = await watching
    assert outcome.reason == "expired"
    assert {fake.state(uuid) for uuid in orders} == {"cancel"}
