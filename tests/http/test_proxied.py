"""A session whose requests go through an HTTP proxy (a caller's ``http_session`` with its own
``proxy=``, or one that trusts the environment): its warm-up opens the connections the requests
will take, through the proxy, and times no handshake of another path."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import traceback
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import until
from upbit_cancel import (
    BatchCanceller,
    ConnectError,
    SessionClosedError,
    SlidingWindowLimiter,
    UpbitSession,
)
from upbit_cancel._http import session as session_module
from upbit_cancel._http.stream import STREAM_PATH
from upbit_cancel.testing import FakeUpbit, PathProxy

_PASSWORD = "proxy-password-31337"


class ConnectProxy:
    """An HTTP proxy on loopback that opens ``CONNECT`` tunnels, and counts them. With
    ``credentials`` (``user:password``) a tunnel needs them, as Basic proxy authorization."""

    def __init__(
        self, credentials: str | None = None, *, answer: bytes | None = None, silent: bool = False
    ) -> None:
        self._expected = None
        if credentials is not None:
            self._expected = "Basic " + base64.b64encode(credentials.encode()).decode()
        #: What it answers every CONNECT instead of opening a tunnel (b"": it closes).
        self._answer = answer
        #: Whether it answers no CONNECT at all (it reads on until the client leaves).
        self._silent = silent
        #: CONNECTs read so far.
        self.asked = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[object]] = set()
        #: Connections accepted so far.
        self.accepted = 0
        #: Tunnels opened so far.
        self.tunnels = 0
        #: Tunnels refused for want of credentials.
        self.refused = 0
        self.url = ""

    async def __aenter__(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        if self._handlers:
            await asyncio.wait(self._handlers)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.accepted += 1
        upstream: asyncio.StreamWriter | None = None
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ")
            fields = dict(line.split(": ", 1) for line in head[1:] if line)
            authorization = {name.lower(): value for name, value in fields.items()}.get(
                "proxy-authorization"
            )
            if method != "CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            self.asked += 1
            if self._silent:
                await reader.read()
                return
            if self._answer is not None:
                writer.write(self._answer)
                return
            if self._expected is not None and authorization != self._expected:
                self.refused += 1
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
                )
                return
            host, port = target.rsplit(":", 1)
            upstream_reader, upstream = await asyncio.open_connection(host, int(port))
            self._writers.add(upstream)
            self.tunnels += 1
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, upstream), _pipe(upstream_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for end in (writer, upstream):
                if end is not None:
                    end.close()
                    self._writers.discard(end)
            self._handlers.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No proxy named by the environment and no ~/.netrc entry, whatever the machine's own
    settings."""
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "WSS_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    (tmp_path / "netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return monkeypatch


@pytest.fixture
async def exchange() -> AsyncIterator[tuple[FakeUpbit, PathProxy]]:
    """The fake over TLS, behind a path that counts every connection that reaches it."""
    async with FakeUpbit(tls=True) as fake, PathProxy(fake.base_url) as path:
        yield fake, path


def _session(fake: FakeUpbit, path: PathProxy, http: aiohttp.ClientSession) -> UpbitSession:
    return UpbitSession(
        fake.access_key,
        fake.secret_key,
        base_url=path.base_url,
        http_session=http,
        limiter=SlidingWindowLimiter(),
    )


def _behind_proxy(
    fake: FakeUpbit, proxy: ConnectProxy, password: str, **options: Any
) -> aiohttp.ClientSession:
    """A caller's session with its own proxy and credentials for it. The newest aiohttp
    deprecates ``proxy_auth=``, yet it is what a caller of any supported release may give."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return aiohttp.ClientSession(
            connector=_connector(fake),
            proxy=proxy.url,
            proxy_auth=aiohttp.BasicAuth("bot", password),
            **options,
        )


def _connector(fake: FakeUpbit) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(ssl=fake.client_ssl_context())


async def test_a_warm_up_through_the_environments_proxy_opens_the_requests_connections(
    exchange: tuple[FakeUpbit, PathProxy], environment: pytest.MonkeyPatch
) -> None:
    """An http_session that trusts the environment, which names a proxy: the warm-up opens its
    ten connections as tunnels through the proxy and times no handshake (every connection at
    the exchange came through the proxy), and the burst's ten requests leave on them."""
    fake, path = exchange
    uuids = fake.add_orders(200)
    async with ConnectProxy() as proxy:
        environment.setenv("https_proxy", proxy.url)
        async with (
            aiohttp.ClientSession(connector=_connector(fake), trust_env=True) as http,
            _session(fake, path, http) as session,
        ):
            await session.warm_up(10, keep=False)
            assert (proxy.tunnels, path.connections, fake.received) == (10, 10, 0)
            result = await BatchCanceller(session, max_in_flight=10).cancel(uuids=uuids)
            assert (proxy.tunnels, path.connections) == (10, 10), "no connection opened anew"
    assert result.success.count == 200


