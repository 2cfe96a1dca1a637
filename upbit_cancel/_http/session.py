"""UpbitSession: the Upbit API of one access key, its endpoints and its lifecycle.

Each endpoint checks its arguments and calls :meth:`UpbitSession._call`, the package's one
internal entry point: an :class:`Endpoint` (method, path, rate-limit group, how to read its
answer) and ids already checked. The batch calls it directly with the ids its ledger checked.
Sending, signing, pacing and error mapping are the transport's (``transport``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from ssl import SSLContext
from typing import Any, Generic, TypeVar
from urllib.parse import unquote

import aiohttp
import attrs
from aiolimiter import AsyncLimiter
from yarl import URL

from .._check import seconds, whole_number
from .._errors import ConnectError, SessionClosedError
from .._ids import MAX_IDS_PER_QUERY, MAX_IDS_PER_REQUEST, Ids, checked_request_ids
from .._limiter.contract import Limiter, RemainingReq
from .._limiter.core import GROUPS
from .._limiter.registry import as_limiter
from .._log import log as _log
from .._models import CancelResult, Order
from .._redact import redact_url
from .._regions import REGIONS
from .answers import parse_cancel_result, parse_orders
from .transport import Observer, Request, Transport

__all__ = [
    "CANCEL_BY_IDS",
    "CANCEL_OPEN",
    "MAX_BATCH_CANCEL",
    "OPEN_ORDERS",
    "ORDERS_BY_IDS",
    "Endpoint",
    "UpbitSession",
    "batch_cancel_params",
    "check_market_code",
]

T = TypeVar("T")


#: A market code as Upbit writes it (quote currency first, upper case), and a currency code.
_MARKET = re.compile(r"[A-Z0-9]{2,10}-[A-Z0-9]{1,20}")
_CURRENCY = re.compile(r"[A-Z0-9]{2,10}")

#: What a path may be: ASCII from '/', without query, fragment or spaces.
_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")

ParamValue = str | int | float
Params = Mapping[str, ParamValue | Sequence[ParamValue]] | Sequence[tuple[str, ParamValue]]


@attrs.frozen
class Endpoint(Generic[T]):
    """One of the exchange's endpoints, as the session calls it."""

    method: str
    path: str
    #: Reads the decoded JSON of a 200 answer; ``ValueError`` when it is off-shape.
    parse: Callable[[Any], T]
    #: The rate-limit group whose budget it spends.
    group: str = "default"
    #: What an unreadable 200 answer means for the orders.
    unreadable: str = "the request may or may not have been processed"


def _decoded(body: Any) -> Any:
    return body


#: ``DELETE /v1/orders/uuids``: cancel up to 20 orders.
CANCEL_BY_IDS = Endpoint(
    "DELETE",
    "/v1/orders/uuids",
    parse_cancel_result,
    unreadable="the orders may or may not be canceled",
)
#: ``GET /v1/orders/uuids``: up to 100 orders, as they stand.
ORDERS_BY_IDS = Endpoint("GET", "/v1/orders/uuids", parse_orders)
#: ``GET /v1/orders/open``: a page of open orders.
OPEN_ORDERS = Endpoint("GET", "/v1/orders/open", parse_orders)
#: ``DELETE /v1/orders/open``: the batch cancel, up to 300 ``wait`` orders chosen by filter, in
#: the ``order-cancel-all`` group (1 call per 2 s), outside the ``default`` group's budget.
CANCEL_OPEN = Endpoint(
    "DELETE",
    "/v1/orders/open",
    parse_cancel_result,
    group="order-cancel-all",
    unreadable="orders matching the filter may or may not be canceled",
)
#: Most orders one batch cancel cancels.
MAX_BATCH_CANCEL = 300
#: Most markets in ``pairs`` or ``excluded_pairs`` of a batch cancel.
_MAX_PAIRS = 20
#: Handshakes a warm-up times, one after another, to learn the path's floor.
_PROBES = 3
#: Seconds between two warm-ups of a session kept warm: below the 30 s after which its pool
#: closes an idle connection, so the same connections stay open.
_WARM_EVERY = 20.0
#: Seconds until a warm-up that gave way to requests is tried again.
_WARM_RETRY = 0.5

