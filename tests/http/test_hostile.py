"""What a hostile user tries on the session: bad input is refused at the boundary, secrets stay
out of errors and logs, and no answer or connection holds a request past its limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import types
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import SessionFor
from upbit_cancel import (
    BatchCanceller,
    BlockedError,
    MalformedResponseError,
    ResponseTimeoutError,
    UpbitError,
    UpbitSession,
)
from upbit_cancel.testing import FakeUpbit, Faults

JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


async def test_requests_waiting_for_a_connection_of_a_closed_http_session_fail_clearly(
    session_for: SessionFor,
) -> None:
    """Closing the caller's session under waiting requests: UpbitErrors, never CancelledError."""
    async with FakeUpbit(faults=Faults(latency_in=0.05)) as fake:
        uuids = fake.add_orders(3)
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        async with session_for(fake, http_session=http) as session:
            leaving = 0
            all_leaving = asyncio.Event()

            def left() -> None:
                nonlocal leaving
                leaving += 1
                if leaving == 3:
                    all_leaving.set()

            calls = [
                asyncio.ensure_future(session.cancel_orders(uuids=[u], on_send=left)) for u in uuids
            ]
            # All three in aiohttp's hands: one on the connection, two waiting for it.
            await all_leaving.wait()
            await http.close()
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(outcome, UpbitError) for outcome in outcomes), outcomes


async def test_wrong_types_are_refused_with_a_message_that_says_what_to_pass(
    session_for: SessionFor,
) -> None:
    """Nonsense arguments fail at once with TypeError or ValueError naming the fix."""
    async with FakeUpbit() as fake:
        with pytest.raises(TypeError, match="read_timeout"):
            session_for(fake, read_timeout="5")
        with pytest.raises(ValueError, match="read_timeout"):
            session_for(fake, read_timeout=math.nan)
        with pytest.raises(ValueError, match="connect_timeout"):
            session_for(fake, connect_timeout=math.inf)
        with pytest.raises(TypeError, match="limiter"):
            session_for(fake, limiter="x")
        async with session_for(fake) as session:
            with pytest.raises(TypeError, match="uuids"):
                await session.cancel_orders(uuids=5)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="parameter names"):
                await session.request("GET", "/v1/orders/open", params={1: "x"})  # type: ignore[dict-item]
        assert fake.records == []


@pytest.mark.parametrize(
    ("message", "headers", "expected"),
    [
        ("limit: 30 requests per 1 s. You are blocked.", {}, 60.0),
        ("Your access is blocked for 0 seconds.", {}, 1.0),
        ("Too many requests.", {"Retry-After": "120"}, 120.0),
        ("blocked for 30 seconds", {"Retry-After": "90"}, 90.0),
    ],
)
async def test_a_block_is_never_shorter_than_stated_nor_than_a_window(
    message: str, headers: dict[str, str], expected: float, session_for: SessionFor
) -> None:
    """418: the longest duration stated (message or Retry-After), at least a window."""
    async with FakeUpbit() as fake:
        uuid = fake.add_order()
        fake.queue_response(
            418, {"error": {"name": "blocked", "message": message}}, headers=headers
        )
        async with session_for(fake) as session:
            with pytest.raises(BlockedError) as caught:
                await session.cancel_orders(uuids=[uuid])
        assert caught.value.retry_after == pytest.approx(expected)


def _reachable_text(error: BaseException) -> str:
    """Text reachable from an error: its chain, attributes and its traceback's local variables."""
    seen: set[int] = set()
    texts: list[str] = []

    def visit(value: object, depth: int) -> None:
        if id(value) in seen or depth > 6:
            return
        seen.add(id(value))
        if isinstance(value, str | bytes):
            texts.append(str(value))
            return
        if isinstance(value, types.FrameType | types.ModuleType | type | UpbitSession):
            # The session holds the caller's own credentials by design; what matters is what
            # an error carries besides it.
            return
        with contextlib.suppress(Exception):
            texts.append(repr(value))
        if isinstance(value, BaseException):
            visit(value.__cause__, depth + 1)
            visit(value.__context__, depth + 1)
            traceback = value.__traceback__
            while traceback is not None:
                for local in traceback.tb_frame.f_locals.values():
                    visit(local, depth + 1)
                traceback = traceback.tb_next
        if isinstance(value, dict):
            for item in value.values():
                visit(item, depth + 1)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                visit(item, depth + 1)
        with contextlib.suppress(TypeError):
            for item in vars(value).values():
                visit(item, depth + 1)
        for name in getattr(type(value), "__slots__", ()):
            visit(getattr(value, name, None), depth + 1)

    visit(error, 0)
    return "\n".join(texts)