async def test_a_warm_up_through_the_sessions_own_proxy_with_credentials_and_headers(
    exchange: tuple[FakeUpbit, PathProxy], caplog: pytest.LogCaptureFixture
) -> None:
    """An http_session made with proxy=, proxy_auth= and headers of its own (which aiohttp
    sends to the proxy too): the warm-up's tunnels are the ones the requests reuse, and the
    proxy's password is logged nowhere."""
    caplog.set_level(logging.DEBUG)
    fake, path = exchange
    uuids = fake.add_orders(100)
    async with (
        ConnectProxy(f"bot:{_PASSWORD}") as proxy,
        _behind_proxy(fake, proxy, _PASSWORD, headers={"X-Desk": "emergency"}) as http,
        _session(fake, path, http) as session,
    ):
        await session.warm_up(5, keep=False)
        assert (proxy.tunnels, path.connections) == (5, 5)
        result = await BatchCanceller(session, max_in_flight=5).cancel(uuids=uuids)
        assert (proxy.tunnels, path.connections) == (5, 5), "no connection opened anew"
    assert result.success.count == 100
    assert _PASSWORD not in caplog.text


async def test_a_host_the_environment_exempts_is_warmed_and_timed_directly(
    exchange: tuple[FakeUpbit, PathProxy], environment: pytest.MonkeyPatch
) -> None:
    """NO_PROXY names the exchange's host: the requests go straight there, and so does the
    warm-up, with its three handshakes timed."""
    fake, path = exchange
    async with ConnectProxy() as proxy:
        environment.setenv("HTTPS_PROXY", proxy.url)
        environment.setenv("NO_PROXY", "127.0.0.1")
        async with (
            aiohttp.ClientSession(connector=_connector(fake), trust_env=True) as http,
            _session(fake, path, http) as session,
        ):
            await session.warm_up(4, keep=False)
            assert (proxy.tunnels, path.connections) == (0, 4 + 3)


async def test_a_proxy_that_refuses_the_tunnel_is_a_connect_error_that_says_so(
    exchange: tuple[FakeUpbit, PathProxy],
) -> None:
    """Wrong credentials: the warm-up, and a cancel, raise a ConnectError that names the
    proxy's refusal (nothing reached the exchange, retrying is safe), chained to nothing and
    quoting no credential, not even in the local variables of its traceback's frames (which
    error reporters capture)."""
    fake, path = exchange
    [uuid] = fake.add_orders(1)
    async with ConnectProxy(f"bot:{_PASSWORD}") as proxy:
        async with (
            _behind_proxy(fake, proxy, "wrong-" + _PASSWORD) as http,
            _session(fake, path, http) as session,
        ):
            with pytest.raises(ConnectError, match=r"proxy refused .* \(HTTP 407\)") as warming:
                await session.warm_up(2, keep=False)
            with pytest.raises(ConnectError, match=r"HTTP 407.*nothing was sent, retrying") as sent:
                await session.cancel_orders(uuids=[uuid])
        assert proxy.refused >= 3
    _assert_no_credentials(warming.value, sent.value)
    assert (path.connections, fake.received) == (0, 0)


def _assert_no_credentials(*errors: BaseException, passwords: tuple[str, ...] = ()) -> None:
    """Each error chained to nothing, and neither the proxy's password nor its Basic
    credentials in it or in the local variables of the library's frames in its traceback."""
    for error in errors:
        assert error.__cause__ is None
        assert error.__context__ is None
        _assert_quotes_none(error, passwords)


