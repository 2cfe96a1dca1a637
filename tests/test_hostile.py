"""What a hostile user tries: each case once broke a promise, and must never again.

Every id the caller's input produced is settled exactly once, whatever is raised or cancelled
where; no more than the limit reaches the exchange in any window, abandoned requests included;
bad input is refused at the boundary; secrets stay out of errors and logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import pickle
import re
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiolimiter import AsyncLimiter

from upbit_cancel import (
    BatchCanceller,
    BatchResult,
    BlockedError,
    ChunkResult,
    InvalidIdError,
    MalformedResponseError,
    OutcomeUnknownError,
    Progress,
    ResponseTimeoutError,
    SessionClosedError,
    SlidingWindowLimiter,
    UpbitError,
    UpbitSession,
)
from upbit_cancel.testing import FakeUpbit, Faults

JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


def session_for(fake: FakeUpbit, **options: Any) -> UpbitSession:
    return UpbitSession(fake.access_key, fake.secret_key, base_url=fake.base_url, **options)


def placed(result: BatchResult, *, by: str = "uuids") -> list[str]:
    """Every id the result lists, once per listing (so a twice-listed id shows twice)."""
    ids = [
        order.uuid if by == "uuids" else (order.identifier or "")
        for order in (*result.success.orders, *result.failed.orders)
    ]
    return ids + [entry.id for entry in result.unresolved]


def chunk_ids(chunks: list[ChunkResult]) -> list[str]:
    return [value for chunk in chunks for value in chunk.ids]


# -- every id accounted for -------------------------------------------------------------------


async def test_a_block_met_by_another_session_settles_every_id() -> None:
    """The account blocked before the batch starts: all 100 ids unresolved, none sent."""
    async with FakeUpbit(limit=10_000) as fake:
        ids = fake.add_orders(100)
        async with session_for(fake) as other, session_for(fake) as session:
            fake.queue_response(418, {"error": {"name": "blocked", "message": "blocked for 30 s"}})
            with pytest.raises(BlockedError):
                await other.cancel_orders(uuids=["0000abcd-0000-4000-8000-000000000000"])
            result = await BatchCanceller(session, max_in_flight=1).cancel(uuids=ids)
        assert sorted(placed(result)) == sorted(ids)
        assert all(isinstance(entry.error, BlockedError) for entry in result.unresolved)
        assert len(fake.records) == 1
        assert all(fake.state(uuid) == "wait" for uuid in ids)


async def test_a_session_closed_mid_batch_settles_every_id() -> None:
    """aclose() while a batch runs: what was sent is reported, the rest is unresolved."""
    async with FakeUpbit(limit=10_000) as fake:
        ids = fake.add_orders(100)
        session = session_for(fake)
        closing: list[asyncio.Task[None]] = []

        def close_after_first(progress: Progress) -> None:
            if not closing:
                closing.append(asyncio.ensure_future(session.aclose()))

        async with session:
            batch = BatchCanceller(session, max_in_flight=1, on_progress=close_after_first)
            result = await batch.cancel(uuids=ids)
        await asyncio.gather(*closing)
        assert sorted(placed(result)) == sorted(ids)
        assert result.success.count == 20
        assert all(isinstance(entry.error, SessionClosedError) for entry in result.unresolved)


async def test_stream_hands_over_every_chunk_when_a_block_lands_while_the_consumer_lags() -> None:
    """Another session meets a 418 while the consumer is busy: every chunk still comes out."""
    async with FakeUpbit(limit=10_000) as fake:
        ids = fake.add_orders(200)
        async with session_for(fake) as session, session_for(fake) as other:
            chunks: list[ChunkResult] = []
            stream = BatchCanceller(session, max_in_flight=1).stream(uuids=ids)
            async with contextlib.aclosing(stream) as results:
                async for chunk in results:
                    chunks.append(chunk)
                    if len(chunks) == 1:
                        # Lag until the worker waits to hand over a result, then get blocked.
                        await fake.wait_for(lambda fake: len(fake.records) >= 3)
                        fake.queue_response(
                            418, {"error": {"name": "blocked", "message": "blocked for 30 s"}}
                        )
                        with pytest.raises(BlockedError):
                            await other.cancel_orders(
                                uuids=["0000abcd-0000-4000-8000-000000000000"]
                            )
        assert sorted(chunk_ids(chunks)) == sorted(ids)
        assert len(fake.records) == 4


async def test_a_caller_closing_its_own_http_session_loses_no_id() -> None:
    """The caller's aiohttp session closed mid-batch: every id settled, no stray CancelledError."""
    async with FakeUpbit(limit=10_000, faults=Faults(jitter_in=0.002)) as fake:
        ids = fake.add_orders(2_000)
        # A small pool: requests wait for a connection, and closing cancels those waits.
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=10))
        closing: list[asyncio.Task[None]] = []

        def close_midway(progress: Progress) -> None:
            if not closing:
                closing.append(asyncio.ensure_future(http.close()))

        limiter = SlidingWindowLimiter(10_000, 1.0)
        async with session_for(fake, http_session=http, limiter=limiter) as session:
            batch = BatchCanceller(session, max_in_flight=200, on_progress=close_midway)
            result = await batch.cancel(uuids=ids)
        await asyncio.gather(*closing)
        assert sorted(placed(result)) == sorted(ids)
        canceled = {order.uuid for order in result.success.orders}
        assert all(fake.state(uuid) == "cancel" for uuid in canceled)
        for entry in result.unresolved:
            assert isinstance(entry.error, SessionClosedError | OutcomeUnknownError)
            if fake.state(entry.id) == "cancel":
                # Canceled by a request whose answer was lost: only "unknown" may say so.
                assert isinstance(entry.error, OutcomeUnknownError)