@contextlib.asynccontextmanager
async def raw_server(answer: bytes) -> AsyncIterator[str]:
    """A TCP server on loopback that answers any request with these raw bytes, then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def app_server(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


SECRET = "s" * 40


UUID = "0000abcd-0000-4000-8000-000000000000"


async def test_no_token_is_reachable_from_a_protocol_error() -> None:
    """A garbled HTTP answer: the error's chain and traceback hold no JWT."""
    async with (
        raw_server(b"HELLO WORLD\r\n\r\n") as base_url,
        UpbitSession("a" * 40, SECRET, base_url=base_url) as session,
    ):
        with pytest.raises(UpbitError) as caught:
            await session.cancel_orders(uuids=[UUID])
    error = caught.value
    assert not JWT.search(_reachable_text(error))
    assert SECRET not in repr(error)


async def test_a_token_echoed_by_the_server_is_redacted_in_messages_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server quoting the Authorization header back: no token in errors or logs."""

    async def echo(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        if request.query.get("uuids[]") == UUID:
            return web.json_response(
                {"error": {"name": "jwt_verification", "message": f"bad header {header}"}},
                status=401,
            )
        return web.Response(status=502, text=f"upstream said: {header}", content_type="text/plain")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    caplog.set_level(logging.DEBUG, logger="upbit_cancel")
    async with (
        app_server(app) as base_url,
        UpbitSession("a" * 40, SECRET, base_url=base_url) as session,
    ):
        with pytest.raises(UpbitError) as refused:
            await session.cancel_orders(uuids=[UUID])
        result = await BatchCanceller(session).cancel(uuids=[UUID.replace("0000abcd", "1111abcd")])
    assert "Bearer" in str(refused.value)
    assert not JWT.search(str(refused.value))
    assert not JWT.search(_reachable_text(refused.value))
    assert [entry.error is not None for entry in result.unresolved] == [True]
    assert not JWT.search(str(result.unresolved[0].error))
    assert not JWT.search(caplog.text)


def test_a_url_password_is_never_echoed() -> None:
    """A base_url carrying a password is refused without repeating the password."""
    with pytest.raises(ValueError, match="password") as caught:
        UpbitSession("a" * 40, SECRET, base_url="https://bot:hunter2@example.com/api")
    assert "hunter2" not in str(caught.value)


async def test_a_huge_answer_is_not_read_past_a_cap(session_for: SessionFor) -> None:
    """A 3 MiB body is refused as malformed after 1 MiB, not held in memory."""
    async with FakeUpbit() as fake:
        uuid = fake.add_order()
        fake.queue_response(200, b"[" + b"0," * (3 * 2**19) + b"0]")
        async with session_for(fake) as session:
            with pytest.raises(MalformedResponseError, match="MiB"):
                await session.cancel_orders(uuids=[uuid])


async def test_a_slow_drip_ends_at_the_total_deadline() -> None:
    """An answer trickling a byte at a time cannot keep a request open past its deadline."""

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(10_000):
                await response.write(b" ")
                await asyncio.sleep(0.02)
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", drip)
    async with (
        app_server(app) as base_url,
        UpbitSession(
            "a" * 40, SECRET, base_url=base_url, read_timeout=0.2, total_timeout=0.5
        ) as session,
    ):
        async with asyncio.timeout(5):
            with pytest.raises(ResponseTimeoutError):
                await session.cancel_orders(uuids=[UUID])


def test_a_key_with_a_character_no_key_has_is_refused_without_echoing_it() -> None:
    """A lone surrogate in the secret fails at once, naming the key, never showing it."""
    secret = "MYSECRET" + "k" * 31 + "\ud800"
    with pytest.raises(ValueError, match="secret_key") as caught:
        UpbitSession("a" * 40, secret)
    assert "MYSECRET" not in str(caught.value)


async def test_no_token_is_reachable_from_the_callers_own_timeout(session_for: SessionFor) -> None:
    """asyncio.timeout around a call: the TimeoutError's chain holds no JWT."""
    async with FakeUpbit(faults=Faults(latency_in=5.0)) as fake, session_for(fake) as session:
        with pytest.raises(TimeoutError) as caught:
            async with asyncio.timeout(0.2):
                await session.cancel_orders(uuids=[UUID])
    assert not JWT.search(_reachable_text(caught.value))


async def test_the_seams_refuse_wrong_types_and_survive_a_failing_callback(
    caplog: pytest.LogCaptureFixture,
    session_for: SessionFor,
) -> None:
    """stop= must be an Event; an on_send that raises is logged and the request goes on."""

    def broken() -> None:
        raise RuntimeError("display failed")

    async with FakeUpbit() as fake, session_for(fake) as session:
        uuid = fake.add_order()
        with pytest.raises(TypeError, match="stop"):
            await session.cancel_orders(uuids=[uuid], stop="x")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="method"):
            await session.request("ǆ", "/v1/orders/open")
        with pytest.raises(ValueError, match="path"):
            await session.request("GET", "/v1/orders open")
        result = await session.cancel_orders(uuids=[uuid], on_send=broken)
    assert result.success.count == 1
    assert "on_send raised" in caplog.text
    assert len(fake.records) == 1
