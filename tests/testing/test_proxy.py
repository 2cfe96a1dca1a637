"""PathProxy: a delayed path between a client and a server on loopback.

Timing assertions are lower bounds only: a delayed path is never faster than its delays.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from tests.helpers import until
from upbit_cancel import BatchCanceller, SlidingWindowLimiter, UpbitSession
from upbit_cancel.testing import FakeUpbit, PathProxy

ONE_WAY = 0.05

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """A TCP server on loopback running ``handler`` for each connection; yields ``host:port``.

    On the way out it waits for every handler to end, so that no task outlives a test.
    """
    handlers: set[asyncio.Task[Any]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(run, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    try:
        yield f"{host}:{port}"
    finally:
        server.close()
        await asyncio.gather(*handlers)
        await server.wait_closed()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s socket with a reset, as a peer that aborts does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.fixture
async def http_target() -> AsyncIterator[tuple[str, list[float]]]:
    """A tiny aiohttp server answering ``GET /``: its base URL, and when requests arrived."""
    arrivals: list[float] = []

    async def hello(request: web.Request) -> web.Response:
        arrivals.append(asyncio.get_running_loop().time())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", arrivals
    finally:
        await runner.cleanup()


async def test_a_new_connection_pays_the_handshake(http_target: tuple[str, list[float]]) -> None:
    """A new connection's request arrives after 3 one-way trips and is answered after 4; a
    request on the same connection is answered after 2."""
    target, arrivals = http_target
    loop = asyncio.get_running_loop()
    async with PathProxy(target, one_way=ONE_WAY) as proxy, aiohttp.ClientSession() as http:
        started = loop.time()
        async with http.get(f"{proxy.base_url}/") as reply:
            assert await reply.text() == "ok"
        assert arrivals[0] - started >= 3 * ONE_WAY
        assert loop.time() - started >= 4 * ONE_WAY

        started = loop.time()
        async with http.get(f"{proxy.base_url}/") as reply:
            assert await reply.text() == "ok"
        assert arrivals[1] - started >= ONE_WAY
        assert loop.time() - started >= 2 * ONE_WAY
        assert proxy.connections == 1


async def test_bytes_arrive_in_order_under_jitter() -> None:
    """2,000 small writes through a jittery path come back in order and intact."""
    chunks = [b"%05d," % number for number in range(2_000)]
    async with serving(echo) as target, PathProxy(target, one_way=0.001, jitter=0.01) as proxy:
        reader, writer = await asyncio.open_connection(*proxy.address)
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            # A turn of the loop, so that the proxy reads most writes on their own and each
            # draws a delay of its own.
            await asyncio.sleep(0)
        writer.write_eof()
        received = await reader.read()
        writer.close()
        await writer.wait_closed()
    assert received == b"".join(chunks)
    assert proxy.bytes_up == proxy.bytes_down == len(received)


async def test_eof_travels_both_ways_with_the_delay() -> None:
    """The client's half-close reaches the target after its bytes, one trip late, and the
    target's close reaches the client one trip after the target's answer."""
    loop = asyncio.get_running_loop()
    heard: list[tuple[bytes, float]] = []

    async def answer_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read()  # up to the client's EOF
        heard.append((request, loop.time()))
        writer.write(b"bye")  # then `serving` closes the connection

    async with serving(answer_after_eof) as target, PathProxy(target, one_way=ONE_WAY) as proxy:
        started = loop.time()
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"hello")
        writer.write_eof()
        assert await reader.read() == b"bye"  # up to the target's EOF
        ended = loop.time()
        [(request, eof_heard)] = heard
        assert request == b"hello"
        assert eof_heard - started >= 3 * ONE_WAY
        assert ended - eof_heard >= ONE_WAY
        await until(lambda: proxy.open_connections == 0)
        writer.close()
        await writer.wait_closed()


async def test_a_reset_client_resets_the_target() -> None:
    """When the client resets its connection, the target's is reset too."""
    outcomes: list[bytes | ConnectionResetError] = []

    async def read_until_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            outcomes.append(await reader.read())
        except ConnectionResetError as error:
            outcomes.append(error)

    async with serving(read_until_reset) as target, PathProxy(target, one_way=0.01) as proxy:
        _, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"half a request")
        await until(lambda: proxy.bytes_up > 0)
        reset(writer)
        await until(lambda: bool(outcomes))
        assert isinstance(outcomes[0], ConnectionResetError)
        await until(lambda: proxy.open_connections == 0)


async def test_a_reset_target_resets_the_client() -> None:
    """When the target resets its connection, the client's is reset too."""

    async def reset_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reset(writer)

    async with serving(reset_at_once) as target, PathProxy(target, one_way=0.01) as proxy:
        reader, writer = await asyncio.open_connection(*proxy.address)
        with pytest.raises(ConnectionResetError):
            await reader.read()
        writer.close()
        await until(lambda: proxy.open_connections == 0)


