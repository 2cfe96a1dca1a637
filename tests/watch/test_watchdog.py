"""``upbit-cancel watchdog`` as a process, a bot as another, the fake exchange in this one.

The bot is ``tests/watch/bot.py``; each test kills it, blocks its loop or lets it leave, and
reads at the fake what the watchdog did: which orders are closed, when the cancels arrived, and
how many requests any window held.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest

from tests.cli.processes import ROOT, SCRIPT, stop
from upbit_cancel._watch.beat import Beat, decode
from upbit_cancel.testing import FakeUpbit, most_in_window

pytestmark = pytest.mark.processes

AFTER = 1.0
EVERY = 0.1


@attrs.frozen
class Host:
    """A machine of its own: its budget's state directory."""

    state_dir: Path

    def env(self, keys: tuple[str, str] | None) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith("UPBIT_")}
        env["PYTHONWARNINGS"] = "error"
        env["UPBIT_CANCEL_STATE_DIR"] = str(self.state_dir)
        if keys is not None:
            env["UPBIT_ACCESS_KEY"], env["UPBIT_SECRET_KEY"] = keys
        return env


@pytest.fixture
def host(tmp_path: Path) -> Host:
    directory = tmp_path / "host"
    directory.mkdir()
    return Host(directory)


@pytest.fixture
async def exchange() -> AsyncIterator[FakeUpbit]:
    async with FakeUpbit() as fake:
        yield fake


async def watchdog(
    fake: FakeUpbit, host: Host, *args: str, keys: tuple[str, str] | None = None
) -> asyncio.subprocess.Process:
    """The watchdog, once it said it waits for the first beat."""
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "watchdog",
        "--base-url",
        fake.base_url,
        "--after",
        str(AFTER),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=host.env(keys or (fake.access_key, fake.secret_key)),
    )
    await expect(process, "waiting for the first beat")
    return process


async def bot(
    heartbeat: str, host: Host, *args: str, keys: tuple[str, str] | None = None
) -> asyncio.subprocess.Process:
    """The bot, once it beats."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.watch.bot",
        heartbeat,
        "--every",
        str(EVERY),
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=host.env(keys),
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=20)
    assert line == b"beating\n"
    return process


async def expect(process: asyncio.subprocess.Process, text: str) -> list[str]:
    """Standard error's lines up to the first that holds ``text``."""
    assert process.stderr is not None
    lines: list[str] = []
    async with asyncio.timeout(20):
        while True:
            line = (await process.stderr.readline()).decode()
            assert line, f"exited before saying {text!r}: {lines}"
            lines.append(line)
            if text in line:
                return lines


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        await stop(process)
    assert process.returncode is not None
    assert "Traceback" not in stderr.decode()
    return process.returncode, stdout.decode(), stderr.decode()


def only_checks(fake: FakeUpbit, watchdogs: int) -> bool:
    """Nothing but each watchdog's check before watching: one listing of one open order."""
    return [(record.method, record.path) for record in fake.records] == [
        ("GET", "/v1/orders/open")
    ] * watchdogs


def read_beat(path: str) -> Beat:
    beat = decode(Path(path).read_bytes())
    assert beat is not None
    return beat


def cancel_arrivals(fake: FakeUpbit) -> list[float]:
    return [
        record.arrival
        for record in fake.records
        if record.method == "DELETE" and record.admitted and record.status == 200
    ]


@pytest.mark.parametrize("how", ["killed", "blocked"])
async def test_a_bot_that_stops_has_every_open_order_canceled(
    exchange: FakeUpbit, host: Host, tmp_path: Path, how: str
) -> None:
    """Killed (SIGKILL) or its loop blocked: the watchdog cancels every open order, after
    ``after`` seconds of silence and not before, in two markets, and exits 0."""
    wait = exchange.add_orders(600, market="SGD-BTC")
    watch = exchange.add_orders(50, market="SGD-ETH", state="watch")
    heartbeat = str(tmp_path / "heartbeat")
    dog = await watchdog(exchange, host, "--heartbeat", heartbeat)
    then = "forever" if how == "killed" else "block"
    beating = await bot(heartbeat, host, "--then", then)
    try:
        await expect(dog, "beats (pid")
        if how == "killed":
            beating.send_signal(signal.SIGKILL)
            await beating.wait()
        else:
            assert beating.stdout is not None
            assert await beating.stdout.readline() == b"blocking\n"
        # The fake's arrivals are on this loop's clock, the beat's time on the wall clock.
        last_beat = read_beat(heartbeat)
        wall_minus_loop = time.time() - asyncio.get_running_loop().time()
        status, _, stderr = await finish(dog)
    finally:
        await stop(beating)
    assert status == 0, stderr
    assert "silent for" in stderr
    assert {exchange.state(uuid) for uuid in wait + watch} == {"cancel"}
    first_cancel = min(cancel_arrivals(exchange)) + wall_minus_loop
    # Never before `after` of silence since the last beat; and promptly after (the bound is
    # loose: it is about firing at all, the delay is measured in benchmarks/watchdog.py).
    assert last_beat.written + AFTER < first_cancel < last_beat.written + AFTER + 5.0
    assert exchange.stats()["rejected_429"] == 0
    assert exchange.max_in_window() <= 30