#: The endpoints outside the ``default`` group, for :meth:`UpbitSession.request`.
_GROUP_OF: Mapping[tuple[str, str], str] = {("DELETE", "/v1/orders/open"): "order-cancel-all"}


def _group_of(method: str, path: str) -> str:
    """The rate-limit group of ``method path`` as a server that decodes and tidies the path
    would route it (``/v1/orders/%6Fpen/``, ``/v1//orders/./open`` are the batch cancel)."""
    tidy = posixpath.normpath("/" + unquote(path).lower()).replace("//", "/")
    return _GROUP_OF.get((method, tidy), "default")


class _OnSend:
    """``on_send`` of :meth:`UpbitSession.cancel_orders` as an :class:`Observer`."""

    __slots__ = ("_on_send",)

    def __init__(self, on_send: Callable[[], object]) -> None:
        self._on_send = on_send

    def sending(self) -> None:
        try:
            self._on_send()
        except Exception:
            _log.exception("on_send raised; the request goes on")

    def ended(self, *, sent: bool, status: int | None) -> None:
        pass


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


class UpbitSession:
    """One Upbit account's signed connection, each request within its rate-limit group's budget.

    Example::

        async with UpbitSession(access_key, secret_key, region="sg") as session:
            result = await session.cancel_orders(uuids=["cdd92199-2897-4e14-9448-f923320408ad"])
            print(result.success.count, result.failed.count)

    Every request, retries included, holds a lease of the account's limiter of its rate-limit
    group (see :class:`Limiter`): sessions of one access key in one event loop always share
    every budget, and ``limiter=`` shares one between keys of the same account. A 429 pauses
    the whole account and is retried with a fresh token, up to ``rate_limit_retries`` times; a
    418 blocks the account for the time the exchange states and raises :class:`BlockedError`.
    A request that was sent but got no usable answer raises an :class:`OutcomeUnknownError`
    and is never re-sent: a cancel may have happened.

    Args:
        access_key: The API key's access key.
        secret_key: Its secret key; used only to sign, never shown.
        region: ``"sg"``, ``"id"``, ``"th"`` or ``"kr"``.
        base_url: Overrides ``region``: ``https://…``, or ``http://`` to a loopback host.
        limiter: The account's limiter of the ``default`` group: a
            :class:`SlidingWindowLimiter`, a ``RedisLimiter`` (whose Redis then keeps the other
            groups' budgets too), or an ``aiolimiter.AsyncLimiter`` (a token bucket: see the
            docs for its risk).
        group_limiters: Limiters of other rate-limit groups, by group, for budgets other than
            Upbit's: ``{"order-cancel-all": SlidingWindowLimiter(1, 3.0,
            group="order-cancel-all")}``. Each must have been made for its group. By default a
            group's budget lives where the ``default`` group's does, with Upbit's limit
            (``order-cancel-all``: 1 call per 2 s).
        http_session: An ``aiohttp.ClientSession`` whose connection pool to use; the caller
            keeps closing it. Its middlewares do not apply to these requests (a middleware that
            retried would send requests the limiter never granted).
        ssl: An ``ssl.SSLContext`` for the session's own connections, such as one that also
            trusts a test server's certificate authority (by default, the system's authorities,
            with certificates and host names verified). With ``http_session``, configure its
            connector instead.
        connect_timeout: Seconds to get a connection; past it nothing was sent.
        read_timeout: Seconds of silence from the exchange after sending before giving up.
        total_timeout: Seconds a request may take in all, however the answer trickles in
            (default: ``connect_timeout + read_timeout``).
        rate_limit_retries: How many times a request refused with 429 is retried.
    """

    __slots__ = ("__weakref__", "_access_key", "_base_url", "_closing", "_keeper", "_transport")

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        region: str = "sg",
        base_url: str | None = None,
        limiter: Limiter | AsyncLimiter | None = None,
        group_limiters: Mapping[str, Limiter | AsyncLimiter] | None = None,
        http_session: aiohttp.ClientSession | None = None,
        ssl: SSLContext | None = None,
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
            # Also what an HS256 key needs (RFC 7518); Upbit's secrets have 40 characters.
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
        connect = seconds("connect_timeout", connect_timeout)
        read = seconds("read_timeout", read_timeout)
        total = connect + read if total_timeout is None else seconds("total_timeout", total_timeout)
        whole_number("rate_limit_retries", rate_limit_retries)
        if http_session is not None and not isinstance(http_session, aiohttp.ClientSession):
            raise TypeError(
                f"http_session must be an aiohttp.ClientSession, not {type(http_session).__name__}"
            )
        if ssl is not None and not isinstance(ssl, SSLContext):
            raise TypeError(f"ssl must be an ssl.SSLContext, not {type(ssl).__name__}")
        if ssl is not None and http_session is not None:
            raise ValueError(
                "ssl applies to the session's own connections; with http_session, give the "
                "SSL context to its connector (aiohttp.TCPConnector(ssl=...)) instead"
            )
        self._access_key = access_key
        self._base_url = _check_base_url(base_url)
        # The task that keeps the pool warm after warm_up(); the session's close ends it.
        self._keeper: asyncio.Task[None] | None = None
        # Set by aclose() before it waits for the keeper: no warm-up may start a new one.
        self._closing = False
        self._transport = Transport(
            access_key=access_key,
            secret_key=secret_key,
            base_url=self._base_url,
            limiter=None if limiter is None else as_limiter(limiter),
            group_limiters=_group_limiters(group_limiters),
            http_session=http_session,
            ssl=ssl,
            timeout=aiohttp.ClientTimeout(total=total, connect=connect, sock_read=read),
            rate_limit_retries=rate_limit_retries,
        )

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<UpbitSession {self._base_url} access_key={self._access_key[:4]}… {state}>"

    @property
    def base_url(self) -> str:
        """The API's base URL, such as ``https://sg-api.upbit.com``."""
        return self._base_url

    @property
    def limiter(self) -> Limiter:
        """The account's limiter of the ``default`` group, which every session of this key uses
        in this event loop."""
        return self._transport.limiter()

    @property
    def remaining_req(self) -> RemainingReq | None:
        """The last ``Remaining-Req`` header the exchange sent, if any."""
        return self._transport.remaining_req

    @property
    def requests_sent(self) -> int:
        """Requests that left for the exchange so far through this session, retries included
        (every operation's: a batch reports its own in its result)."""
        return self._transport.requests_sent

    @property
    def rate_limited(self) -> int:
        """429 answers received so far through this session."""
        return self._transport.rate_limited

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._transport.closed

    async def __aenter__(self) -> UpbitSession:
        self._transport.open()
        return self

    async def warm_up(
        self, connections: int = 30, *, within: float = 10.0, keep: bool = True
    ) -> None:
        """Open ``connections`` connections to the exchange now (the TCP and TLS handshakes),
        so that the next ``connections`` requests leave at once, and learn the path's floor
        from the handshakes, so that the pacing of a burst trusts it from its first window on.

        Nothing is sent: it costs no rate-limit budget, only handshakes. Three more connections
        of its own are opened and closed one after another to time the path (a handshake is
        a round trip per flight: two for TLS 1.3, three for TLS 1.2, one for plain TCP; the
        floor is the least of them, lowered by their spread, as for requests). When the
        requests go through an HTTP proxy (a caller's ``http_session`` with ``proxy=``, or with
        ``trust_env=True`` where the environment names one), the connections are opened through
        it, as the requests will take them, and no handshake is timed. Meanwhile, for
        ``within`` at most, a limiter that keeps its budget in a store (``HostLimiter``,
        ``RedisLimiter``) opens it, claims the access key's name and, in Redis, has each
        group's budget made if it holds none, joining nothing: the burst's first grant is one
        transaction and waits out no first pause. A store out of reach is left for the first
        request to meet, as it would have.

        With ``keep`` (the default) the session keeps it so until it is closed: every 20 s, below
        the 30 s after which an idle connection closes, it warms up again (a connection still open
        is only marked used: nothing is sent on it) and times three handshakes. That costs three TLS
        handshakes every 20 s (none through a proxy), plus one for each connection the server
        closed meanwhile, and a few
        small commands to the budget's store. A warm-up that fails in the background is a warning
        (logger ``upbit_cancel``) and is tried again. One never holds a connection a request of this
        session needs: it leaves a connection to each request (or stream's connection) under way and
        is skipped when that leaves none, a request about to take a connection during one ends it
        (the idle connections it holds are given back first, and it takes no more), and a handshake
        it timed while a request came is not counted. One skipped or ended is tried again every half
        second. ``connections`` and the streams open must fit the pool (100 connections, or what a
        caller's ``http_session`` allows).

        Opening a session does not warm it: most sessions are short-lived, or used where the
        exchange is not (tests), and a burst a while later needs the pool kept warm anyway.
        Call it once, ahead of the burst (a kill switch, a watchdog waiting for its moment).

        Raises :class:`ConnectError` if a connection cannot be made within ``within`` seconds
        (the connections opened stay; with ``keep`` it is tried again in the background),
        :class:`SessionClosedError` once closed.

        Example::

            async with UpbitSession(access_key, secret_key, region="sg") as session:
                await session.warm_up()
                ...  # later: the first 30 cancels leave at once, paced on the known floor
        """
        whole_number("connections", connections, least=1, most=100)
        within = seconds("within", within)
        if not isinstance(keep, bool):
            raise TypeError(f"keep must be True or False, not {keep!r}")
        if self._closing:
            raise SessionClosedError("this UpbitSession is closed; create a new one")
        self._transport.open()
        if keep and (self._keeper is None or self._keeper.done()):
            self._keeper = asyncio.create_task(
                self._keep_warm(connections, within), name="upbit_cancel keep warm"
            )
        await self._transport.warm(connections, _PROBES, within=within)

    async def _keep_warm(self, connections: int, within: float) -> None:
        task = asyncio.current_task()
        failing = False
        wait = _WARM_EVERY
        while not self._transport.closed:
            await asyncio.sleep(wait)
            wait = _WARM_EVERY
            try:
                ran = await self._transport.refresh(connections, _PROBES, within=within)
            except ConnectError as error:
                if not failing:
                    _log.warning("cannot keep the connections open: %s; trying again", error)
                failing = True
            except SessionClosedError:
                return
            except Exception:
                # Nothing the keeper meets may end it unseen: said, and tried again later.
                _log.exception("keeping the connections open failed; trying again")
            else:
                if not ran:
                    # Skipped or ended by a request: again as soon as the requests leave a
                    # moment, long before an idle connection times out.
                    wait = _WARM_RETRY
                elif failing:
                    _log.warning("the connections to %s are open again", self._base_url)
                    failing = False
            if self._keeper is not task:
                # Closed meanwhile (the close lets go of its keeper before it cancels it).
                raise asyncio.CancelledError

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session (and its HTTP session, if it made one). Safe to call twice."""
        self._closing = True
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        await self._transport.aclose()

    async def _call(
        self,
        endpoint: Endpoint[T],
        *,
        ids: Ids | None = None,
        params: Sequence[tuple[str, str]] = (),
        stop: asyncio.Event | None = None,
        observer: Observer | None = None,
    ) -> T:
        """Call ``endpoint`` with ``ids`` (checked already) and ``params``: the one way in.

        Once ``stop`` is set nothing more is sent; ``observer`` learns of each attempt.
        """
        request = Request(
            endpoint.method,
            endpoint.path,
            (*(ids.params() if ids is not None else ()), *params),
            group=endpoint.group,
            ids=ids.values if ids is not None else (),
            unreadable=endpoint.unreadable,
        )
        return await self._transport.send(request, endpoint.parse, stop=stop, observer=observer)

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

        For callers that orchestrate many requests: once ``stop`` is set, nothing more is sent
        for this call (waiting for the limiter included) and it raises
        :class:`NotSentError`; ``on_send`` is called each time the request is about to leave,
        so the caller knows whether it may have reached the exchange.

        Raises:
            TypeError, InvalidIdError: before sending, for ids that cannot be sent.
            UpbitError: the request failed; the class says whether it was sent and processed
                (see the error reference).
        """
        ids = checked_request_ids(uuids, identifiers, most=MAX_IDS_PER_REQUEST)
        _check_stop(stop)
        if on_send is not None and not callable(on_send):
            raise TypeError(f"on_send must be a function taking no arguments, not {on_send!r}")
        observer = None if on_send is None else _OnSend(on_send)
        return await self._call(CANCEL_BY_IDS, ids=ids, stop=stop, observer=observer)

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
        ids = checked_request_ids(uuids, identifiers, most=MAX_IDS_PER_QUERY)
        _check_stop(stop)
        return await self._call(ORDERS_BY_IDS, ids=ids, stop=stop)

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
        return await self._call(OPEN_ORDERS, params=open_orders_params(market, page, limit))

    async def cancel_open_orders(
        self,
        *,
        side: str = "all",
        pairs: Iterable[str] | None = None,
        excluded_pairs: Iterable[str] | None = None,
        quote_currencies: Iterable[str] | None = None,
        count: int = MAX_BATCH_CANCEL,
        order_by: str = "desc",
        stop: asyncio.Event | None = None,
        on_send: Callable[[], object] | None = None,
    ) -> CancelResult:
        """Cancel up to ``count`` open orders chosen by filter in one batch cancel
        (``DELETE /v1/orders/open``).

        It spends the ``order-cancel-all`` group's budget (1 call per 2 s per account), not the
        ``default`` group's, and cancels orders in state ``wait`` only: reserved orders
        (``watch``) need :meth:`cancel_orders`. ``count`` is always sent (Upbit cancels only 20
        orders when it is left out).

        Example::

            result = await session.cancel_open_orders(pairs=["SGD-BTC"])
            print(result.success.count, "canceled")

        Args:
            side: ``"all"``, ``"ask"`` (sell orders) or ``"bid"`` (buy orders).
            pairs: Only these markets (at most 20), such as ``["SGD-BTC"]``.
            excluded_pairs: Not these markets (at most 20); they win over ``pairs``.
            quote_currencies: Only markets quoted in these currencies, such as ``["SGD"]``;
                not together with ``pairs``.
            count: Orders to cancel at most, 1 to 300.
            order_by: ``"desc"`` (newest first) or ``"asc"`` (oldest first).
            stop, on_send: As for :meth:`cancel_orders`.

        Raises:
            TypeError, ValueError: before sending, for arguments the exchange would refuse.
            UpbitError: the request failed (an :class:`OutcomeUnknownError` when some orders
                may have been canceled without the answer naming them).
        """
        params = batch_cancel_params(
            side=side,
            pairs=pairs,
            excluded_pairs=excluded_pairs,
            quote_currencies=quote_currencies,
            count=count,
            order_by=order_by,
        )
        _check_stop(stop)
        if on_send is not None and not callable(on_send):
            raise TypeError(f"on_send must be a function taking no arguments, not {on_send!r}")
        observer = None if on_send is None else _OnSend(on_send)
        return await self._call(CANCEL_OPEN, params=params, stop=stop, observer=observer)

    async def request(self, method: str, path: str, *, params: Params | None = None) -> Any:
        """Send any signed request within its rate-limit group's budget; return its decoded JSON.

        ``params`` go in the query string, in order; a list value repeats the name, so
        ``{"states[]": ["wait", "watch"]}`` sends ``states[]=wait&states[]=watch``. The batch
        cancel (``DELETE /v1/orders/open``) spends the ``order-cancel-all`` group's budget,
        every other call the ``default`` group's.

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
        method = method.upper()
        endpoint = Endpoint(method, path, _decoded, group=_group_of(method, path))
        return await self._call(endpoint, params=_flatten(params))


def open_orders_params(market: str | None, page: int, limit: int) -> list[tuple[str, str]]:
    """The query of one page of open orders (``wait`` and ``watch``, oldest first), checked."""
    if market is not None and not isinstance(market, str):
        raise TypeError(f"market must be a market code such as 'SGD-BTC', not {market!r}")
    if market is not None and not market.strip():
        raise ValueError(f"market must be a market code such as 'SGD-BTC', not {market!r}")
    whole_number("page", page, least=1, most=10**9)
    whole_number("limit", limit, least=1, most=100)
    params = [("market", market)] if market is not None else []
    return [
        *params,
        ("states[]", "wait"),
        ("states[]", "watch"),
        ("page", str(page)),
        ("limit", str(limit)),
        ("order_by", "asc"),
    ]


def batch_cancel_params(
    *,
    side: str = "all",
    pairs: Iterable[str] | None = None,
    excluded_pairs: Iterable[str] | None = None,
    quote_currencies: Iterable[str] | None = None,
    count: int = MAX_BATCH_CANCEL,
    order_by: str = "desc",
) -> list[tuple[str, str]]:
    """The query of one batch cancel, checked; ``count`` is always in it."""
    if side not in ("all", "ask", "bid"):
        raise ValueError(f"side must be 'all', 'ask' or 'bid', not {side!r}")
    if order_by not in ("desc", "asc"):
        raise ValueError(f"order_by must be 'desc' (newest first) or 'asc', not {order_by!r}")
    whole_number("count", count, least=1, most=MAX_BATCH_CANCEL)
    params = [("cancel_side", side)]
    chosen: dict[str, list[str]] = {}
    for name, codes in (
        ("pairs", pairs),
        ("excluded_pairs", excluded_pairs),
        ("quote_currencies", quote_currencies),
    ):
        if codes is not None:
            chosen[name] = _codes(name, codes)
            params.append((name, ",".join(chosen[name])))
    if "pairs" in chosen and "quote_currencies" in chosen:
        raise ValueError("give pairs or quote_currencies, not both: Upbit refuses the two together")
    return [*params, ("count", str(count)), ("order_by", order_by)]


def check_market_code(name: str, market: object) -> str:
    """``market`` if it is a market code such as ``SGD-BTC``, else a ``TypeError`` or
    ``ValueError`` that says so (Upbit matches codes exactly: ``sgd-btc`` matches nothing)."""
    if not isinstance(market, str):
        raise TypeError(f"{name} must be a market code such as 'SGD-BTC', not {market!r}")
    if not _MARKET.fullmatch(market):
        raise ValueError(
            f"{name} must be a market code such as 'SGD-BTC' (upper case, the quote currency "
            f"first), not {market[:40]!r}"
        )
    return market


def _codes(name: str, codes: object) -> list[str]:
    """A filter's market or currency codes: 1 to 20 distinct codes."""
    currencies = name == "quote_currencies"
    example = "'SGD'" if currencies else "'SGD-BTC'"
    if isinstance(codes, str) or not isinstance(codes, Iterable):
        raise TypeError(f"{name} must be a list of codes such as [{example}], not {codes!r}")
    values: list[str] = []
    for code in codes:
        if currencies and not (isinstance(code, str) and _CURRENCY.fullmatch(code)):
            raise ValueError(
                f"{name} must hold currency codes such as 'SGD' (upper case), not {code!r}"
            )
        if not currencies:
            check_market_code(f"{name} entries", code)
        if code not in values:
            values.append(code)
        if len(values) > _MAX_PAIRS:
            raise ValueError(f"{name} holds more than {_MAX_PAIRS} codes; Upbit takes at most 20")
    if not values:
        raise ValueError(f"{name} must hold at least one code (leave it out for no filter)")
    return values


def _group_limiters(given: object) -> dict[str, Limiter]:
    """``group_limiters=`` checked: each limiter made for the group it is given for."""
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise TypeError(
            "group_limiters must be a mapping of group to limiter, such as "
            "{'order-cancel-all': SlidingWindowLimiter(1, 2.0, group='order-cancel-all')}"
        )
    limiters: dict[str, Limiter] = {}
    for group, value in given.items():
        if group == "default":
            raise ValueError("give the default group's limiter as limiter=, not in group_limiters")
        if group not in GROUPS:
            others = ", ".join(name for name in GROUPS if name != "default")
            raise ValueError(f"unknown rate-limit group {group!r}: use one of {others}")
        limiter = as_limiter(value)
        made_for = getattr(limiter, "group", group)
        if made_for != group:
            raise ValueError(
                f"the limiter given for group {group!r} was made for group {made_for!r}; make "
                f"it with group={group!r}"
            )
        limiters[group] = limiter
    return limiters


def _check_stop(stop: object) -> None:
    if stop is not None and not isinstance(stop, asyncio.Event):
        raise TypeError(f"stop must be an asyncio.Event, not {type(stop).__name__}")
