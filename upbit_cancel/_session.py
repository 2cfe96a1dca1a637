"""UpbitSession: signed requests within the account's rate budget."""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import aiohttp
from yarl import URL

from ._errors import (
    APIError,
    BlockedError,
    ConnectError,
    ConnectionLostError,
    MalformedResponseError,
    OutcomeUnknownError,
    RateLimitError,
    ResponseTimeoutError,
    SessionClosedError,
    error_from_response,
)
from ._ids import MAX_IDS_PER_REQUEST, UUID_EXAMPLE, is_uuid
from ._limiter import SlidingWindowLimiter, limiter_for
from ._models import CancelResult, RemainingReq, parse_cancel_result, parse_remaining_req
from ._signing import encode_query, make_token

__all__ = ["REGIONS", "UpbitSession"]

_log = logging.getLogger("upbit_cancel")

#: Base URL of each region's API.
REGIONS: Mapping[str, str] = {
    "sg": "https://sg-api.upbit.com",
    "id": "https://id-api.upbit.com",
    "th": "https://th-api.upbit.com",
    "kr": "https://api.upbit.com",
}

ParamValue = str | int | float
Params = Mapping[str, ParamValue | Sequence[ParamValue]] | Sequence[tuple[str, ParamValue]]

_USER_AGENT = "upbit-cancel/0.1"
_DEFAULT_BLOCK_SECONDS = 60.0
# "blocked for 30 seconds", "30초", "2 minutes", "1.5 min", "1시간" ...
_DURATION = re.compile(
    r"(\d+(?:\.\d+)?)\s*(seconds?|secs?|s\b|초|minutes?|mins?|m\b|분|hours?|h\b|시간)",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1.0, "초": 1.0, "m": 60.0, "분": 60.0, "h": 3600.0, "시": 3600.0}


class _ResendRefusedError(Exception):
    """aiohttp tried to send the same request a second time."""


def _block_seconds(message: str) -> float | None:
    """The block duration stated in a 418 message, if any."""
    # "1 minute 30 seconds" is 90 s: add up every duration stated (erring long is safe).
    matches = _DURATION.findall(message)
    if not matches:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit[0].lower()] for number, unit in matches)


def _check_base_url(base_url: str) -> str:
    url = URL(base_url)
    host = url.host
    if url.scheme not in ("https", "http") or not host:
        raise ValueError(f"base_url must look like https://host, not {base_url!r}")
    if url.scheme == "http" and not _is_loopback(host):
        raise ValueError(
            f"base_url {base_url!r} uses plain http to a non-loopback host; use https "
            "(http is allowed only for 127.0.0.1, ::1 and localhost, such as a FakeUpbit)"
        )
    if url.path not in ("", "/") or url.query_string or url.fragment:
        raise ValueError(f"base_url must be only scheme and host (and port), not {base_url!r}")
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
    items = params.items() if isinstance(params, Mapping) else params
    pairs: list[tuple[str, str]] = []
    for name, value in items:
        values = value if isinstance(value, (list, tuple)) else (value,)
        for item in values:
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise ValueError(f"parameter {name!r} must be a string or a number, not {item!r}")
            pairs.append((name, str(item)))
    return pairs


def _validate_ids(
    uuids: Iterable[str] | None, identifiers: Iterable[str] | None
) -> tuple[Literal["uuids", "identifiers"], list[str]]:
    if (uuids is None) == (identifiers is None):
        raise ValueError("pass exactly one of uuids=[...] or identifiers=[...]")
    kind: Literal["uuids", "identifiers"] = "uuids" if uuids is not None else "identifiers"
    given = uuids if uuids is not None else identifiers
    assert given is not None
    if isinstance(given, (str, bytes)):
        raise ValueError(f"{kind} must be a list of strings, not one string: {kind}=[{given!r}]")
    values = list(given)
    if not values:
        raise ValueError(f"{kind} is empty: pass 1 to {MAX_IDS_PER_REQUEST} ids")
    if len(values) > MAX_IDS_PER_REQUEST:
        raise ValueError(
            f"{len(values)} {kind} given; one request cancels at most {MAX_IDS_PER_REQUEST}. "
            "Use BatchCanceller(session).cancel(...) for any number of orders"
        )
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"{kind} must be strings, not {type(value).__name__} ({value!r})")
        if kind == "uuids" and not is_uuid(value):
            raise ValueError(
                f"malformed uuid {value!r}: Upbit order uuids are lowercase hex like {UUID_EXAMPLE}"
            )
        if kind == "identifiers" and not value:
            raise ValueError("identifiers must not be empty strings")
    if len(set(values)) != len(values):
        counts = collections.Counter(values)
        duplicates = sorted(value for value, count in counts.items() if count > 1)
        raise ValueError(
            f"duplicate {kind}: {', '.join(duplicates)}; send each once "
            "(BatchCanceller removes duplicates for you)"
        )
    return kind, values


