"""Shared fixtures."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import aiohttp
import pytest

from upbit_cancel import UpbitSession
from upbit_cancel.testing import FakeUpbit

#: Set to "required" (as .ci/run does), a missing redis-server fails the Redis tests instead of
#: skipping them.
REDIS_TESTS = "UPBIT_CANCEL_REDIS_TESTS"
_NO_REDIS = (
    "redis-server is not installed: install it (apt-get install redis-server, brew install "
    "redis) to run the Redis tests"
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line for the Redis tests skipped, rather than one for each; a line for each other
    test skipped."""
    redis = 0
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if _NO_REDIS in reason:
            redis += 1
        else:
            terminalreporter.write_line(f"SKIPPED {report.nodeid}: {reason}", yellow=True)
    if redis:
        terminalreporter.write_line(f"{redis} tests skipped: {_NO_REDIS}", yellow=True)


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpbit]:
    """A running fake exchange with default settings (sliding window, 30 per second)."""
    async with FakeUpbit() as exchange:
        yield exchange


class SessionFor(Protocol):
    """Makes an :class:`UpbitSession` of a fake exchange (see the ``session_for`` fixture)."""

    def __call__(
        self, fake: FakeUpbit, *, keys: tuple[str, str] | None = None, **options: Any
    ) -> UpbitSession: ...


def _session_for(
    fake: FakeUpbit, *, keys: tuple[str, str] | None = None, **options: Any
) -> UpbitSession:
    access_key, secret_key = keys or (fake.access_key, fake.secret_key)
    return UpbitSession(access_key, secret_key, base_url=fake.base_url, **options)


@pytest.fixture(scope="session")
def session_for() -> SessionFor:
    """Makes an UpbitSession of ``fake``: its key pair (or ``keys``), and any other options."""
    return _session_for


@pytest.fixture
async def fake_http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session for talking to the fake exchange directly."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def fake_in_thread() -> Iterator[FakeUpbit]:
    """A running fake exchange served by its own event loop in a background thread.

    For synchronous tests of code that runs its own loop, such as ``main([...])``. Seed orders
    and read states while no request is in flight (before and after the call under test).
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-upbit", daemon=True)
    thread.start()
    exchange = FakeUpbit()
    try:
        asyncio.run_coroutine_threadsafe(exchange.start(), loop).result(timeout=10)
        yield exchange
    finally:
        asyncio.run_coroutine_threadsafe(exchange.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


class RedisServer:
    """A real redis-server on a free loopback port, without persistence, that can be restarted."""

    def __init__(self, *options: str) -> None:
        #: More options of the server, such as ``"--requirepass", "secret"``.
        self.options = options
        executable = shutil.which("redis-server")
        if executable is None:
            # CI (.ci/run) requires the Redis tests; elsewhere they wait for a server installed.
            missing = pytest.fail if os.environ.get(REDIS_TESTS) == "required" else pytest.skip
            missing(_NO_REDIS)
        self.executable = executable
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", *self.options]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server for the whole test session."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's redis-server, emptied for this test."""
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=2) as conn:
        conn.sendall(b"FLUSHALL\r\n")
        assert conn.recv(16).startswith(b"+OK")
    return redis_server.url