async def test_requests_waiting_for_a_connection_of_a_closed_http_session_fail_clearly() -> None:
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


async def test_an_on_progress_raising_cancelled_error_loses_no_id() -> None:
    """A progress callback raising CancelledError is the callback's failure, not a cancellation."""
    async with FakeUpbit(limit=10_000) as fake:
        ids = fake.add_orders(2_000)

        def broken(progress: Progress) -> None:
            raise asyncio.CancelledError

        async with session_for(fake) as session:
            result = await BatchCanceller(session, on_progress=broken).cancel(uuids=ids)
        assert sorted(placed(result)) == sorted(ids)
        assert result.success.count == 2_000


@pytest.mark.parametrize("cancel_after", range(20))
async def test_a_cancelled_batch_lists_every_id_its_generator_produced(cancel_after: int) -> None:
    """Cancelled at any point: each id the generator gave is in last_result, read-ahead too."""
    async with FakeUpbit(limit=10_000, faults=Faults(jitter_in=0.003)) as fake:
        uuids = fake.add_orders(2_000)
        produced: list[str] = []

        def generate() -> Iterator[str]:
            for uuid in uuids:
                produced.append(uuid)
                yield uuid

        async with session_for(fake) as session:
            batch = BatchCanceller(session, max_in_flight=2)
            task = asyncio.ensure_future(batch.cancel(uuids=generate()))
            for _ in range(cancel_after):
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        listed = [] if batch.last_result is None else placed(batch.last_result)
        assert sorted(listed) == sorted(produced)


async def test_ids_given_before_an_iterable_fails_are_all_sent() -> None:
    """The iterable raises midway: every id it gave before is sent, then its error surfaces."""
    async with FakeUpbit(limit=10_000, faults=Faults(jitter_in=0.002)) as fake:
        uuids = fake.add_orders(2_000)

        def generate() -> Iterator[str]:
            yield from uuids[:1_000]
            raise OSError("the file went away")

        async with session_for(fake) as session:
            batch = BatchCanceller(session)
            with pytest.raises(OSError, match="went away"):
                await batch.cancel(uuids=generate())
        assert batch.last_result is not None
        assert sorted(placed(batch.last_result)) == sorted(uuids[:1_000])
        assert batch.last_result.success.count == 1_000
        assert all(fake.state(uuid) == "cancel" for uuid in uuids[:1_000])