async def test_a_bot_that_exits_cleanly_cancels_nothing(
    exchange: FakeUpbit, host: Host, tmp_path: Path
) -> None:
    """A bot that leaves its Heartbeat normally disarms it: the watchdog exits 0, quietly,
    and sends nothing."""
    orders = exchange.add_orders(20)
    heartbeat = str(tmp_path / "heartbeat")
    dog = await watchdog(exchange, host, "--heartbeat", heartbeat)
    beating = await bot(heartbeat, host, "--then", "exit")
    try:
        await expect(dog, "beats (pid")
        assert beating.stdin is not None
        beating.stdin.write(b"done\n")
        await beating.stdin.drain()
        assert beating.stdout is not None
        assert await beating.stdout.readline() == b"disarmed\n"
        status, stdout, stderr = await finish(dog)
    finally:
        await stop(beating)
    assert status == 0
    assert "disarmed" in stderr
    assert stdout == ""
    assert only_checks(exchange, 1)
    assert {exchange.state(uuid) for uuid in orders} == {"wait"}


async def test_no_heartbeat_yet_cancels_nothing(
    exchange: FakeUpbit, host: Host, tmp_path: Path
) -> None:
    """With no beat seen written (a dead bot's old heartbeat, or none at all), the watchdog
    waits, however long; SIGTERM ends it with 143 and nothing sent."""
    orders = exchange.add_orders(20)
    stale = tmp_path / "stale"
    dead = await bot(str(stale), host)
    dead.send_signal(signal.SIGKILL)
    await dead.wait()
    dogs = [
        await watchdog(exchange, host, "--heartbeat", heartbeat)
        for heartbeat in (str(stale), str(tmp_path / "none"))
    ]
    # Watched for three times `after`: the span this test is about, not a guess.
    await asyncio.sleep(3 * AFTER)
    for dog in dogs:
        dog.send_signal(signal.SIGTERM)
        status, _, stderr = await finish(dog)
        assert status == 143
        assert "stopped while watching" in stderr
    assert only_checks(exchange, 2)
    assert {exchange.state(uuid) for uuid in orders} == {"wait"}


async def test_a_redis_heartbeat_watched_from_another_host(
    exchange: FakeUpbit, tmp_path: Path, redis_url: str
) -> None:
    """Bot and watchdog on two "hosts" (separate state directories) share the heartbeat and
    the budget through Redis: the bot is killed in the middle of its own cancels, and the
    watchdog cancels the rest with never more than 30 requests in a second at the exchange."""
    hosts = []
    for name in ("bot-host", "watchdog-host"):
        (tmp_path / name).mkdir()
        hosts.append(Host(tmp_path / name))
    bot_host, dog_host = hosts
    theirs = exchange.add_orders(1000)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(theirs[:800]))
    rest = exchange.add_orders(100, market="SGD-ETH")
    heartbeat = f"{redis_url}#trader"
    keys = (exchange.access_key, exchange.secret_key)
    dog = await watchdog(
        exchange, dog_host, "--heartbeat", heartbeat, "--redis", redis_url, "--json"
    )
    beating = await bot(
        heartbeat,
        bot_host,
        "--cancel-file",
        str(ids_file),
        "--base-url",
        exchange.base_url,
        "--redis",
        redis_url,
        keys=keys,
    )
    try:
        await expect(dog, "beats (pid")
        await exchange.wait_for(lambda fake: len(cancel_arrivals(fake)) >= 20)
        beating.send_signal(signal.SIGKILL)
        status, stdout, stderr = await finish(dog)
    finally:
        await stop(beating)
    assert status == 0, stderr
    assert {exchange.state(uuid) for uuid in theirs + rest} == {"cancel"}
    await exchange.wait_for(lambda fake: fake.in_transit == 0)
    assert exchange.stats()["rejected_429"] == 0
    assert exchange.max_in_window() <= 30
    (line,) = stdout.splitlines()
    document = json.loads(line)
    assert document["event"] == "expired"
    result = document["pockets"]["account"]["*"]
    assert result["still_open"] == []
    assert exchange.access_key not in stdout + stderr
    assert exchange.secret_key not in stdout + stderr


