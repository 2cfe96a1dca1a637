"""UpbitSession: signed requests within the account's rate budget."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import aiohttp
import attrs
from aiolimiter import AsyncLimiter
from yarl import URL

from ._errors import (
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
)
from ._ids import MAX_IDS_PER_QUERY, Kind, checked_request_ids
from ._limiter import Lease, Limiter
from ._models import CancelResult, Feedback, Order, RemainingReq
from ._redact import redact, redact_url
from ._regions import REGIONS
from ._responses import (
    block_seconds,
    error_details,
    parse_cancel_result,
    parse_orders,
    parse_remaining_req,
)
from ._sharing import as_limiter, claim, unclaim
from ._signing import Query, encode_query, make_token

__all__ = ["MAX_BODY_BYTES", "REGIONS", "UpbitSession"]

_log = logging.getLogger("upbit_cancel")


#: The largest answer read; Upbit's answers to these calls are a few kilobytes.
MAX_BODY_BYTES = 1 << 20

#: What a path may be: ASCII from '/', without query, fragment or spaces.
_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")

#: The exchange's window: a 418 never blocks for less.
_EXCHANGE_WINDOW = 1.0

ParamValue = str | int | float
Params = Mapping[str, ParamValue | Sequence[ParamValue]] | Sequence[tuple[str, ParamValue]]

_USER_AGENT = "upbit-cancel/0.1"


class _ResendRefusedError(Exception):
    """aiohttp tried to send the same request a second time."""


class _BodyTooLargeError(Exception):
    """The answer is larger than :data:`MAX_BODY_BYTES`."""


@attrs.frozen
class _Call:
    """One signed call, the same for each of its attempts."""

    method: str
    url: URL
    query: Query
    #: The order ids it concerns, for its errors.
    ids: Sequence[str]
    stop: asyncio.Event | None
    on_send: Callable[[], object] | None


@attrs.frozen
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    #: For a 418: how long the account is blocked, and whether the exchange said so.
    block: tuple[float, bool] | None = None


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds, not {value!r}")
    return float(value)


def _check_base_url(base_url: object) -> str:
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a string such as 'https://host', not {base_url!r}")
    shown = redact_url(base_url)
    try:
        url = URL(base_url)
        host = url.host
    except (ValueError, TypeError):
        raise ValueError(f"base_url must look like https://host, not {shown!r}") from None
    if url.user or url.password:
        raise ValueError(
            f"base_url must not carry a user name or password ({shown!r}); Upbit signs each "
            "request with the API key instead"
        )
    if url.scheme not in ("https", "http") or not host:
        raise ValueError(f"base_url must look like https://host, not {shown!r}")
    if url.scheme == "http" and not _is_loopback(host):
        raise ValueError(
            f"base_url {shown!r} uses plain http to a non-loopback host; use https "
            "(http is allowed only for 127.0.0.1, ::1 and localhost, such as a FakeUpbit)"
        )
    if url.path not in ("", "/") or url.query_string or url.fragment:
        raise ValueError(f"base_url must be only scheme and host (and port), not {shown!r}")
    return str(url.origin())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _flatten(params: Params | None) -> list[tuple[str, str]]:
    if params is None:
        return []
    if isinstance(params, Mapping):
        items: Iterable[tuple[object, object]] = params.items()
    elif isinstance(params, Sequence) and not isinstance(params, str | bytes):
        items = params
    else:
        raise TypeError(
            "params must be a mapping such as {'market': 'SGD-BTC'} or a list of (name, value) "
            f"pairs, not {type(params).__name__}"
        )
    pairs: list[tuple[str, str]] = []
    for pair in items:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise TypeError(f"params must hold (name, value) pairs, not {pair!r}")
        name, value = pair
        if not isinstance(name, str):
            raise TypeError(f"parameter names must be strings, not {type(name).__name__} {name!r}")
        values = value if isinstance(value, list | tuple) else (value,)
        for item in values:
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise TypeError(
                    f"parameter {name!r} must be a string or a number (or a list of them), "
                    f"not {type(item).__name__}"
                )
            text = str(item)
            for part in (name, text):
                try:
                    part.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError(
                        f"parameter {name!r} is not valid text (it holds a lone surrogate)"
                    ) from None
            pairs.append((name, text))
    return pairs


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


class UpbitSession:
    """One Upbit account's signed connection, within its ``default``-group rate budget.

    Example::

        async with UpbitSession(access_key, secret_key, region="sg") as session:
            result = await session.cancel_orders(uuids=["cdd92199-2897-4e14-9448-f923320408ad"])
            print(result.success.count, result.failed.count)

    Every request, retries included, holds a lease of the account's limiter (see
    :class:`Limiter`): sessions of one access key in one event loop always share one budget, and
    ``limiter=`` shares one between keys of the same account. A 429 pauses the whole account and
    is retried with a fresh token, up to ``rate_limit_retries`` times; a 418 blocks the account
    for the time the exchange states and raises :class:`BlockedError`. A request that was sent
    but got no usable answer raises an :class:`OutcomeUnknownError` and is never re-sent: a
    cancel may have happened.

    Args:
        access_key: The API key's access key.
        secret_key: Its secret key; used only to sign, never shown.
        region: ``"sg"``, ``"id"``, ``"th"`` or ``"kr"``.
        base_url: Overrides ``region``: ``https://…``, or ``http://`` to a loopback host.
        limiter: The account's limiter: a :class:`SlidingWindowLimiter`, a ``RedisLimiter``,
            or an ``aiolimiter.AsyncLimiter`` (a token bucket: see the docs for its risk).
        http_session: An ``aiohttp.ClientSession`` whose connection pool to use; the caller
            keeps closing it. Its middlewares do not apply to these requests (a middleware that
            retried would send requests the limiter never granted).
        connect_timeout: Seconds to get a connection; past it nothing was sent.
        read_timeout: Seconds of silence from the exchange after sending before giving up.
        total_timeout: Seconds a request may take in all, however the answer trickles in
            (default: ``connect_timeout + read_timeout``).
        rate_limit_retries: How many times a request refused with 429 is retried.
    """

    __slots__ = (
        "__weakref__",
        "_access_key",
        "_base_url",
        "_claimed",
        "_closed",
        "_given_limiter",
        "_http",
        "_owns_http",
        "_rate_limit_retries",
        "_rate_limited",
        "_read_timeout",
        "_remaining_req",
        "_requests_sent",
        "_secret_key",
        "_timeout",
    )

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        region: str = "sg",
        base_url: str | None = None,
        limiter: Limiter | AsyncLimiter | None = None,
        http_session: aiohttp.ClientSession | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        total_timeout: float | None = None,
        rate_limit_retries: int = 3,
    ) -> None:
        if not isinstance(access_key, str) or not access_key:
            raise TypeError("access_key must be the API key's access key, a non-empty string")
        if not isinstance(secret_key, str) or not secret_key:
            raise TypeError("secret_key must be the API key's secret key, a non-empty string")
        for name, key in (("access_key", access_key), ("secret_key", secret_key)):
            if not key.isascii() or not key.isprintable():
                # Never echoed: a stray character is all the message needs to say.
                raise ValueError(
                    f"{name} holds characters an Upbit key never has (keys are printable ASCII); "
                    "check what was copied"
                )
        if len(secret_key) < 32:
            # Also what PyJWT requires of an HS256 key; Upbit's secrets have 40 characters.
            raise ValueError(
                f"secret_key has {len(secret_key)} characters; Upbit secret keys have 40. "
                "Check that the whole key was copied"
            )
        if base_url is None:
            if not isinstance(region, str) or region not in REGIONS:
                raise ValueError(
                    f"unknown region {region!r}: use one of {', '.join(REGIONS)} or pass base_url="
                )
            base_url = REGIONS[region]
        connect = _seconds("connect_timeout", connect_timeout)
        read = _seconds("read_timeout", read_timeout)
        total = (
            connect + read if total_timeout is None else _seconds("total_timeout", total_timeout)
        )
        if isinstance(rate_limit_retries, bool) or not isinstance(rate_limit_retries, int):
            raise TypeError(
                f"rate_limit_retries must be a whole number, not {rate_limit_retries!r}"
            )
        if rate_limit_retries < 0:
            raise ValueError("rate_limit_retries must be zero or more")
        if http_session is not None and not isinstance(http_session, aiohttp.ClientSession):
            raise TypeError(
                f"http_session must be an aiohttp.ClientSession, not {type(http_session).__name__}"
            )
        self._access_key = access_key
        self._secret_key = secret_key
        self._base_url = _check_base_url(base_url)
        self._given_limiter = None if limiter is None else as_limiter(limiter)
        self._claimed: Limiter | None = None
        self._http = http_session
        self._owns_http = http_session is None
        self._read_timeout = read
        self._timeout = aiohttp.ClientTimeout(total=total, connect=connect, sock_read=read)
        self._rate_limit_retries = rate_limit_retries
        self._closed = False
        self._remaining_req: RemainingReq | None = None
        self._requests_sent = 0
        self._rate_limited = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<UpbitSession {self._base_url} access_key={self._access_key[:4]}… {state}>"

    @property
    def base_url(self) -> str:
        """The API's base URL, such as ``https://sg-api.upbit.com``."""
        return self._base_url

    @property
    def limiter(self) -> Limiter:
        """The account's limiter, which every session of this key uses in this event loop."""
        if self._claimed is None:
            self._claimed = claim(self, self._access_key, self._given_limiter)
        return self._claimed

    @property
    def remaining_req(self) -> RemainingReq | None:
        """The last ``Remaining-Req`` header the exchange sent, if any."""
        return self._remaining_req

    @property
    def requests_sent(self) -> int:
        """Requests that left for the exchange so far, retries included."""
        return self._requests_sent

    @property
    def rate_limited(self) -> int:
        """429 answers received so far."""
        return self._rate_limited

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    async def __aenter__(self) -> UpbitSession:
        self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session (and its HTTP session, if it made one). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._claimed is not None:
            unclaim(self, self._access_key)
        if self._owns_http and self._http is not None:
            await self._http.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise SessionClosedError("this UpbitSession is closed; create a new one")
        if self._http is not None and self._http.closed:
            raise SessionClosedError(
                "the aiohttp.ClientSession given as http_session is closed; pass an open one"
            )
        _ = self.limiter
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30),
                headers={"Accept": "application/json", "User-Agent": _USER_AGENT},
            )
        return self._http

    async def cancel_orders(
        self,
        *,
        uuids: Iterable[str] | None = None,
        identifiers: Iterable[str] | None = None,
        stop: asyncio.Event | None = None,
        on_send: Callable[[], object] | None = None,
    ) -> CancelResult:
        """Cancel up to 20 orders in one ``DELETE /v1/orders/uuids`` request.

        Pass exactly one of ``uuids`` or ``identifiers``, 1 to 20 distinct ids. For any number
        of orders use :class:`BatchCanceller`.

        Example::

            result = await session.cancel_orders(uuids=order_ids)
            for order in result.failed.orders:
                print("could not cancel", order.uuid, order.market)

        For callers that orchestrate many requests (``BatchCanceller`` does): once ``stop`` is
        set, nothing more is sent for this call (waiting for the limiter included) and it
        raises :class:`NotSentError`; ``on_send`` is called each time the request is about to
        leave, so the caller knows whether it may have reached the exchange.

        Raises:
            TypeError, InvalidIdError: before sending, for ids that cannot be sent.
            UpbitError: the request failed; the class says whether it was sent and processed
                (see the error reference).
        """
        kind, ids = checked_request_ids(uuids, identifiers)
        if stop is not None and not isinstance(stop, asyncio.Event):
            raise TypeError(f"stop must be an asyncio.Event, not {type(stop).__name__}")
        if on_send is not None and not callable(on_send):
            raise TypeError(f"on_send must be a function taking no arguments, not {on_send!r}")
        return await self._cancel(kind, ids, stop, on_send)

    async def _cancel(
        self,
        kind: Kind,
        ids: Sequence[str],
        stop: asyncio.Event | None,
        on_send: Callable[[], object] | None,
    ) -> CancelResult:
        field = f"{kind}[]"
        params = [(field, value) for value in ids]
        body = await self._call("DELETE", "/v1/orders/uuids", params, ids, stop, on_send)
        try:
            return parse_cancel_result(body)
        except ValueError as error:
            problem = str(error)
        raise MalformedResponseError(
            f"the exchange answered HTTP 200 but not in the documented shape ({problem}); "
            "the orders may or may not be canceled",
            status=200,
            ids=ids,
        )

    async def orders(
        self,
        *,
        uuids: Iterable[str] | None = None,
        identifiers: Iterable[str] | None = None,
        stop: asyncio.Event | None = None,
    ) -> list[Order]:
        """The orders named by up to 100 ids, as they stand (``GET /v1/orders/uuids``).

        Ids the exchange does not know are simply absent from the list. Needs the API key's
        "order query" permission (else :class:`OutOfScopeError`). ``stop`` works as for
        :meth:`cancel_orders`.

        Example::

            for order in await session.orders(uuids=order_ids):
                print(order.uuid, order.state)
        """
        kind, ids = checked_request_ids(uuids, identifiers, most=MAX_IDS_PER_QUERY)
        if stop is not None and not isinstance(stop, asyncio.Event):
            raise TypeError(f"stop must be an asyncio.Event, not {type(stop).__name__}")
        params = [(f"{kind}[]", value) for value in ids]
        body = await self._call("GET", "/v1/orders/uuids", params, ids, stop, None)
        return self._orders_from(body, ids)

    async def open_orders(
        self,
        *,
        market: str | None = None,
        page: int = 1,
        limit: int = 100,
    ) -> list[Order]:
        """One page of the account's open orders, oldest first (``GET /v1/orders/open``).

        Open means ``wait`` or ``watch``. Pages hold up to ``limit`` (at most 100) orders; ask
        for the next page until one comes back short. Needs the "order query" permission.
        """
        if market is not None and not isinstance(market, str):
            raise TypeError(f"market must be a market code such as 'SGD-BTC', not {market!r}")
        if market is not None and not market.strip():
            raise ValueError(f"market must be a market code such as 'SGD-BTC', not {market!r}")
        for name, value, most in (("page", page, 10**9), ("limit", limit, 100)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be a whole number, not {value!r}")
            if not 1 <= value <= most:
                raise ValueError(f"{name} must be between 1 and {most}, not {value!r}")
        params = [("market", market)] if market is not None else []
        params += [
            ("states[]", "wait"),
            ("states[]", "watch"),
            ("page", str(page)),
            ("limit", str(limit)),
            ("order_by", "asc"),
        ]
        body = await self._call("GET", "/v1/orders/open", params, (), None, None)
        return self._orders_from(body, ())

    @staticmethod
    def _orders_from(body: Any, ids: Sequence[str]) -> list[Order]:
        try:
            return parse_orders(body)
        except ValueError as error:
            problem = str(error)
        raise MalformedResponseError(
            f"the exchange answered HTTP 200 but not with a list of orders ({problem})",
            status=200,
            ids=ids,
        )

    async def request(self, method: str, path: str, *, params: Params | None = None) -> Any:
        """Send any signed request within the same budget and return its decoded JSON.

        ``params`` go in the query string, in order; a list value repeats the name, so
        ``{"states[]": ["wait", "watch"]}`` sends ``states[]=wait&states[]=watch``.

        Example::

            orders = await session.request("GET", "/v1/orders/open", params={"market": "SGD-BTC"})
        """
        if not isinstance(method, str) or not isinstance(path, str):
            raise TypeError("method and path must be strings, such as 'GET' and '/v1/orders/open'")
        if not (method.isascii() and method.isalpha()):
            raise ValueError(f"method must be an HTTP method such as 'GET', not {method!r}")
        if not _PATH.fullmatch(path):
            raise ValueError(
                f"path must be like '/v1/orders/open' (ASCII, no spaces; parameters go in "
                f"params=), not {path!r}"
            )
        return await self._call(method.upper(), path, _flatten(params), (), None, None)

    async def _call(
        self,
        method: str,
        path: str,
        params: list[tuple[str, str]],
        ids: Sequence[str],
        stop: asyncio.Event | None,
        on_send: Callable[[], object] | None,
    ) -> Any:
        http = self._open()
        limiter = self.limiter
        query = encode_query(params)
        url = URL(
            f"{self._base_url}{path}" + (f"?{query.wire}" if query.wire else ""), encoded=True
        )
        call = _Call(method, url, query, ids, stop, on_send)
        attempt = 0
        while True:
            attempt += 1
            lease = await self._lease(limiter, stop, ids)
            try:
                with lease:
                    answer = await self._attempt(http, call, lease)
            except UpbitError as failure:
                _log.debug("%s %s (%s): %s", method, path, _ids_label(ids), type(failure).__name__)
                raise
            finally:
                if lease.sent_at is not None:
                    self._requests_sent += 1
            _log.debug("%s %s (%s): %d", method, path, _ids_label(ids), answer.status)
            if answer.status == 429:
                self._rate_limited += 1
                if attempt <= self._rate_limit_retries:
                    _log.debug("429 on %s %s; the account pauses, then retries", method, path)
                    continue
            if 200 <= answer.status < 300:
                try:
                    return json.loads(answer.body)
                except (ValueError, RecursionError):
                    pass
            error = self._error(answer, ids, attempt)
            # The body may quote the request's token back: keep it out of the traceback.
            del answer
            raise error

    async def _lease(
        self, limiter: Limiter, stop: asyncio.Event | None, ids: Sequence[str]
    ) -> Lease:
        """A lease for one attempt: raises BlockedError, or NotSentError once ``stop`` is set."""
        error: UpbitError
        try:
            if stop is not None and stop.is_set():
                error = NotSentError("not sent: stopped before its turn came", ids=ids)
            else:
                # Most grants need no wait: only a wait is raced with ``stop``.
                lease = limiter.try_acquire()
                if lease is not None:
                    return lease
                if stop is None:
                    return await limiter.acquire()
                return await self._lease_unless(limiter, stop)
        except BlockedError as blocked:
            error = BlockedError(
                blocked.message, name=blocked.name, retry_after=blocked.retry_after, ids=ids
            )
        except _StoppedError:
            error = NotSentError("not sent: stopped while it waited for its turn", ids=ids)
        raise error

    @staticmethod
    async def _lease_unless(limiter: Limiter, stop: asyncio.Event) -> Lease:
        """The limiter's grant, raced with ``stop``: whichever comes first."""
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
        raise _StoppedError

    async def _attempt(self, http: aiohttp.ClientSession, call: _Call, lease: Lease) -> _Answer:
        """Send once under ``lease`` and tell the limiter what the answer said."""
        if self._closed:
            raise SessionClosedError(
                "this UpbitSession was closed while the request waited; it was not sent",
                ids=call.ids,
            )
        if call.stop is not None and call.stop.is_set():
            raise NotSentError("not sent: stopped before its turn came", ids=call.ids)
        answer = await self._exchange(http, call, lease)
        remaining = parse_remaining_req(answer.headers.get("Remaining-Req"))
        if remaining is not None:
            self._remaining_req = remaining
        feedback = Feedback(answer.status, remaining)
        if answer.status == 418:
            _, message = error_details(418, answer.body, answer.headers["Content-Type"])
            block = block_seconds(
                message, answer.headers.get("Retry-After"), window=_EXCHANGE_WINDOW
            )
            answer = attrs.evolve(answer, block=block)
            feedback = Feedback(418, remaining, block[0], f"HTTP 418: {message}")
        lease.answered(feedback)
        return answer

    async def _exchange(self, http: aiohttp.ClientSession, call: _Call, lease: Lease) -> _Answer:
        """Send and read the answer; every transport failure becomes an :class:`UpbitError`.

        The token lives only in :meth:`_transmit`'s frame, and errors are raised here, outside
        the handler of the transport's exception, so that none of them chains to it (it holds
        the request's headers).
        """
        error: UpbitError | asyncio.CancelledError
        ids = call.ids
        try:
            return await self._transmit(http, call, lease)
        except BlockedError as blocked:
            error = BlockedError(
                blocked.message, name=blocked.name, retry_after=blocked.retry_after, ids=ids
            )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as failure:
            lease.unsent()
            error = ConnectError(
                f"could not connect to {self._base_url} ({type(failure).__name__}); "
                "nothing was sent, retrying is safe",
                ids=ids,
            )
        except _BodyTooLargeError:
            error = MalformedResponseError(
                f"the exchange answered with more than {MAX_BODY_BYTES >> 20} MiB; the answer "
                "was not read and the request may or may not have been processed",
                status=0,
                ids=ids,
            )
        except (TimeoutError, aiohttp.ServerTimeoutError):
            error = ResponseTimeoutError(
                f"no complete answer within {self._read_timeout:g} s of silence or "
                f"{self._timeout.total:g} s in all; the request may or may not have been "
                "processed",
                ids=ids,
            )
        except (
            _ResendRefusedError,
            aiohttp.ClientOSError,
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientPayloadError,
        ) as failure:
            what = (
                "the client would have sent it a second time"
                if isinstance(failure, _ResendRefusedError)
                else type(failure).__name__
            )
            error = self._lost(http, lease, ids, what)
        except aiohttp.ClientError as failure:
            error = OutcomeUnknownError(
                f"the request failed ({type(failure).__name__}: {redact(str(failure))}); it may "
                "or may not have been processed",
                ids=ids,
            )
        except RuntimeError:
            # aiohttp's "Session is closed": the caller closed its http_session meanwhile.
            if not http.closed:
                raise
            error = self._lost(http, lease, ids, "closed")
        except asyncio.CancelledError as cancelled:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                # This task's own cancellation, raised afresh: the original's traceback runs
                # through the transport's frames, which hold the request's headers.
                error = asyncio.CancelledError(*cancelled.args)
            else:
                # Not this task's cancellation: the caller closed its http_session, which
                # cancels requests waiting for one of its connections.
                error = self._lost(http, lease, ids, "cancelled")
        raise error

    def _lost(
        self, http: aiohttp.ClientSession, lease: Lease, ids: Sequence[str], what: str
    ) -> UpbitError:
        """The error for a request whose connection went away under it."""
        if http.closed and lease.sent_at is None:
            return SessionClosedError(
                "the aiohttp.ClientSession given as http_session was closed; the request was "
                "not sent",
                ids=ids,
            )
        reason = "the http_session was closed under it" if http.closed else what
        return ConnectionLostError(
            f"the connection dropped before the answer ({reason}); the request may or may not "
            "have been processed",
            ids=ids,
        )

    async def _transmit(self, http: aiohttp.ClientSession, call: _Call, lease: Lease) -> _Answer:
        attempts = 0

        async def one_attempt(
            request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
        ) -> aiohttp.ClientResponse:
            # aiohttp re-sends idempotent requests (DELETE among them) once when a kept-alive
            # connection drops: a request the limiter never granted, carrying the same nonce.
            # Refuse the copy and report the outcome as unknown instead.
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                raise _ResendRefusedError
            if call.on_send is not None:
                try:
                    call.on_send()
                except Exception:
                    _log.exception("on_send raised; the request goes on")
            lease.sending()
            return await handler(request)

        async with http.request(
            call.method,
            call.url,
            headers={
                "Authorization": "Bearer "
                + make_token(self._access_key, self._secret_key, call.query.hashed)
            },
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

    def _error(self, answer: _Answer, ids: Sequence[str], attempts: int) -> UpbitError:
        """The error for an answer that is not a usable success."""
        status = answer.status
        if 200 <= status < 300:
            return MalformedResponseError(
                f"the exchange answered HTTP {status} with a body that is not JSON; "
                "the request may or may not have been processed",
                status=status,
                ids=ids,
            )
        name, message = error_details(status, answer.body, answer.headers["Content-Type"])
        if status == 429:
            return RateLimitError(
                f"refused with 429 ({message}) {'once' if attempts == 1 else f'{attempts} times'}"
                "; the request was not processed",
                status=429,
                name=name or "too_many_requests",
                ids=ids,
            )
        if answer.block is not None:
            seconds, stated = answer.block
            return BlockedError(
                f"the exchange blocked the account ({message}); nothing is sent for "
                f"{seconds:g} s" + ("" if stated else " (no duration stated)"),
                name=name,
                retry_after=seconds,
                ids=ids,
            )
        if status >= 500:
            message = f"{message}; the request may or may not have been processed"
        return error_from_response(status, name, message, ids=ids)


class _StoppedError(Exception):
    """The caller's stop event was set before the limiter granted the request."""
