"""The transport: one signed request, from its ids to a decoded answer, within its group's budget.

Every request takes this path, in order::

    a lease of its rate-limit group's limiter      raced with the caller's stop event
    a JWT made for this attempt                    a fresh nonce, set over any other authorization
    sent once                                      aiohttp's own re-send is refused
    the answer read                                at most MAX_BODY_BYTES
    the lease told what the answer said            429, 418 and Remaining-Req reach the limiter
    429: the account pauses, and a new attempt     up to rate_limit_retries times
    the answer parsed, or an UpbitError            the request's ids attached here, once

The limiter of each group is claimed from the registry the first time the group is used, so
sessions of one key share every budget in one event loop. No raw aiohttp error leaves this
module, and none is ever in an error's chain (it holds the request's headers). A connection
that could not be made (``connecting``: a proxy's fault among them) means nothing was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from ssl import SSLContext
from typing import Any, Protocol, TypeVar

import aiohttp
import attrs
from yarl import URL

from .._errors import (
    BlockedError,
    ConnectError,
    ConnectionLostError,
    MalformedResponseError,
    NotSentError,
    OutcomeUnknownError,
    RateLimitError,
    ResponseTimeoutError,
    SessionClosedError,
    UpbitError,
    error_from_response,
    with_ids,
)
from .._instrument import (
    BudgetWaited,
    RequestEnded,
    RequestOutcome,
    emit,
    instrumented,
)
from .._limiter.contract import (
    AccountBound,
    Feedback,
    Lease,
    LeaseExpiredError,
    Limiter,
    PathAware,
    Prepares,
    RemainingReq,
)
from .._limiter.core import GROUPS
from .._limiter.registry import claim, handed_over, unclaim, waits_for_predecessor
from .._log import log as _log
from .._redact import redact
from .answers import block_seconds, error_details, parse_remaining_req
from .connecting import (
    closed_under,
    netrc_names,
    proxy_route,
    settings_fault,
    verifying_context,
    while_connecting,
    why_not_connected,
)
from .signing import Signer, encode_query

__all__ = ["MAX_BODY_BYTES", "Observer", "Request", "Transport"]


T = TypeVar("T")

#: The largest answer read; Upbit's answers to these calls are a few kilobytes.
MAX_BODY_BYTES = 1 << 20

#: The exchange's window: a 418 never blocks for less.
_EXCHANGE_WINDOW = 1.0

_USER_AGENT = "upbit-cancel/0.1"
#: Round trips a new connection costs before it can send, by its TLS version (``None``: none).
_HANDSHAKE_ROUND_TRIPS = {None: 1, "TLSv1.2": 3, "TLSv1.3": 2}


class Observer(Protocol):
    """What one operation learns of its own requests (a batch's ledger counts them)."""

    def sending(self) -> None:
        """An attempt is about to leave (it may still fail to connect)."""
        ...

    def ended(self, *, sent: bool, status: int | None) -> None:
        """An attempt ended: whether it left, and the answer's status if one came."""
        ...


@attrs.frozen
class Request:
    """One signed call, the same for each of its attempts."""

    method: str
    #: The path, such as ``"/v1/orders/uuids"``.
    path: str
    #: The query's ``(name, value)`` pairs, in the order sent.
    params: tuple[tuple[str, str], ...] = ()
    #: The rate-limit group whose budget it spends.
    group: str = "default"
    #: The order ids it concerns, for its errors.
    ids: tuple[str, ...] = ()
    #: What a 200 answer that cannot be read means for the orders, for its error's message.
    unreadable: str = "the request may or may not have been processed"


@attrs.frozen
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    #: For a 418: how long the account is blocked, and whether the exchange said so.
    block: tuple[float, bool] | None = None


class _ResendRefusedError(Exception):
    """aiohttp tried to send the same request a second time."""

    def __init__(self, *, first_connecting: str | None) -> None:
        super().__init__()
        #: Why the first attempt's connection could not be made, if it could not: then
        #: nothing of it was written.
        self.first_connecting = first_connecting


class _NetrcError(Exception):
    """A ~/.netrc entry would replace the stream's token."""


class _BodyTooLargeError(Exception):
    """The answer is larger than :data:`MAX_BODY_BYTES`."""


class _Refresh:
    """A background warm-up under way: the connections it holds, and whether a request ended
    it (from then on it holds no connection and times no handshake)."""

    __slots__ = ("ended", "held")

    def __init__(self) -> None:
        self.held: list[aiohttp.connector.Connection] = []
        self.ended = False


class Transport:
    """Signed requests of one access key, each within its rate-limit group's budget.

    Opened by the first request (or :meth:`open`), closed by :meth:`aclose` (idempotent); a
    closed transport refuses to send with :class:`SessionClosedError`.
    """

    __slots__ = (
        "__weakref__",
        "_access_key",
        "_base_url",
        "_claimed",
        "_closed",
        "_given_limiter",
        "_group_limiters",
        "_http",
        "_in_flight",
        "_owns_http",
        "_probe_context",
        "_rate_limit_retries",
        "_read_timeout",
        "_refresh",
        "_secret_key",
        "_signer",
        "_ssl",
        "_timeout",
        "_warming",
        "rate_limited",
        "remaining_req",
        "requests_sent",
    )

    #: Requests that left for the exchange so far, retries included.
    requests_sent: int
    #: 429 answers received so far.
    rate_limited: int
    #: The last ``Remaining-Req`` header the exchange sent, if any.
    remaining_req: RemainingReq | None

    def __init__(
        self,
        *,
        access_key: str,
        secret_key: str,
        base_url: str,
        limiter: Limiter | None,
        group_limiters: Mapping[str, Limiter] | None = None,
        http_session: aiohttp.ClientSession | None,
        ssl: SSLContext | None = None,
        timeout: aiohttp.ClientTimeout,
        rate_limit_retries: int,
    ) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self._signer = Signer(access_key, secret_key)
        self._base_url = base_url
        self._given_limiter = limiter
        self._group_limiters = dict(group_limiters or {})
        self._claimed: dict[str, Limiter] = {}
        self._http = http_session
        self._owns_http = http_session is None
        self._ssl = ssl
        self._probe_context: SSLContext | None = None
        self._timeout = timeout
        self._read_timeout = timeout.sock_read
        self._rate_limit_retries = rate_limit_retries
        self._closed = False
        # Requests between asking for their slot and their end.
        self._in_flight = 0
        # The background warm-up under way, if any (see :meth:`refresh`).
        self._refresh: _Refresh | None = None
        # Warm-ups asked for under way (a background one waits for them).
        self._warming = 0
        self.requests_sent = 0
        self.rate_limited = 0
        self.remaining_req = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def limiter(self, group: str = "default") -> Limiter:
        """The limiter of ``group`` this key's sessions share in the running loop."""
        limiter = self._claimed.get(group)
        if limiter is None:
            limiter = self._claimed[group] = claim(
                self,
                self._access_key,
                self._given_limiter,
                group,
                for_group=self._group_limiters.get(group),
            )
        return limiter

    def open(self) -> aiohttp.ClientSession:
        """The HTTP session to send through, made on first use; raises once closed."""
        if self._closed:
            raise SessionClosedError("this UpbitSession is closed; create a new one")
        if self._http is not None and self._http.closed:
            raise SessionClosedError(
                "the aiohttp.ClientSession given as http_session is closed; pass an open one"
            )
        self.limiter()
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=100, keepalive_timeout=30, ssl=True if self._ssl is None else self._ssl
                ),
                headers={"Accept": "application/json", "User-Agent": _USER_AGENT},
            )
        return self._http

    async def refresh(self, connections: int, probes: int, *, within: float) -> bool:
        """The limiter's store, :meth:`warm_up` and :meth:`probe_path` again, in the
        background, never in a request's way. It leaves a connection to each request (or
        stream's connection) under way, and is skipped when that leaves none, or while a
        warm-up asked for is under way. A request of this transport about to take a connection
        meanwhile ends it: that request finds the idle connections the warm-up held given back
        already, and the warm-up takes none after it (the handshakes it has under way are left
        to end, and their connections join the pool). A probe counts only if no request came
        while it was timed.

        Returns whether its warm-up ran to its end (``False``: skipped, ended by a request, or
        the transport is closed); raises as :meth:`warm_up` does.
        """
        if self._closed or self._warming or self._refresh is not None:
            return False
        wanted = self._pool_size(connections) - self._in_flight
        if wanted <= 0:
            return False
        mine = _Refresh()
        self._refresh = mine
        try:
            # The store's connection and the key's claim kept fresh too (neither changes
            # anything for a request).
            await self._warm_up_with_budgets(wanted, within, refresh=mine)
            if mine.ended:
                return False
            if not self._in_flight:
                await self.probe_path(probes, within=within, refresh=mine)
        except ConnectError:
            if mine.ended:
                return False  # a request came: the request meets the fault itself, if any
            raise
        finally:
            if self._refresh is mine:
                self._refresh = None
        return True

    def _pool_size(self, connections: int) -> int:
        """``connections``, or fewer if the pool may not hold that many at once (a caller's
        connector may allow fewer)."""
        connector = self.open().connector
        assert connector is not None, "an open aiohttp session has a connector"
        most = connector.limit_per_host or connector.limit
        return min(connections, most) if most else connections

    def _give_way(self) -> None:
        """End the background warm-up under way, if any, for a request about to take a
        connection."""
        refresh, self._refresh = self._refresh, None
        if refresh is None:
            return
        # Given back now, before the request looks for a connection, and none taken after it.
        refresh.ended = True
        for connection in refresh.held:
            connection.release()
        refresh.held.clear()

    async def warm(self, connections: int, probes: int, *, within: float) -> None:
        """The limiter's store opened, :meth:`warm_up` and :meth:`probe_path`, asked for now: a
        background warm-up under way ends, and none starts until this one has."""
        self._give_way()
        self._warming += 1
        try:
            await self._warm_up_with_budgets(connections, within)
            await self.probe_path(probes, within=within)
        finally:
            self._warming -= 1

    async def _warm_up_with_budgets(
        self, connections: int, within: float, refresh: _Refresh | None = None
    ) -> None:
        """:meth:`warm_up`, while every group's limiter that keeps its budget in a store gets
        it ready (:class:`Prepares`), for ``within`` at most: a store slow to answer never
        holds the connections back, nor the warm-up longer."""
        loop = asyncio.get_running_loop()
        prepared = loop.create_task(self._prepare_budgets(within))
        try:
            await self.warm_up(connections, within=within, refresh=refresh)
        except BaseException:
            prepared.cancel()
            await asyncio.wait({prepared})
            if not prepared.cancelled():
                prepared.exception()  # read, not left to be reported as never retrieved
            raise
        await prepared

    async def _prepare_budgets(self, within: float) -> None:
        """Every budget limiter of the session's groups known without claiming one gets ready;
        what fails getting ready is logged (the first request meets it as it would have). Only
        finding the default group's limiter may raise, as any request of the session would."""
        preparing = [
            limiter for limiter in self._budget_limiters() if isinstance(limiter, Prepares)
        ]
        try:
            async with asyncio.timeout(within):
                results = await asyncio.gather(
                    *(_prepared(limiter) for limiter in preparing), return_exceptions=True
                )
        except TimeoutError:
            _log.debug("the budget's store was not ready within %g s", within)
            return
        for limiter, result in zip(preparing, results, strict=True):
            if isinstance(result, SessionClosedError):
                continue  # closed meanwhile: its requests say so
            if isinstance(result, BaseException):
                _log.warning(
                    "getting %r ready failed; the warm-up carries on", limiter, exc_info=result
                )

    def _budget_limiters(self) -> list[Limiter]:
        """The limiter of each group this transport uses or is known to use, without claiming
        any in the registry (a claim made only to get ready could refuse another session of
        the key its own limiter for that group)."""
        found = [self.limiter()]
        for group in GROUPS:
            if group == "default":
                continue
            limiter = self._claimed.get(group) or self._group_limiters.get(group)
            if isinstance(limiter, AccountBound) and group not in self._claimed:
                limiter.bind(self._access_key)  # as its claim will
            if limiter is None and isinstance(self._given_limiter, AccountBound):
                # What a claim would give: the given limiter's sibling for the group.
                limiter = self._given_limiter.for_group(group)
            if limiter is not None and all(limiter is not other for other in found):
                found.append(limiter)
        return found

    async def warm_up(
        self,
        connections: int,
        *,
        within: float,
        refresh: _Refresh | None = None,
    ) -> None:
        """Open connections (TCP, and TLS for ``https``; through the proxy the requests take,
        if any) until ``connections`` of them stand idle in the pool, sending nothing on them.
        Raises :class:`ConnectError` when one cannot be made (what was opened stays).
        ``refresh``: a background warm-up's own, whose held connections a request may give
        back sooner (see :meth:`refresh`)."""
        # Raised here, from a frame that holds nothing of the connections': their errors (and
        # the route) may quote the proxy's credentials.
        failure = await self._open_idle(connections, within, refresh)
        if failure is not None:
            raise failure

    async def _open_idle(
        self, connections: int, within: float, refresh: _Refresh | None
    ) -> BaseException | None:
        """:meth:`warm_up`'s work: what it must raise, if anything."""
        http = self.open()
        connector = http.connector
        assert connector is not None, "an open aiohttp session has a connector"
        url = URL(self._base_url)
        route = await proxy_route(http, url)
        if route is not None and route.url is None:
            return ConnectError(
                f"could not open connections to {self._base_url}: the http_session's proxy is "
                "not a valid URL; check its proxy= (or, with trust_env, the environment's "
                "HTTPS_PROXY): an address such as http://host:3128"
            )
        if route is not None and not route.direct and url.scheme != "https":
            # Plain HTTP through a proxy (a test's setup) has no tunnel to open: a connection
            # to the proxy is all a request needs, and some aiohttp releases do not authorize a
            # request again on one that is reused.
            return None
        # Never more than the pool may hold at once: the warm-up holds what it opens until it
        # has them all.
        connections = self._pool_size(connections)
        loop = asyncio.get_running_loop()
        timeout = aiohttp.ClientTimeout(total=within, connect=within)
        held = [] if refresh is None else refresh.held
        options = dict if route is None else route.options  # no proxy: no arguments

        async def one() -> None:
            # A request that is never sent: what the connector needs to know where to connect.
            # ssl=True and the proxy as the session's own requests have them (the connector
            # then applies its context): the pool keys connections by them, and only a key the
            # requests share is a connection they reuse.
            if refresh is not None and refresh.ended:
                return
            request = aiohttp.ClientRequest("GET", url, loop=loop, ssl=True, **options())
            connection = await connector.connect(request, [], timeout)
            if refresh is not None and refresh.ended:
                connection.release()  # a request came meanwhile: the pool has it at once
            else:
                held.append(connection)

        # Held at once, so that each is a connection of its own, then all given back. Not a
        # task group: on Python 3.11 one whose child fails leaves this task's cancellation
        # count raised, which later reads of it (``Task.cancelling``) would take for a
        # cancellation.
        tasks = [loop.create_task(one()) for _ in range(connections)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            try:
                # None may outlive this: a late one would hold its connection for ever.
                await _all_ended(tasks)
            finally:
                for connection in held:
                    connection.release()
        errors = [error for task in tasks if not task.cancelled() and (error := task.exception())]
        if http.closed:
            return closed_under("the warm-up")  # whatever its connections met then
        for error in errors:
            # (A refused certificate is a ValueError too, and a fault of the network.)
            if isinstance(error, aiohttp.InvalidURL) or (
                isinstance(error, ValueError) and not isinstance(error, aiohttp.ClientError)
            ):
                return ConnectError(
                    f"could not open connections to {self._base_url}: {settings_fault(error)}"
                )
            if not isinstance(error, aiohttp.ClientError | OSError | TimeoutError):
                return error  # a fault of its own, before any fault of the network
        if errors:
            return ConnectError(
                f"could not open connections to {self._base_url} "
                f"({why_not_connected(errors[0], url)})"
            )
        return None

    async def probe_path(
        self, count: int, *, within: float, refresh: _Refresh | None = None
    ) -> int:
        """Time ``count`` handshakes (TCP, and TLS for ``https``) on connections of their own,
        one after another, each closed at once with nothing sent, and tell the ``default``
        group's limiter (when it learns from handshakes): how many it could time.

        A TLS 1.3 connection costs two round trips before it can send (TCP, then TLS), TLS 1.2
        three, plain TCP one; another TLS version is not timed. Nothing is timed when the
        requests go through a proxy: a handshake of its own would time another path than
        theirs, and their answers teach the floor.
        """
        url = URL(self._base_url)
        host, port = url.host, url.port
        if host is None or port is None:
            return 0
        route = await proxy_route(self.open(), url)
        if route is not None and not route.direct:
            return 0
        tls = url.scheme == "https"
        if tls and self._probe_context is None:
            self._probe_context = (
                self._ssl
                or verifying_context(self.open().connector)
                or ssl.create_default_context()
            )
        limiter = self.limiter()
        loop = asyncio.get_running_loop()
        timed = 0
        try:
            # Resolved before any timing: a name lookup is no part of the path's round trip.
            addresses = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return 0
        if not addresses:
            return 0
        address = str(addresses[0][4][0])
        for _ in range(count):
            if refresh is not None and refresh.ended:
                break
            started = loop.time()
            try:
                async with asyncio.timeout(within):
                    _, writer = await asyncio.open_connection(
                        address,
                        port,
                        ssl=self._probe_context if tls else None,
                        server_hostname=host if tls else None,
                    )
            except (OSError, TimeoutError, ssl.SSLError):
                # Said by the warm-up of the pool, whose connections meet the same fault.
                return timed
            completed = loop.time()
            version = None
            if tls:
                ssl_object = writer.get_extra_info("ssl_object")
                version = None if ssl_object is None else ssl_object.version()
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
            if refresh is not None and (refresh.ended or self._in_flight):
                break  # a request came: its work may have slowed this handshake
            round_trips = _HANDSHAKE_ROUND_TRIPS.get(version)
            if round_trips is not None and isinstance(limiter, PathAware):
                limiter.observe_handshake(started, completed, round_trips)
                timed += 1
        return timed

    async def connect_stream(self, path: str, *, within: float) -> aiohttp.ClientWebSocketResponse:
        """A WebSocket to ``path`` of the base URL's host (``ws``/``wss`` for ``http``/
        ``https``), signed with a token of its own (no query). Raises :class:`ConnectError`
        when no connection could be made or the handshake was refused (its status said)."""
        http = self.open()
        url = (
            URL(self._base_url)
            .with_scheme("wss" if self._base_url.startswith("https") else "ws")
            .with_path(path)
        )
        self._give_way()
        self._in_flight += 1
        failure: BaseException
        try:
            async with asyncio.timeout(within):
                if http.trust_env and await asyncio.to_thread(netrc_names, url.host):
                    # aiohttp (3.12.0, for one) would send them in the token's place.
                    raise _NetrcError
                return await http.ws_connect(
                    url,
                    # Signed in the call: no frame of a traceback holds the token.
                    headers={"Authorization": "Bearer " + self._signer.token(None)},
                    timeout=aiohttp.ClientWSTimeout(ws_close=within),
                    autoping=True,
                    max_msg_size=1 << 20,
                )
        except _NetrcError:
            failure = ConnectError(
                "could not connect to the stream: the http_session trusts the environment "
                "(trust_env) and an entry of ~/.netrc applies to the exchange's host (one for "
                "it, or a default), whose credentials would replace the stream's token; remove "
                "the entry, or give the session an http_session without trust_env"
            )
        except aiohttp.WSServerHandshakeError as error:
            status = error.status
            failure = ConnectError(f"the stream refused the connection: HTTP {status}")
        except aiohttp.InvalidURL as error:
            failure = ConnectError(f"could not connect to the stream: {settings_fault(error)}")
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            if http.closed:
                failure = closed_under("the stream's connection")
            else:
                failure = ConnectError(
                    f"could not connect to the stream: {why_not_connected(error, url)}"
                )
        except (ValueError, TypeError) as error:
            # The caller's session could not make it (see settings_fault); its text may quote
            # a proxy's credentials.
            failure = ConnectError(f"could not connect to the stream: {settings_fault(error)}")
        except (RuntimeError, AssertionError):
            # What aiohttp raises when the caller's session is closed under a connection.
            if not http.closed:
                raise
            failure = closed_under("the stream's connection")
        except asyncio.CancelledError as cancelled:
            task = asyncio.current_task()
            if task is not None and not task.cancelling() and http.closed:
                # Not this task's cancellation: the caller closed its http_session, which
                # cancels what waits for one of its connections.
                failure = closed_under("the stream's connection")
            else:
                # This task's own, raised afresh: the original's traceback runs through
                # aiohttp's frames, which hold the token.
                failure = asyncio.CancelledError(*cancelled.args)
        finally:
            self._in_flight -= 1
        # Raised here, outside the handler: the chain holds nothing of the request.
        raise failure

    async def aclose(self) -> None:
        """Close (and the HTTP session, if this transport made it). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._claimed:
            unclaim(self, self._access_key)
        if self._owns_http and self._http is not None:
            await self._http.close()

    async def send(
        self,
        request: Request,
        parse: Callable[[Any], T],
        *,
        stop: asyncio.Event | None = None,
        observer: Observer | None = None,
    ) -> T:
        """Send ``request`` and return its answer as ``parse`` reads the decoded JSON.

        ``parse`` raises ``ValueError`` for an answer off the documented shape. Once ``stop``
        is set nothing more is sent (waiting for the limiter included): :class:`NotSentError`.
        """
        error: UpbitError
        self._in_flight += 1
        try:
            return await self._send(request, parse, stop, observer)
        except UpbitError as failure:
            error = with_ids(failure, request.ids) if request.ids else failure
        finally:
            self._in_flight -= 1
        # Raised here, outside the handler: the chain stays free of what the failure held.
        raise error

    async def _send(
        self,
        request: Request,
        parse: Callable[[Any], T],
        stop: asyncio.Event | None,
        observer: Observer | None,
    ) -> T:
        http = self.open()
        limiter = self.limiter(request.group)
        query = encode_query(request.params)
        url = URL(
            f"{self._base_url}{request.path}" + (f"?{query.wire}" if query.wire else ""),
            encoded=True,
        )
        label = _ids_label(request.ids)
        attempt = 0
        asked: float | None = None  # when this attempt first asked for a slot (lapses included)
        while True:
            attempt += 1
            if asked is None:
                asked = time.monotonic()
            try:
                lease = await self._lease(limiter, stop)
            except BaseException:
                if instrumented():
                    emit(RequestEnded(request.group, request.method, request.path, "not_sent"))
                raise
            status: int | None = None
            started = time.monotonic()
            lapsed = False
            try:
                with lease:
                    answer = await self._attempt(
                        http, request, url, query.hashed, lease, stop, observer
                    )
                status = answer.status
            except LeaseExpiredError:
                # Granted too long ago to leave on it (a shared budget's lease lapsed): it did
                # not leave; ask for another.
                attempt -= 1
                lapsed = True
                continue
            except UpbitError as raised:
                _log.debug(
                    "%s %s (%s): %s", request.method, request.path, label, type(raised).__name__
                )
                raise
            finally:
                sent = lease.sent_at is not None
                if sent:
                    self.requests_sent += 1
                if status == 429:
                    self.rate_limited += 1
                if observer is not None:
                    try:
                        observer.ended(sent=sent, status=status)
                    except Exception:
                        _log.exception("an observer of the request raised; the request goes on")
                if not lapsed:
                    # Told once the attempt is over: an instrument never delays a request.
                    if instrumented():
                        emit(BudgetWaited(request.group, started - asked))
                        emit(
                            RequestEnded(
                                request.group,
                                request.method,
                                request.path,
                                _outcome(sent, status),
                                status,
                                time.monotonic() - started if sent else None,
                            )
                        )
                    asked = None
            _log.debug("%s %s (%s): %d", request.method, request.path, label, answer.status)
            if answer.status == 429 and attempt <= self._rate_limit_retries:
                _log.debug(
                    "429 on %s %s; the account pauses, then retries", request.method, request.path
                )
                continue
            if 200 <= answer.status < 300:
                try:
                    body = json.loads(answer.body)
                except (ValueError, RecursionError):
                    problem = "with a body that is not JSON"
                else:
                    try:
                        return parse(body)
                    except ValueError as shape:
                        problem = f"but not in the documented shape ({shape})"
                error: UpbitError = MalformedResponseError(
                    f"the exchange answered HTTP {answer.status} {problem}; {request.unreadable}",
                    status=answer.status,
                )
            else:
                error = self._error(answer, attempt)
            # The body may quote the request's token back: keep it out of the traceback.
            del answer
            raise error

    async def _lease(self, limiter: Limiter, stop: asyncio.Event | None) -> Lease:
        """A lease for one attempt: raises BlockedError, or NotSentError once ``stop`` is set."""
        if stop is not None and stop.is_set():
            raise NotSentError("not sent: stopped before its turn came")
        if waits_for_predecessor(limiter):
            # It replaced a limiter still holding slots: none of them may be spent twice.
            await handed_over(limiter)
        # Most grants need no wait: only a wait is raced with ``stop``.
        lease = limiter.try_acquire()
        if lease is not None:
            return lease
        if stop is None:
            return await limiter.acquire()
        grant = asyncio.ensure_future(limiter.acquire())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((grant, stopped), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            stopped.cancel()
            _discard(grant)
            raise
        stopped.cancel()
        if grant.done():
            return grant.result()
        _discard(grant)
        raise NotSentError("not sent: stopped while it waited for its turn")

    async def _attempt(
        self,
        http: aiohttp.ClientSession,
        request: Request,
        url: URL,
        hashed: str,
        lease: Lease,
        stop: asyncio.Event | None,
        observer: Observer | None,
    ) -> _Answer:
        """Send once under ``lease`` and tell the limiter what the answer said."""
        if self._closed:
            raise SessionClosedError(
                "this UpbitSession was closed while the request waited; it was not sent"
            )
        if stop is not None and stop.is_set():
            raise NotSentError("not sent: stopped before its turn came")
        self._give_way()
        answer = await self._exchange(http, request, url, hashed, lease, observer)
        remaining = parse_remaining_req(answer.headers.get("Remaining-Req"))
        if remaining is not None:
            self.remaining_req = remaining
        feedback = Feedback(answer.status, remaining)
        if answer.status == 418:
            _, message = error_details(
                418, answer.body, answer.headers["Content-Type"], secrets=(self._secret_key,)
            )
            block = block_seconds(
                message, answer.headers.get("Retry-After"), window=_EXCHANGE_WINDOW
            )
            answer = attrs.evolve(answer, block=block)
            feedback = Feedback(418, remaining, block[0], f"HTTP 418: {message}")
        lease.answered(feedback)
        return answer

    async def _exchange(
        self,
        http: aiohttp.ClientSession,
        request: Request,
        url: URL,
        hashed: str,
        lease: Lease,
        observer: Observer | None,
    ) -> _Answer:
        """Send and read the answer; every transport failure becomes an :class:`UpbitError`.

        The token lives only in :meth:`_transmit`'s frame, and errors are raised here, outside
        the handler of the transport's exception, so that none of them chains to it.
        """
        error: UpbitError | asyncio.CancelledError
        try:
            return await self._transmit(http, request, url, hashed, lease, observer)
        except LeaseExpiredError:
            raise
        except BlockedError as blocked:
            # Refused as it was leaving: a copy, whose traceback is not the transport's.
            error = with_ids(blocked, blocked.ids)
        except (
            aiohttp.ClientConnectorError,
            aiohttp.ConnectionTimeoutError,
            # The proxy refused the tunnel: nothing reached the exchange.
            aiohttp.ClientHttpProxyError,
        ) as failure:
            error = self._unconnected(http, lease, failure, url)
        except _BodyTooLargeError:
            error = MalformedResponseError(
                f"the exchange answered with more than {MAX_BODY_BYTES >> 20} MiB; the answer "
                "was not read and the request may or may not have been processed",
                status=0,
            )
        except (TimeoutError, aiohttp.ServerTimeoutError):
            error = ResponseTimeoutError(
                f"no complete answer within {self._read_timeout:g} s of silence or "
                f"{self._timeout.total:g} s in all; the request may or may not have been "
                "processed"
            )
        except (
            _ResendRefusedError,
            aiohttp.ClientOSError,
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientPayloadError,
        ) as failure:
            if _connecting_failed(failure):
                # The first attempt's connection failed (a proxy that closed it instead of
                # answering its CONNECT, say), before aiohttp tried again: nothing was written.
                error = self._unconnected(http, lease, failure, url)
            else:
                what = (
                    "the client would have sent it a second time"
                    if isinstance(failure, _ResendRefusedError)
                    else type(failure).__name__
                )
                error = self._lost(http, lease, what)
        except (ValueError, TypeError) as failure:
            # The caller's session could not make the request (see settings_fault): before it
            # was handed over, or while connecting, nothing of it was written.
            if lease.sent_at is None or while_connecting(failure):
                lease.unsent()
                error = ConnectError(
                    f"could not make the request to {self._base_url}: {settings_fault(failure)}"
                    "; nothing was sent"
                )
            else:
                error = OutcomeUnknownError(
                    f"the request failed ({type(failure).__name__}); it may or may not have been "
                    "processed"
                )
        except aiohttp.ClientError as failure:
            if while_connecting(failure):
                # A proxy's answer to its CONNECT that aiohttp could not read, or a connector
                # closed with the caller's session, say.
                error = self._unconnected(http, lease, failure, url)
            else:
                error = OutcomeUnknownError(
                    f"the request failed ({type(failure).__name__}: {redact(str(failure))}); it "
                    "may or may not have been processed"
                )
        except RuntimeError:
            # aiohttp's "Session is closed": the caller closed its http_session meanwhile.
            if not http.closed:
                raise
            error = self._lost(http, lease, "closed")
        except asyncio.CancelledError as cancelled:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                # This task's own cancellation, raised afresh: the original's traceback runs
                # through the transport's frames, which hold the request's headers.
                error = asyncio.CancelledError(*cancelled.args)
            elif while_connecting(cancelled):
                # Not this task's cancellation: the caller closed its http_session, which
                # cancelled the wait for one of its connections (nothing was written).
                error = self._unconnected(http, lease, cancelled, url)
            else:
                # Not this task's cancellation: the caller closed its http_session under it.
                error = self._lost(http, lease, "cancelled")
        raise error

    def _unconnected(
        self, http: aiohttp.ClientSession, lease: Lease, failure: BaseException, url: URL
    ) -> UpbitError:
        """The error for a request whose connection could not be made: nothing was sent."""
        lease.unsent()
        if http.closed:
            return self._lost(http, lease, "closed")
        if isinstance(failure, _ResendRefusedError) and failure.first_connecting is not None:
            why = failure.first_connecting
        else:
            why = why_not_connected(failure, url)
        return ConnectError(
            f"could not connect to {self._base_url} ({why}); nothing was sent"
            + ("" if isinstance(failure, aiohttp.ClientSSLError) else ", retrying is safe")
        )

    @staticmethod
    def _lost(http: aiohttp.ClientSession, lease: Lease, what: str) -> UpbitError:
        """The error for a request whose connection went away under it."""
        if http.closed and lease.sent_at is None:
            return SessionClosedError(
                "the aiohttp.ClientSession given as http_session was closed; the request was "
                "not sent"
            )
        reason = "the http_session was closed under it" if http.closed else what
        return ConnectionLostError(
            f"the connection dropped before the answer ({reason}); the request may or may not "
            "have been processed"
        )

    async def _transmit(
        self,
        http: aiohttp.ClientSession,
        request: Request,
        url: URL,
        hashed: str,
        lease: Lease,
        observer: Observer | None,
    ) -> _Answer:
        attempts = 0
        connecting_failed: str | None = None

        async def one_attempt(
            outgoing: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
        ) -> aiohttp.ClientResponse:
            # aiohttp re-sends idempotent requests (DELETE among them) once when a kept-alive
            # connection drops: a request the limiter never granted, carrying the same nonce.
            # Refuse the copy and report the outcome as unknown instead.
            nonlocal attempts, connecting_failed
            attempts += 1
            if attempts > 1:
                raise _ResendRefusedError(first_connecting=connecting_failed)
            # Signed here, the last step before it leaves, and set over whatever aiohttp put
            # there: a caller's session may authorize its own requests (its auth=, or with
            # trust_env a ~/.netrc entry), which must neither replace the token nor reach the
            # exchange.
            outgoing.headers["Authorization"] = "Bearer " + self._signer.token(hashed)
            lease.sending()
            if observer is not None:
                try:
                    observer.sending()
                except Exception:
                    _log.exception("an observer of the request raised; the request goes on")
            try:
                return await handler(outgoing)
            except Exception as failure:
                if while_connecting(failure):
                    connecting_failed = why_not_connected(failure, url)
                raise

        async with http.request(
            request.method,
            url,
            timeout=self._timeout,
            # Only this middleware: one of the caller's could retry, sending requests the
            # limiter never granted.
            middlewares=(one_attempt,),
            allow_redirects=False,
            raise_for_status=False,
        ) as response:
            body = await _read_capped(response)
            headers = {
                name: value
                for name in ("Remaining-Req", "Retry-After")
                if (value := response.headers.get(name)) is not None
            }
            headers["Content-Type"] = response.headers.get("Content-Type", "")
            return _Answer(response.status, headers, body)

    def _error(self, answer: _Answer, attempts: int) -> UpbitError:
        """The error for an answer that is not a success."""
        status = answer.status
        name, message = error_details(
            status, answer.body, answer.headers["Content-Type"], secrets=(self._secret_key,)
        )
        if status == 429:
            return RateLimitError(
                f"refused with 429 ({message}) {'once' if attempts == 1 else f'{attempts} times'}"
                "; the request was not processed",
                status=429,
                name=name or "too_many_requests",
            )
        if answer.block is not None:
            seconds, stated = answer.block
            return BlockedError(
                f"the exchange blocked the account ({message}); nothing is sent for "
                f"{seconds:g} s" + ("" if stated else " (no duration stated)"),
                name=name,
                retry_after=seconds,
            )
        if status >= 500:
            message = f"{message}; the request may or may not have been processed"
        return error_from_response(status, name, message)


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    length = response.content_length
    if length is not None:
        if length > MAX_BODY_BYTES:
            raise _BodyTooLargeError
        return await response.read()
    body = bytearray()
    async for part in response.content.iter_chunked(1 << 16):
        body += part
        if len(body) > MAX_BODY_BYTES:
            raise _BodyTooLargeError
    return bytes(body)


def _outcome(sent: bool, status: int | None) -> RequestOutcome:
    """What became of one attempt, for the instruments."""
    if status is None:
        return "lost" if sent else "not_sent"
    if 200 <= status < 300:
        return "ok"
    if status == 429:
        return "rate_limited"
    if status == 418:
        return "blocked"
    return "refused" if status < 500 else "server_error"


def _ids_label(ids: Sequence[str]) -> str:
    """``1 id``, ``20 ids``: for log lines."""
    return f"{len(ids)} id" if len(ids) == 1 else f"{len(ids)} ids"


def _release_if_granted(grant: asyncio.Future[Lease]) -> None:
    if grant.cancelled():
        return
    if grant.exception() is None:
        grant.result().release()


def _discard(grant: asyncio.Future[Lease]) -> None:
    """Give up on a grant: release its lease unused, now or whenever it arrives."""
    if grant.done():
        _release_if_granted(grant)
    else:
        grant.cancel()
        grant.add_done_callback(_release_if_granted)


def _connecting_failed(error: BaseException) -> bool:
    """Whether ``error`` (or, for a resend refused, the first attempt's) came of a connection
    that could not be made."""
    if isinstance(error, _ResendRefusedError):
        return error.first_connecting is not None
    return while_connecting(error)


async def _prepared(limiter: Prepares) -> None:
    await limiter.prepare_budget()


async def _all_ended(tasks: list[asyncio.Task[None]]) -> None:
    """Wait until every one of ``tasks`` has ended; a cancellation that comes meanwhile is
    raised once they have. Their exceptions count as read (their owner reads what it needs)."""
    cancelled = False
    pending = [task for task in tasks if not task.done()]
    while pending:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
        pending = [task for task in pending if not task.done()]
    for task in tasks:
        if not task.cancelled():
            task.exception()
    if cancelled:
        raise asyncio.CancelledError