async def test_an_unencodable_identifier_is_unresolved_and_spares_its_chunk() -> None:
    """A lone surrogate cannot go on the wire: that id is invalid, its neighbours are canceled."""
    async with FakeUpbit() as fake:
        first = fake.add_order(identifier="bot-1")
        second = fake.add_order(identifier="bot-2")
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel(identifiers=["bot-1", "\ud800", "bot-2"])
        assert [order.identifier for order in result.success.orders] == ["bot-1", "bot-2"]
        assert [entry.id for entry in result.unresolved] == ["\ud800"]
        assert isinstance(result.unresolved[0].error, InvalidIdError)
        assert fake.state(first) == fake.state(second) == "cancel"


async def test_an_overlong_identifier_is_unresolved() -> None:
    """An identifier too long for any request is refused alone, never sent."""
    async with FakeUpbit() as fake:
        fake.add_order(identifier="bot-1")
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel(identifiers=["bot-1", "x" * 10_000])
        assert [order.identifier for order in result.success.orders] == ["bot-1"]
        assert [entry.id for entry in result.unresolved] == ["x" * 10_000]
        assert isinstance(result.unresolved[0].error, InvalidIdError)


async def test_a_non_string_never_hides_the_string_it_looks_like() -> None:
    """identifiers=[1001, "1001"]: the int is invalid, the string "1001" is still canceled."""
    async with FakeUpbit() as fake:
        uuid = fake.add_order(identifier="1001")
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel(identifiers=[1001, "1001"])  # type: ignore[list-item]
        assert [order.identifier for order in result.success.orders] == ["1001"]
        assert fake.state(uuid) == "cancel"
        assert len(result.unresolved) == 1
        assert isinstance(result.unresolved[0].error, InvalidIdError)
        assert "int" in str(result.unresolved[0].error)


async def test_an_id_in_both_lists_is_unresolved_not_success() -> None:
    """A contradictory answer (success and failed) leaves that id unresolved with the reason."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(2)
        both = {"uuid": uuids[0], "market": "SGD-BTC"}
        other = {"uuid": uuids[1], "market": "SGD-BTC"}
        fake.queue_response(
            200,
            {
                "success": {"count": 2, "orders": [both, other]},
                "failed": {"count": 1, "orders": [both]},
            },
        )
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel(uuids=uuids)
        assert [order.uuid for order in result.success.orders] == [uuids[1]]
        assert result.failed.count == 0
        assert [entry.id for entry in result.unresolved] == [uuids[0]]
        assert isinstance(result.unresolved[0].error, MalformedResponseError)
        assert "both" in str(result.unresolved[0].error)


# -- never more than the limit at the exchange ------------------------------------------------


async def test_abandoned_requests_that_arrive_late_never_crowd_a_window() -> None:
    """Requests given up on (read timeout) may still arrive: they keep their slot until then."""
    limit, window = 5, 0.2
    faults = Faults(jitter_in=0.25)
    async with FakeUpbit(limit=limit, window=window, faults=faults, seed=3) as fake:
        uuids = fake.add_orders(40)
        limiter = SlidingWindowLimiter(limit, window, max_transit=0.3)
        async with session_for(fake, limiter=limiter, read_timeout=0.05) as session:

            async def one(uuid: str) -> None:
                with contextlib.suppress(UpbitError):
                    await session.cancel_orders(uuids=[uuid])

            await asyncio.gather(*(one(uuid) for uuid in uuids))
        # Wait until every request the client gave up on has arrived at the exchange.
        await fake.wait_for(lambda fake: fake.in_transit == 0)
        assert len(fake.records) == fake.received
        # Every arrival admitted (no 429), and no window holds more than the limit.
        assert fake.stats()["rejected_429"] == 0
        assert fake.max_in_window() <= limit


async def test_a_cancelled_request_keeps_its_slot_until_it_can_no_longer_arrive() -> None:
    """Tasks cancelled while their requests travel slowly: faster ones after them still fit."""
    limit, window = 5, 0.2
    async with FakeUpbit(limit=limit, window=window, faults=Faults(latency_in=0.3)) as fake:
        uuids = fake.add_orders(10)
        limiter = SlidingWindowLimiter(limit, window, max_transit=0.4)
        async with session_for(fake, limiter=limiter) as session:
            first = [asyncio.ensure_future(session.cancel_orders(uuids=[u])) for u in uuids[:5]]
            # Cancelled once the exchange has their bytes: they will arrive all the same, and
            # the path gets faster for the requests after them.
            await fake.wait_for(lambda fake: fake.received >= 5)
            fake.faults = Faults(latency_in=0.05)
            for task in first:
                task.cancel()
            await asyncio.gather(*first, return_exceptions=True)
            await asyncio.gather(*(session.cancel_orders(uuids=[u]) for u in uuids[5:]))
        await fake.wait_for(lambda fake: fake.in_transit == 0)
        assert len(fake.records) == fake.received == 10
        assert fake.stats()["rejected_429"] == 0
        assert fake.max_in_window() <= limit


async def test_an_explicit_limiter_and_the_automatic_one_share_one_budget() -> None:
    """A session given limiter= and another of the same key without: one budget, no 429."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(60)
        explicit = session_for(fake, limiter=SlidingWindowLimiter(30, 1.0))
        automatic = session_for(fake)
        async with explicit, automatic:
            await asyncio.gather(
                *(explicit.cancel_orders(uuids=[uuid]) for uuid in uuids[:30]),
                *(automatic.cancel_orders(uuids=[uuid]) for uuid in uuids[30:]),
            )
        assert fake.stats()["rejected_429"] == 0
        assert fake.max_in_window() <= 30