def _assert_quotes_none(error: BaseException, passwords: tuple[str, ...]) -> None:
    caught = traceback.TracebackException.from_exception(error, capture_locals=True)
    shown = "".join(caught.format_exception_only()) + "".join(
        f"{name}={value}"
        for frame in caught.stack
        if "/upbit_cancel/" in frame.filename
        for name, value in (frame.locals or {}).items()
    )
    assert "/upbit_cancel/" in "".join(frame.filename for frame in caught.stack)
    for password in passwords or (_PASSWORD, "wrong-" + _PASSWORD):
        assert password not in shown
        if password.isascii():
            assert base64.b64encode(f"bot:{password}".encode()).decode() not in shown


async def test_a_proxy_that_cannot_be_reached_is_a_connect_error_that_says_so(
    exchange: tuple[FakeUpbit, PathProxy],
) -> None:
    """Nothing listens at the proxy's address: the warm-up's ConnectError names the proxy, not
    the exchange."""
    fake, path = exchange
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    async with (
        aiohttp.ClientSession(connector=_connector(fake), proxy=f"http://127.0.0.1:{port}") as http,
        _session(fake, path, http) as session,
    ):
        with pytest.raises(ConnectError, match="the proxy could not be reached"):
            await session.warm_up(2, keep=False)
    assert path.connections == 0


@pytest.mark.parametrize(
    "proxy",
    [f"http://bot:{_PASSWORD}@127.0.0.1:99999", f"http://bot:{_PASSWORD}@[::1", 3128],
    ids=["port out of range", "unclosed bracket", "a number"],
)
async def test_a_proxy_that_is_not_a_valid_url_is_a_connect_error_that_quotes_nothing(
    exchange: tuple[FakeUpbit, PathProxy], proxy: Any
) -> None:
    """The session's proxy= is no valid URL: the warm-up and a cancel raise a ConnectError
    that says what to check (nothing was sent), never a raw ValueError or TypeError, never the
    proxy's text with its password."""
    fake, path = exchange
    [uuid] = fake.add_orders(1)
    async with (
        aiohttp.ClientSession(connector=_connector(fake), proxy=proxy) as http,
        _session(fake, path, http) as session,
    ):
        with pytest.raises(ConnectError, match="proxy is not a valid URL") as warming:
            await session.warm_up(2, keep=False)
        with pytest.raises(ConnectError, match=r"check its proxy.*nothing was sent") as sent:
            await session.cancel_orders(uuids=[uuid])
    _assert_no_credentials(warming.value, sent.value)
    assert (path.connections, fake.received) == (0, 0)