def _error_details(status: int, body: bytes, content_type: str) -> tuple[str | None, str]:
    """Upbit's error ``name`` and ``message`` from an error answer, JSON or not."""
    try:
        error = json.loads(body)["error"]
        name, message = error.get("name"), error.get("message")
        if name is None or isinstance(name, str):
            return name, str(message) if message is not None else f"HTTP {status}"
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        pass
    text = body.decode("utf-8", "replace").strip()
    if "html" in content_type or text.lstrip().startswith("<"):
        return None, f"the exchange answered HTTP {status} with an HTML page instead of JSON"
    if not text:
        return None, f"the exchange answered HTTP {status} with an empty body"
    return None, text[:200]


class UpbitSession:
    """One Upbit account's signed connection, within its ``default``-group rate budget.

    Example::

        async with UpbitSession(access_key, secret_key, region="sg") as session:
            result = await session.cancel_orders(uuids=["cdd92199-2897-4e14-9448-f923320408ad"])
            print(result.success.count, result.failed.count)

    Every request, retries included, waits for a grant from the account's limiter (see
    :class:`SlidingWindowLimiter`): sessions of the same access key in one event loop share one
    automatically, and ``limiter=`` shares one between keys of the same account. A 429 pauses
    the whole account and is retried with a fresh token, up to ``rate_limit_retries`` times; a
    418 blocks the account for the time the exchange states and raises :class:`BlockedError`.
    A request that was sent but got no usable answer raises an :class:`OutcomeUnknownError`
    and is never re-sent: a cancel may have happened.

    Args:
        access_key: The API key's access key.
        secret_key: Its secret key; used only to sign, never shown.
        region: ``"sg"``, ``"id"``, ``"th"`` or ``"kr"``.
        base_url: Overrides ``region``: ``https://…``, or ``http://`` to a loopback host.
        limiter: The account's limiter, to share one budget between keys of one account.
        http_session: An ``aiohttp.ClientSession`` to send with; the caller keeps closing it.
        connect_timeout: Seconds to get a connection; past it nothing was sent.
        read_timeout: Seconds of silence from the exchange after sending before giving up.
        rate_limit_retries: How many times a request refused with 429 is retried.
    """

    __slots__ = (
        "_access_key",
        "_base_url",
        "_closed",
        "_connect_timeout",
        "_http",
        "_limiter",
        "_owns_http",
        "_rate_limit_retries",
        "_rate_limited",
        "_read_timeout",
        "_remaining_req",
        "_requests_sent",
        "_secret_key",
    )

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        region: str = "sg",
        base_url: str | None = None,
        limiter: SlidingWindowLimiter | None = None,
        http_session: aiohttp.ClientSession | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        rate_limit_retries: int = 3,
    ) -> None:
        if not isinstance(access_key, str) or not access_key:
            raise ValueError("access_key must be the API key's access key, a non-empty string")
        if not isinstance(secret_key, str) or not secret_key:
            raise ValueError("secret_key must be the API key's secret key, a non-empty string")
        if len(secret_key.encode()) < 32:
            # Also what PyJWT requires of an HS256 key; Upbit's secrets have 40 characters.
            raise ValueError(
                f"secret_key has {len(secret_key)} characters; Upbit secret keys have 40. "
                "Check that the whole key was copied"
            )
        if base_url is None:
            if region not in REGIONS:
                raise ValueError(
                    f"unknown region {region!r}: use one of {', '.join(REGIONS)} or pass base_url="
                )
            base_url = REGIONS[region]
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("connect_timeout and read_timeout must be positive seconds")
        if rate_limit_retries < 0:
            raise ValueError("rate_limit_retries must be zero or more")
        self._access_key = access_key
        self._secret_key = secret_key
        self._base_url = _check_base_url(base_url)
        self._limiter = limiter
        self._http = http_session
        self._owns_http = http_session is None
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
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
    def limiter(self) -> SlidingWindowLimiter:
        """The account's limiter; ``async with session.limiter:`` spends the same budget."""
        if self._limiter is None:
            self._limiter = limiter_for(self._access_key)
        return self._limiter

    @property
    def remaining_req(self) -> RemainingReq | None:
        """The last ``Remaining-Req`` header the exchange sent, if any."""
        return self._remaining_req

    @property
    def requests_sent(self) -> int:
        """Requests sent so far, retries included."""
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
        if self._owns_http and self._http is not None:
            await self._http.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise SessionClosedError("this UpbitSession is closed; create a new one")
        if self._http is not None and self._http.closed:
            raise SessionClosedError(
                "the aiohttp.ClientSession given as http_session is closed; pass an open one"
            )
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30),
                headers={"Accept": "application/json", "User-Agent": _USER_AGENT},
            )
        _ = self.limiter
        return self._http

    async def cancel_orders(
        self,
        *,
        uuids: Iterable[str] | None = None,
        identifiers: Iterable[str] | None = None,
    ) -> CancelResult:
        """Cancel up to 20 orders in one ``DELETE /v1/orders/uuids`` request.

        Pass exactly one of ``uuids`` or ``identifiers``, 1 to 20 distinct ids. For any number
        of orders use :class:`BatchCanceller`.

        Example::

            result = await session.cancel_orders(uuids=order_ids)
            for order in result.failed.orders:
                print("could not cancel", order.uuid, order.market)

        Raises:
            ValueError: before sending, for ids that cannot be sent (the message says why).
            UpbitError: the request failed; see the errors module for the tree.
        """
        kind, ids = _validate_ids(uuids, identifiers)
        return await self._cancel(kind, ids)

    async def _cancel(
        self,
        kind: Literal["uuids", "identifiers"],
        ids: Sequence[str],
        before_send: Callable[[], None] | None = None,
    ) -> CancelResult:
        """Cancel already validated ids; ``before_send`` runs before each attempt goes out."""
        field = f"{kind}[]"
        params = [(field, value) for value in ids]
        body = await self._call("DELETE", "/v1/orders/uuids", params, ids, before_send)
        try:
            return parse_cancel_result(body)
        except ValueError as error:
            raise MalformedResponseError(
                f"the exchange answered HTTP 200 but not in the documented shape ({error}); "
                "the orders may or may not be canceled",
                status=200,
                ids=ids,
            ) from None

    async def request(self, method: str, path: str, *, params: Params | None = None) -> Any:
        """Send any signed request within the same budget and return its decoded JSON.

        ``params`` go in the query string, in order; a list value repeats the name, so
        ``{"states[]": ["wait", "watch"]}`` sends ``states[]=wait&states[]=watch``.

        Example::

            orders = await session.request("GET", "/v1/orders/open", params={"market": "SGD-BTC"})
        """
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', like '/v1/orders/open', not {path!r}")
        return await self._call(method.upper(), path, _flatten(params), ())

    async def _call(
        self,
        method: str,
        path: str,
        params: list[tuple[str, str]],
        ids: Sequence[str],
        before_send: Callable[[], None] | None = None,
    ) -> Any:
        http = self._open()
        limiter = self.limiter
        query = encode_query(params)
        url = URL(
            f"{self._base_url}{path}" + (f"?{query.wire}" if query.wire else ""), encoded=True
        )
        attempt = 0
        while True:
            attempt += 1
            try:
                granted_at = await limiter.grant()
            except BlockedError as error:
                raise BlockedError(
                    error.message, name=error.name, retry_after=error.retry_after, ids=ids
                ) from None
            try:
                if self._closed:
                    raise SessionClosedError(
                        "this UpbitSession was closed while the request waited"
                    )
                if before_send is not None:
                    before_send()
                token = make_token(self._access_key, self._secret_key, query.hashed)
                self._requests_sent += 1
                status, headers, body = await self._send(http, method, url, token, ids, limiter)
            finally:
                # The exchange counted it (if at all) by now: its slot frees one window later.
                limiter.release()

            remaining = parse_remaining_req(headers.get("Remaining-Req"))
            if remaining is not None:
                self._remaining_req = remaining
                if remaining.group == "default":
                    limiter.observe_remaining(remaining, granted_at)

            if status == 429:
                self._rate_limited += 1
                pause = limiter.rate_limited(granted_at)
                if attempt <= self._rate_limit_retries:
                    _log.debug("429 on %s %s; account paused %.2f s, retrying", method, path, pause)
                    continue
                name, message = _error_details(status, body, headers.get("Content-Type", ""))
                raise RateLimitError(
                    f"refused with 429 ({message}) {attempt} times; the request was not processed",
                    status=status,
                    name=name or "too_many_requests",
                    ids=ids,
                )
            limiter.succeeded(granted_at)
            if 200 <= status < 300:
                try:
                    return json.loads(body)
                except (ValueError, RecursionError):
                    raise MalformedResponseError(
                        f"the exchange answered HTTP {status} with a body that is not JSON; "
                        "the request may or may not have been processed",
                        status=status,
                        ids=ids,
                    ) from None
            raise self._error(status, headers, body, ids, limiter)

    def _error(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        ids: Sequence[str],
        limiter: SlidingWindowLimiter,
    ) -> APIError:
        name, message = _error_details(status, body, headers.get("Content-Type", ""))
        if status == 418:
            stated = _block_seconds(message)
            seconds = stated if stated is not None else _DEFAULT_BLOCK_SECONDS
            limiter.block(seconds, f"HTTP 418: {message}")
            return BlockedError(
                f"the exchange blocked the account ({message}); nothing is sent for "
                f"{seconds:g} s" + ("" if stated is not None else " (no duration stated)"),
                name=name,
                retry_after=seconds,
                ids=ids,
            )
        if status >= 500:
            message = f"{message}; the request may or may not have been processed"
        return error_from_response(status, name, message, ids=ids)

    async def _send(
        self,
        http: aiohttp.ClientSession,
        method: str,
        url: URL,
        token: str,
        ids: Sequence[str],
        limiter: SlidingWindowLimiter,
    ) -> tuple[int, Mapping[str, str], bytes]:
        attempts = 0

        async def one_attempt(
            request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
        ) -> aiohttp.ClientResponse:
            # aiohttp re-sends idempotent requests (DELETE among them) once when a kept-alive
            # connection drops; the copy would carry the same nonce, and a cancel that was
            # processed would come back as failed. Refuse the copy and report the outcome as
            # unknown instead.
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                raise _ResendRefusedError
            # A 418 may have come back for another request since this one was granted.
            now = asyncio.get_running_loop().time()
            if now < limiter.blocked_until:
                raise BlockedError(
                    "the exchange blocked the account while this request waited; it was not sent",
                    name="blocked",
                    retry_after=limiter.blocked_until - now,
                    ids=ids,
                )
            return await handler(request)

        timeout = aiohttp.ClientTimeout(
            total=None, connect=self._connect_timeout, sock_read=self._read_timeout
        )
        try:
            async with http.request(
                method,
                url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=timeout,
                # Per-request middlewares replace the session's: keep a caller's own.
                middlewares=(*getattr(http, "_middlewares", ()), one_attempt),
                allow_redirects=False,
                raise_for_status=False,
            ) as response:
                return response.status, response.headers, await response.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
            raise ConnectError(
                f"could not connect to {self._base_url} ({type(error).__name__}); "
                "nothing was sent, retrying is safe",
                ids=ids,
            ) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise ResponseTimeoutError(
                f"no answer within {self._read_timeout:g} s; the request may or may not have "
                "been processed",
                ids=ids,
            ) from None
        except (
            _ResendRefusedError,
            aiohttp.ClientOSError,
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientPayloadError,
        ) as error:
            raise ConnectionLostError(
                f"the connection dropped before the answer ({type(error).__name__}); "
                "the request may or may not have been processed",
                ids=ids,
            ) from None
        except aiohttp.ClientError as error:
            raise OutcomeUnknownError(
                f"the request failed ({type(error).__name__}: {error}); it may or may not have "
                "been processed",
                ids=ids,
            ) from None