async def test_two_different_busy_limiters_for_one_key_are_a_clear_error() -> None:
    """A second limiter for a key whose first one is in use is refused, saying what to do."""
    async with FakeUpbit() as fake:
        uuid = fake.add_order()
        async with session_for(fake, limiter=SlidingWindowLimiter(30, 1.0)) as first:
            await first.cancel_orders(uuids=[uuid])
            with pytest.raises(ValueError, match="same limiter"):
                async with session_for(fake, limiter=SlidingWindowLimiter(30, 1.0)):
                    pass


async def test_an_aiolimiter_is_accepted_as_the_limiter() -> None:
    """limiter=aiolimiter.AsyncLimiter(30, 1) works: the design's token bucket, by adapter."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(40)
        limiter = AsyncLimiter(30, 1)
        async with session_for(fake, limiter=limiter) as session:
            result = await BatchCanceller(session).cancel(uuids=uuids)
        assert result.success.count == 40


# -- the boundary ----------------------------------------------------------------------------


async def test_wrong_types_are_refused_with_a_message_that_says_what_to_pass() -> None:
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
    message: str, headers: dict[str, str], expected: float
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


# -- secrets and resources --------------------------------------------------------------------


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


async def test_errors_pickle_with_their_fields() -> None:
    """Errors cross process boundaries (multiprocessing, logging queues) intact."""
    async with FakeUpbit() as fake:
        uuid = fake.add_order()
        fake.queue_response(418, {"error": {"name": "blocked", "message": "blocked for 30 s"}})
        async with session_for(fake) as session:
            with pytest.raises(BlockedError) as caught:
                await session.cancel_orders(uuids=[uuid])
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is BlockedError
    assert (copy.status, copy.name, copy.ids, copy.retry_after) == (
        caught.value.status,
        caught.value.name,
        caught.value.ids,
        caught.value.retry_after,
    )
    assert str(copy) == str(caught.value)


async def test_a_huge_answer_is_not_read_past_a_cap() -> None:
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


# -- more ways in -------------------------------------------------------------------------


async def test_a_request_abandoned_after_waiting_for_a_connection_still_fits_the_window() -> None:
    """Marked leaving, then it waits for a pooled connection: its hold counts from its end."""
    limit, window = 2, 0.2
    # The first answer takes 0.45 s: the second request waits that long for the connection.
    faults = Faults(latency_in=0.15, latency_out=0.3)
    async with FakeUpbit(limit=limit, window=window, faults=faults) as fake:
        uuids = fake.add_orders(6)
        limiter = SlidingWindowLimiter(limit, window, max_transit=0.2)
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        async with http, session_for(fake, limiter=limiter, http_session=http) as session:
            first = asyncio.ensure_future(session.cancel_orders(uuids=[uuids[0]]))
            # Waits for the only connection, then leaves once the first is answered.
            second = asyncio.ensure_future(session.cancel_orders(uuids=[uuids[1]]))
            await fake.wait_for(lambda fake: fake.received >= 2)
            second.cancel()
            await asyncio.gather(first, second, return_exceptions=True)
            fake.faults = Faults()
            await asyncio.gather(*(session.cancel_orders(uuids=[u]) for u in uuids[2:]))
        await fake.wait_for(lambda fake: fake.in_transit == 0)
        assert fake.stats()["rejected_429"] == 0
        assert fake.max_in_window() <= limit


async def test_a_stream_cancelled_twice_still_leaves_its_result() -> None:
    """A second cancellation while the stream winds down does not lose what it read."""
    async with FakeUpbit(faults=Faults(latency_in=0.05)) as fake:
        uuids = fake.add_orders(200)
        async with session_for(fake) as session:
            batch = BatchCanceller(session)

            async def consume() -> None:
                async with contextlib.aclosing(batch.stream(uuids=uuids)) as chunks:
                    async for _ in chunks:
                        pass

            task = asyncio.ensure_future(consume())
            await fake.wait_for(lambda fake: fake.received >= 1)
            task.cancel()
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert batch.last_result is not None
        assert len(placed(batch.last_result)) == 200


def test_a_key_with_a_character_no_key_has_is_refused_without_echoing_it() -> None:
    """A lone surrogate in the secret fails at once, naming the key, never showing it."""
    secret = "MYSECRET" + "k" * 31 + "\ud800"
    with pytest.raises(ValueError, match="secret_key") as caught:
        UpbitSession("a" * 40, secret)
    assert "MYSECRET" not in str(caught.value)


async def test_no_token_is_reachable_from_the_callers_own_timeout() -> None:
    """asyncio.timeout around a call: the TimeoutError's chain holds no JWT."""
    async with FakeUpbit(faults=Faults(latency_in=5.0)) as fake, session_for(fake) as session:
        with pytest.raises(TimeoutError) as caught:
            async with asyncio.timeout(0.2):
                await session.cancel_orders(uuids=[UUID])
    assert not JWT.search(_reachable_text(caught.value))