async def test_an_environments_proxy_that_is_not_a_valid_url_is_a_connect_error(
    exchange: tuple[FakeUpbit, PathProxy], environment: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY is no valid URL, with trust_env: a ConnectError for the warm-up and for a
    cancel alike, never a raw ValueError."""
    fake, path = exchange
    [uuid] = fake.add_orders(1)
    environment.setenv("HTTPS_PROXY", f"http://bot:{_PASSWORD}@127.0.0.1:99999")
    async with (
        aiohttp.ClientSession(connector=_connector(fake), trust_env=True) as http,
        _session(fake, path, http) as session,
    ):
        with pytest.raises(ConnectError, match="HTTPS_PROXY") as warming:
            await session.warm_up(2, keep=False)
        with pytest.raises(ConnectError, match="nothing was sent") as sent:
            await session.cancel_orders(uuids=[uuid])
    _assert_no_credentials(warming.value, sent.value)
    assert (path.connections, fake.received) == (0, 0)


async def test_plain_http_through_a_proxy_opens_nothing_ahead() -> None:
    """A plain-HTTP base URL (a test's setup) through a proxy has no tunnel to open: the
    warm-up opens no connection, and times no handshake."""
    async with (
        FakeUpbit() as fake,
        PathProxy(fake.base_url) as path,
        ConnectProxy() as proxy,
        aiohttp.ClientSession(proxy=proxy.url) as http,
        _session(fake, path, http) as session,
    ):
        await session.warm_up(3, keep=False)
        assert (proxy.accepted, path.connections) == (0, 0)


async def test_credentials_the_proxy_cannot_be_given_are_a_connect_error_that_quotes_none(
    exchange: tuple[FakeUpbit, PathProxy],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A proxy password Basic authorization cannot carry (beyond Latin-1): the warm-up, its
    keeper in the background, a cancel and the order stream each meet a ConnectError that says
    what to check, quoting no credential; the cancel's says nothing was sent."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(session_module, "_WARM_EVERY", 0.02)
    password = "pässwörd€-31337"
    fake, path = exchange
    [uuid] = fake.add_orders(1)
    async with (
        ConnectProxy() as proxy,
        _behind_proxy(fake, proxy, password) as http,
        _session(fake, path, http) as session,
    ):
        with pytest.raises(ConnectError, match="settings could not be used") as warming:
            await session.warm_up(2)
        with pytest.raises(ConnectError, match="nothing was sent") as sent:
            await session.cancel_orders(uuids=[uuid])
        with pytest.raises(ConnectError, match="settings could not be used") as streaming:
            await session._transport.connect_stream(STREAM_PATH, within=2.0)
        await until(lambda: "cannot keep the connections open" in caplog.text)
        assert proxy.accepted == 0
    _assert_no_credentials(warming.value, sent.value, streaming.value, passwords=(password,))
    assert password not in caplog.text
    assert all(record.exc_info is None for record in caplog.records)
    assert (path.connections, fake.received) == (0, 0)


@pytest.mark.parametrize("given", ["127.0.0.1:3128", f"bot:{_PASSWORD}@127.0.0.1:3128"])
async def test_a_proxy_address_without_its_scheme_is_a_connect_error_nothing_sent(
    exchange: tuple[FakeUpbit, PathProxy], given: str
) -> None:
    """proxy="host:3128", with no http:// (curl would take it; aiohttp cannot): the warm-up
    says what the address should be, and a cancel that nothing was sent."""
    fake, path = exchange
    [uuid] = fake.add_orders(1)
    async with (
        aiohttp.ClientSession(connector=_connector(fake), proxy=given) as http,
        _session(fake, path, http) as session,
    ):
        with pytest.raises(
            ConnectError, match=r"its proxy \(an address such as http://host"
        ) as warming:
            await session.warm_up(2, keep=False)
        with pytest.raises(ConnectError, match="nothing was sent") as sent:
            await session.cancel_orders(uuids=[uuid])
    _assert_no_credentials(warming.value, sent.value)
    assert (path.connections, fake.received) == (0, 0)


async def test_the_sessions_own_authorization_never_replaces_the_token(
    exchange: tuple[FakeUpbit, PathProxy], environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A caller's session that authorizes its own requests, with trust_env and a ~/.netrc
    entry for every host: each cancel carries the token in its place (the fake verifies it),
    so the netrc password never reaches the exchange."""
    fake, path = exchange
    uuids = fake.add_orders(40)
    (tmp_path / "netrc").write_text("default login someone password netrc-secret-4242\n")
    async with (
        aiohttp.ClientSession(connector=_connector(fake), trust_env=True) as http,
        _session(fake, path, http) as session,
    ):
        result = await BatchCanceller(session).cancel(uuids=uuids)
    assert result.success.count == 40
    assert [record.status for record in fake.records] == [200, 200]


@pytest.mark.parametrize(
    "answer",
    [b"", b"HTTP/1.1 2x0 What\r\n\r\n", b"garbage\r\n\r\n"],
    ids=["closes", "bad status", "no HTTP"],
)
async def test_a_proxy_that_answers_its_connect_wrongly_leaves_nothing_sent(
    exchange: tuple[FakeUpbit, PathProxy], answer: bytes
) -> None:
    """A proxy that closes the connection instead of answering its CONNECT (aiohttp then tries
    once more on its own), or answers what is not HTTP: the cancel is a ConnectError, nothing
    sent, not an outcome unknown."""
    fake, path = exchange
    [uuid] = fake.add_orders(1)
    async with (
        ConnectProxy(answer=answer) as proxy,
        aiohttp.ClientSession(connector=_connector(fake), proxy=proxy.url) as http,
        _session(fake, path, http) as session,
    ):
        expected = r"the proxy opened no tunnel.*nothing was sent, retrying is safe"
        with pytest.raises(ConnectError, match=expected) as sent:
            await session.cancel_orders(uuids=[uuid])
        assert session._transport.requests_sent == 0
    _assert_no_credentials(sent.value)
    assert (path.connections, fake.received) == (0, 0)


@pytest.mark.parametrize("given", ["", "http://"])
async def test_an_empty_proxy_is_none(exchange: tuple[FakeUpbit, PathProxy], given: str) -> None:
    """proxy="" (as os.getenv("HTTPS_PROXY", "") gives): aiohttp goes straight to the exchange,
    and so does the warm-up, timing its handshakes; the burst reuses its connections."""
    fake, path = exchange
    uuids = fake.add_orders(100)
    async with (
        aiohttp.ClientSession(connector=_connector(fake), proxy=given) as http,
        _session(fake, path, http) as session,
    ):
        await session.warm_up(5, keep=False)
        assert path.connections == 5 + 3
        result = await BatchCanceller(session, max_in_flight=5).cancel(uuids=uuids)
        assert path.connections == 5 + 3, "no connection opened anew"
    assert result.success.count == 100


async def test_a_stream_is_not_opened_where_netrc_would_replace_its_token(
    exchange: tuple[FakeUpbit, PathProxy], environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """trust_env and a ~/.netrc entry for every host: the stream's connection is refused before
    it is made (some aiohttp releases would send the entry's credentials in the token's place),
    with a ConnectError that says what to change; the cancels still go."""
    fake, path = exchange
    (tmp_path / "netrc").write_text("default login someone password netrc-secret-4242\n")
    async with (
        aiohttp.ClientSession(connector=_connector(fake), trust_env=True) as http,
        _session(fake, path, http) as session,
    ):
        expected = r"netrc applies to the exchange's host"
        with pytest.raises(ConnectError, match=expected) as caught:
            await session._transport.connect_stream(STREAM_PATH, within=2.0)
        assert "netrc-secret-4242" not in str(caught.value)
        assert path.connections == 0
        result = await session.cancel_orders(uuids=fake.add_orders(1))
    assert len(result.success) == 1


async def test_a_netrc_file_that_cannot_be_read_is_a_connect_error_for_the_stream(
    exchange: tuple[FakeUpbit, PathProxy], environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """trust_env and a ~/.netrc that is not UTF-8: the stream meets a ConnectError, never a
    raw UnicodeDecodeError."""
    fake, path = exchange
    (tmp_path / "netrc").write_bytes(b"machine h\xe9 login x password y\n")
    async with (
        aiohttp.ClientSession(connector=_connector(fake), trust_env=True) as http,
        _session(fake, path, http) as session,
    ):
        with pytest.raises(ConnectError, match="settings could not be used"):
            await session._transport.connect_stream(STREAM_PATH, within=2.0)


@pytest.mark.parametrize("call", ["warm-up", "stream", "cancel"])
async def test_a_session_closed_by_its_caller_under_a_connection_is_session_closed(
    exchange: tuple[FakeUpbit, PathProxy], call: str
) -> None:
    """The caller closes its http_session while the proxy has not answered the CONNECT yet:
    the warm-up, the stream's connection and a cancel each raise SessionClosedError, nothing
    sent."""
    fake, path = exchange
    [uuid] = fake.add_orders(1)
    async with ConnectProxy(silent=True) as proxy:
        http = aiohttp.ClientSession(connector=_connector(fake), proxy=proxy.url)
        async with UpbitSession(
            fake.access_key,
            fake.secret_key,
            base_url=path.base_url,
            http_session=http,
            limiter=SlidingWindowLimiter(),
            # aiohttp leaves a connection under way to its time when its session closes.
            connect_timeout=0.5,
        ) as session:
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "warm-up": lambda: session.warm_up(1, keep=False, within=0.5),
                "stream": lambda: session._transport.connect_stream(STREAM_PATH, within=0.5),
                "cancel": lambda: session.cancel_orders(uuids=[uuid]),
            }
            running = asyncio.ensure_future(calls[call]())
            await until(lambda: proxy.asked == 1)
            await http.close()
            with pytest.raises(SessionClosedError, match="http_session was closed") as caught:
                await running
            assert session._transport.requests_sent == 0
    _assert_no_credentials(caught.value)
    assert (path.connections, fake.received) == (0, 0)