async def test_a_target_that_refuses_resets_the_client() -> None:
    """A client whose connection the target refuses sees a reset."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    async with PathProxy(f"127.0.0.1:{port}") as proxy:
        reader, writer = await asyncio.open_connection(*proxy.address)
        with pytest.raises(ConnectionResetError):
            await reader.read()
        writer.close()
        await until(lambda: proxy.open_connections == 0)


async def test_closing_resets_every_connection_and_leaves_nothing_behind() -> None:
    """Closing the proxy resets the connections through it and ends every task it started."""
    targets: list[asyncio.StreamReader] = []
    targets_reset: list[ConnectionResetError] = []

    async def wait_for_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        targets.append(reader)
        try:
            await reader.read()
        except ConnectionResetError as error:
            targets_reset.append(error)

    async with serving(wait_for_reset) as target:
        proxy = PathProxy(target, one_way=ONE_WAY)
        await proxy.start()
        clients = [await asyncio.open_connection(*proxy.address) for _ in range(3)]
        for _, writer in clients:
            writer.write(b"still on its way")
        await until(lambda: proxy.open_connections == len(targets) == 3)
        await proxy.aclose()
        assert proxy.open_connections == 0
        assert proxy.connections == 3
        for reader, writer in clients:
            with pytest.raises(ConnectionResetError):
                await reader.read()
            writer.close()
    assert len(targets_reset) == 3
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_closed_proxy_stays_closed() -> None:
    """Closing twice does nothing more; a closed proxy cannot start again."""
    async with serving(echo) as target:
        proxy = PathProxy(target)
        with pytest.raises(RuntimeError, match="not started"):
            proxy.address  # noqa: B018 - the property raises
        async with proxy:
            host, port = proxy.address
            assert proxy.base_url == f"{host}:{port}"
        await proxy.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await proxy.start()


async def test_upbit_session_cancels_through_the_path() -> None:
    """UpbitSession cancels 100 orders on FakeUpbit through the proxy; the fake sees every one."""
    async with (
        FakeUpbit() as fake,
        PathProxy(fake.base_url, one_way=0.005, jitter=0.005, seed=1) as proxy,
    ):
        assert proxy.base_url.startswith("http://127.0.0.1:")
        uuids = fake.add_orders(100)
        session = UpbitSession(
            fake.access_key,
            fake.secret_key,
            base_url=proxy.base_url,
            limiter=SlidingWindowLimiter(),
        )
        async with session:
            result = await BatchCanceller(session).cancel(uuids=uuids)
        assert result.success.count == 100
        assert fake.state_counts()["cancel"] == 100
        assert sorted(uuid for record in fake.records for uuid in record.canceled) == sorted(uuids)
        assert proxy.connections >= 1
        assert proxy.bytes_up > 0
        assert proxy.bytes_down > 0


async def test_tls_passes_through_untouched() -> None:
    """An https target stays https through the proxy, and its certificate still matches."""
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context).start()
        port = runner.addresses[0][1]
        async with (
            PathProxy(f"https://127.0.0.1:{port}", one_way=0.002) as proxy,
            aiohttp.ClientSession() as http,
        ):
            assert proxy.base_url.startswith("https://127.0.0.1:")
            async with http.get(f"{proxy.base_url}/", ssl=client_context) as reply:
                assert await reply.text() == "ok"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("target", "options", "error", "message"),
    [
        ("http://127.0.0.1:8123", {"one_way": -0.1}, ValueError, "one_way must be zero or more"),
        ("http://127.0.0.1:8123", {"one_way": math.inf}, ValueError, "one_way must be zero"),
        ("http://127.0.0.1:8123", {"jitter": math.nan}, ValueError, "jitter must be zero"),
        ("http://127.0.0.1:8123", {"jitter": "0.01"}, TypeError, "jitter must be a number"),
        ("http://127.0.0.1:8123", {"one_way": True}, TypeError, "one_way must be a number"),
        ("http://127.0.0.1:8123", {"port": 70_000}, ValueError, "port must be between"),
        ("http://127.0.0.1:8123", {"seed": "1"}, TypeError, "seed must be"),
        ("http://127.0.0.1", {}, ValueError, "must be a host and a port"),
        ("127.0.0.1", {}, ValueError, "must be a host and a port"),
        ("http://127.0.0.1:port", {}, ValueError, "must be a host and a port"),
        ("http://127.0.0.1:8123/v1", {}, ValueError, "must be a host and a port"),
        ("ftp://127.0.0.1:21", {}, ValueError, "scheme must be one of"),
        (8123, {}, TypeError, "target must be a URL"),
    ],
)
def test_arguments_are_checked(
    target: Any, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Bad targets, delays, ports and seeds are refused with an error that says what to pass."""
    with pytest.raises(error, match=message):
        PathProxy(target, **options)