async def test_an_item_whose_repr_fails_spares_the_ids_after_it() -> None:
    """A broken __repr__ makes one invalid id, not the end of the input."""

    class BrokenRepr:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    async with FakeUpbit() as fake, session_for(fake) as session:
        uuids = fake.add_orders(40)
        items: list[object] = [*uuids[:20], BrokenRepr(), *uuids[20:]]
        result = await BatchCanceller(session).cancel(uuids=items)  # type: ignore[arg-type]
    assert result.success.count == 40
    assert len(result.unresolved) == 1
    assert isinstance(result.unresolved[0].error, InvalidIdError)


async def test_a_string_that_looks_like_a_non_strings_label_is_still_sent() -> None:
    """The identifier "<int 1001>" and the int 1001: the string is canceled, the int refused."""
    async with FakeUpbit() as fake, session_for(fake) as session:
        uuid = fake.add_order(identifier="<int 1001>")
        result = await BatchCanceller(session).cancel(identifiers=["<int 1001>", 1001])  # type: ignore[list-item]
    assert [order.uuid for order in result.success.orders] == [uuid]
    assert [type(entry.error) for entry in result.unresolved] == [InvalidIdError]


async def test_an_input_whose_items_cannot_be_hashed_still_reports_progress() -> None:
    """Counting a list's distinct ids never aborts the batch, whatever its items do."""

    class BadHash:
        def __hash__(self) -> int:
            raise ValueError("no hash")

    reports: list[Progress] = []
    async with FakeUpbit() as fake, session_for(fake) as session:
        uuids = fake.add_orders(30)
        batch = BatchCanceller(session, on_progress=reports.append)
        result = await batch.cancel(uuids=[*uuids, BadHash()])  # type: ignore[list-item]
    assert result.success.count == 30
    assert reports[-1].total == 31


async def test_the_seams_refuse_wrong_types_and_survive_a_failing_callback(
    caplog: pytest.LogCaptureFixture,
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