async def test_rearm_keeps_watching_after_a_cancel(
    exchange: FakeUpbit, host: Host, tmp_path: Path
) -> None:
    """With --rearm the watchdog cancels, then waits for the next bot and watches it too."""
    heartbeat = str(tmp_path / "heartbeat")
    dog = await watchdog(exchange, host, "--heartbeat", heartbeat, "--rearm", "--json")
    try:
        for round_ in range(2):
            orders = exchange.add_orders(40)
            beating = await bot(heartbeat, host)
            await expect(dog, "beats (pid")
            beating.send_signal(signal.SIGKILL)
            await beating.wait()
            await expect(dog, "watching again")
            assert {exchange.state(uuid) for uuid in orders} == {"cancel"}, round_
        dog.send_signal(signal.SIGTERM)
        status, stdout, _ = await finish(dog)
    finally:
        await stop(dog)
    assert status == 143
    assert [json.loads(line)["event"] for line in stdout.splitlines()] == ["expired"] * 2


def pockets_file(tmp_path: Path, pockets: dict[str, tuple[str, str]]) -> Path:
    path = tmp_path / "pockets.txt"
    path.write_text(
        "".join(f"{access} {secret} {name}\n" for name, (access, secret) in pockets.items())
    )
    path.chmod(0o600)
    return path


async def test_two_pockets_are_canceled_at_once_each_within_its_budget(
    exchange: FakeUpbit, host: Host, tmp_path: Path
) -> None:
    """With --keys, every pocket is canceled at once, each never above its own 30 a second,
    and the summary is per pocket."""
    sub_keys = exchange.add_pocket("sub")
    orders = {
        "main": exchange.add_orders(1000),
        "sub": exchange.add_orders(1000, pocket="sub"),
    }
    keys = pockets_file(
        tmp_path, {"main": (exchange.access_key, exchange.secret_key), "sub": sub_keys}
    )
    heartbeat = str(tmp_path / "heartbeat")
    dog = await watchdog(exchange, host, "--heartbeat", heartbeat, "--keys", str(keys))
    beating = await bot(heartbeat, host)
    try:
        await expect(dog, "beats (pid")
        beating.send_signal(signal.SIGKILL)
        status, stdout, stderr = await finish(dog)
    finally:
        await stop(beating)
    assert status == 0, stderr
    assert "in 2 pockets" in stderr
    for pocket, uuids in orders.items():
        assert {exchange.state(uuid) for uuid in uuids} == {"cancel"}, pocket
        assert exchange.max_in_window(pocket=pocket) <= 30, pocket
        assert exchange.stats(pocket=pocket)["rejected_429"] == 0, pocket
        assert f"{pocket} · every market" in stdout
    both = [record.arrival for record in exchange.records if record.admitted]
    assert most_in_window(both, 1.0) > 30, "the pockets worked at once"
    assert sub_keys[1] not in stdout + stderr


async def test_cancel_all_open_works_on_every_pocket_of_a_key_file(
    exchange: FakeUpbit, host: Host, tmp_path: Path
) -> None:
    """``cancel --all-open --keys``: every pocket at once, a JSON document per pocket."""
    sub_keys = exchange.add_pocket("sub")
    main_orders = exchange.add_orders(200)
    sub_orders = exchange.add_orders(200, pocket="sub")
    keys = pockets_file(
        tmp_path, {"main": (exchange.access_key, exchange.secret_key), "sub": sub_keys}
    )
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "cancel",
        "--all-open",
        "--keys",
        str(keys),
        "--base-url",
        exchange.base_url,
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=host.env(None),
    )
    status, stdout, stderr = await finish(process)
    assert status == 0, stderr
    document = json.loads(stdout)
    assert set(document["pockets"]) == {"main", "sub"}
    assert {order["uuid"] for order in document["pockets"]["sub"]["*"]["success"]} == set(
        sub_orders
    )
    assert {exchange.state(uuid) for uuid in main_orders + sub_orders} == {"cancel"}
    assert exchange.max_in_window(pocket="main") <= 30
    assert exchange.max_in_window(pocket="sub") <= 30
