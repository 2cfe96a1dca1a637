"""The fake exchange's server and the flow of each signed request through it.

The order book (``_book``), the keys (``_auth``), the admin API (``_admin``) and the rate-limit
policies (``_policies``) each have a module; this one receives requests, delays them, finds the
pocket of the key they are signed with, applies that pocket's budget and blocks, asks the
others, records and answers.

Request flow of a signed API endpoint, in order::

    read the body
    inbound delay (Faults.latency_in + jitter_in)
    -- arrival: clock() is read; everything up to the answer runs without yielding --
    the pocket of the claimed access key (the main pocket's for an unknown key)
    queued answer?           -> served as given (no limiter, no auth, orders untouched)
    fault "error"?           -> HTML 500/502/503 from the "gateway", not processed, not counted
    pocket blocked?          -> 418
    the pocket's limiter     -> 429 (not processed; may start the pocket's block)
    authentication           -> 401 no_authorization_token / jwt_verification /
                                invalid_access_key / nonce_used / invalid_query_payload
    permission               -> 403 out_of_scope ("Make Orders" for cancels, "order query"
                                for queries)
    body                     -> 400 QUERY_PARAMETER_NOT_SUPPORTED
    parameters               -> 400 validation_error
    the endpoint itself      -> 200 (or 404 order_not_found for a single cancel)
    -- the request is recorded --
    outbound delay (Faults.latency_out + jitter_out, + slow_seconds for a "slow" fault)
    fault "drop"?            -> connection closed without an answer
    fault "malformed"?       -> body cut short
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
import ssl
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

import attrs
from aiohttp import web

from . import _admin
from ._auth import MAIN, Keys
from ._book import OrderBook, UnknownIds
from ._faults import FaultKind, Faults
from ._policies import PolicyName, RatePolicy, make_policy
from ._quirks import Quirks
from ._records import FakeOrder, OrderState, RequestRecord, most_in_window
from ._stream import PrivateStream, StreamFaults
from ._tls import FakeAuthority
from ._wire import (
    GATEWAY_ERRORS,
    JSON,
    Answer,
    Call,
    Refused,
    dumps,
    error_name_of,
    html_page,
    read_token,
    remaining_header,
)

__all__ = ["FakeUpbit", "UnknownIds"]

_TOO_MANY_REQUESTS = "Too many API requests."
#: The rate-limit group of the batch cancel.
CANCEL_ALL = "order-cancel-all"
#: Sub-pockets an account may have besides its main pocket.
MAX_SUB_POCKETS = 5
#: The signed endpoints, as ``set_faults(endpoint=...)`` names them.
_ENDPOINTS = (
    "DELETE /v1/orders/uuids",
    "DELETE /v1/order",
    "GET /v1/orders/open",
    "DELETE /v1/orders/open",
    "GET /v1/orders/uuids",
    "GET /v1/order",
)


#: An order endpoint, unbound: served by the book of the request's pocket.
_Endpoint = Callable[[OrderBook, Call, float], Answer]


@attrs.frozen
class _Queued:
    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str] | None
    error_name: str | None


class _Pocket:
    """One pocket of the account: its orders, the budget of each rate-limit group, its block.

    Upbit counts every rate limit and every 418 block per pocket (since 2026-06-25): the keys
    of one pocket share all of it, keys of different pockets share none of it.
    """

    __slots__ = ("blocked_until", "book", "name", "policies", "recent_429s")

    def __init__(self, name: str, book: OrderBook, policies: dict[str, RatePolicy]) -> None:
        self.name = name
        self.book = book
        self.policies = policies
        self.recent_429s: deque[float] = deque()
        self.blocked_until: float | None = None


class FakeUpbit:
    """A fake Upbit exchange on loopback, strict about signing and rate limits.

    It serves ``DELETE /v1/orders/uuids`` (Order List Cancel), ``DELETE /v1/order``,
    ``GET /v1/orders/uuids``, ``GET /v1/orders/open``, ``GET /v1/order``,
    ``DELETE /v1/orders/open`` (the batch cancel) and ``GET /v1/market/all`` for one account,
    plus an admin API under ``/_fake/`` for other processes. The documentation's "fake
    exchange" page describes its full behaviour.

    The account has a main pocket, and up to 5 sub-pockets made by :meth:`add_pocket`: each
    with its own keys, orders, budgets and blocks, as Upbit counts them since 2026-06.

    Example::

        async with FakeUpbit(policy="sliding", limit=30, window=1.0) as fake:
            uuids = fake.add_orders(100)
            ...  # point a client at fake.base_url with fake.access_key / fake.secret_key
            assert fake.max_in_window() <= 30

    All keyword arguments are optional:

    - ``policy``, ``limit``, ``window``: how the ``default`` group's budget is measured
      (:class:`SlidingWindowPolicy`, :class:`FixedWindowPolicy`, :class:`TokenBucketPolicy`),
      shared by every key of a pocket; each pocket has its own.
    - ``cancel_all_limit``, ``cancel_all_window``: the budget of the ``order-cancel-all`` group,
      which only the batch cancel spends (Upbit's: 1 call per 2 s), as a sliding window.
    - ``host``, ``port``: where to listen; port 0 picks a free port.
    - ``access_key``, ``secret_key``: the first key pair (random 40-character strings if not given).
    - ``unknown_ids``: ``"omit"`` leaves unknown ids out of both lists, ``"failed"`` lists them in
      ``failed`` with market ``"UNKNOWN"``.
    - ``plain_text_429``: answer 429 with the plain text ``Too many API requests.``.
    - ``block_after``, ``block_period``, ``block_seconds``: after ``block_after`` 429s of a
      pocket within ``block_period`` seconds, answer every signed request of that pocket 418
      for ``block_seconds``.
    - ``faults``: delays and failures to inject (:class:`Faults`).
    - ``cancel_delay``: seconds an accepted cancel takes to take effect; meanwhile the order
      stays ``wait`` (``watch``), and a second cancel of it is listed in ``failed``.
    - ``fill_rate``: the fraction of accepted cancels that lose the race: the order fills
      (``done``) at a random moment within ``cancel_delay`` instead.
    - ``quirks``: ways to depart from Upbit's docs (:class:`Quirks`), for clients that must
      trust nothing the exchange did not promise.
    - ``seed``: seeds the one random generator behind keys, uuids, delays and faults.
    - ``clock``: time source for arrivals, rate limiting and blocks; defaults to the running
      loop's ``time()``. Delays are real ``asyncio`` sleeps whatever the clock.
    - ``keepalive_timeout``: seconds after which the server closes a connection idle between
      requests (75 s, as aiohttp's server; real servers close theirs too, so a client's pool
      must cope). A connection that has carried no request yet is closed after the same time
      by recent aiohttp versions and kept open by older ones.
    - ``tls``: serve HTTPS (and ``wss://`` for the private stream) with a certificate of a
      throwaway authority made for this fake (needs trustme). A client trusts it through
      :meth:`client_ssl_context` (``UpbitSession(..., ssl=fake.client_ssl_context())``), or
      another process through :attr:`ca_pem` written to a file (``SSL_CERT_FILE``).
    """

    def __init__(
        self,
        *,
        policy: PolicyName = "sliding",
        limit: int = 30,
        window: float = 1.0,
        cancel_all_limit: int = 1,
        cancel_all_window: float = 2.0,
        host: str = "127.0.0.1",
        port: int = 0,
        access_key: str | None = None,
        secret_key: str | None = None,
        unknown_ids: UnknownIds = "omit",
        plain_text_429: bool = False,
        block_after: int | None = None,
        block_period: float = 10.0,
        block_seconds: float = 30.0,
        faults: Faults = Faults(),  # noqa: B008 - Faults is immutable
        cancel_delay: float = 0.0,
        fill_rate: float = 0.0,
        quirks: Quirks = Quirks(),  # noqa: B008 - Quirks is immutable
        seed: int | None = 0,
        clock: Callable[[], float] | None = None,
        tls: bool = False,
        keepalive_timeout: float = 75.0,
    ) -> None:
        if not (isinstance(keepalive_timeout, int | float) and 0 < keepalive_timeout < math.inf):
            raise ValueError(
                f"keepalive_timeout must be a positive number of seconds, got {keepalive_timeout!r}"
            )
        self._keepalive_timeout = float(keepalive_timeout)
        if not isinstance(tls, bool):
            raise TypeError(f"tls must be True or False, not {tls!r}")
        # Made before anything else, so that a missing trustme fails before a port is taken.
        self._authority = FakeAuthority() if tls else None
        if not (isinstance(cancel_delay, int | float) and 0 <= cancel_delay < math.inf):
            raise ValueError(f"cancel_delay must be zero or more seconds, got {cancel_delay!r}")
        if not (isinstance(fill_rate, int | float) and 0 <= fill_rate <= 1):
            raise ValueError(f"fill_rate must be between 0 and 1, got {fill_rate!r}")
        if fill_rate and not cancel_delay:
            raise ValueError("fill_rate needs a cancel_delay: orders fill while a cancel waits")
        if unknown_ids not in ("omit", "failed"):
            raise ValueError(f"unknown_ids must be 'omit' or 'failed', got {unknown_ids!r}")
        if block_after is not None and block_after < 1:
            raise ValueError(f"block_after must be at least 1 or None, got {block_after}")
        if not (0 < block_period < math.inf and 0 < block_seconds < math.inf):
            raise ValueError(
                "block_period and block_seconds must be positive numbers of seconds, "
                f"got {block_period!r} and {block_seconds!r}"
            )
        self._policy_name = policy
        self._limits = (limit, window, cancel_all_limit, cancel_all_window)
        self._host = host
        self._port = port
        self._plain_text_429 = plain_text_429
        self._block_after = block_after
        self._block_period = block_period
        self._block_seconds = block_seconds
        self._faults = faults
        # Faults of requests signed with particular keys (clients elsewhere on the network).
        self._key_faults: dict[str, Faults] = {}
        # Faults of one endpoint's requests, by "METHOD /path" (they win over the others).
        self._endpoint_faults: dict[str, Faults] = {}
        # One generator behind keys, uuids, delays and faults, so that a seed replays a run.
        self._rng = random.Random(seed)
        self._clock = clock
        self._keys = Keys(self._rng)
        self._cancel_delay = float(cancel_delay)
        self._fill_rate = float(fill_rate)
        self._unknown_ids: UnknownIds = unknown_ids
        self._quirks = quirks

        self._records: list[RequestRecord] = []
        self._received = 0
        self._in_transit = 0
        self._changed: asyncio.Event | None = None
        self._queued: deque[_Queued] = deque()

        self._stream = PrivateStream(self._keys, self._rng, lambda: self._now(), self._notify)
        # The pockets by name, the main one first (every pocket is made from the same settings).
        self._main = self._new_pocket(MAIN)
        self._pockets: dict[str, _Pocket] = {MAIN: self._main}
        # Puts accepted cancels into effect when due, so that the stream tells them on time.
        self._settler: asyncio.Task[None] | None = None
        self._due_changed: asyncio.Event | None = None

        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._closing: asyncio.Event | None = None
        self._closed = False

        first = self._keys.add(access_key, secret_key, can_order=True)
        #: Access key of the first key pair (it has the "Make Orders" permission).
        self.access_key: str = first.access_key
        #: Secret key of the first key pair (a throwaway test credential).
        self.secret_key: str = first.secret_key

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening. Does nothing if already started; a closed fake cannot restart."""
        if self._closed:
            raise RuntimeError("this FakeUpbit is closed; create a new one")
        if self._runner is not None:
            return
        loop = asyncio.get_running_loop()
        if self._clock is None:
            self._clock = loop.time
        self._closing = asyncio.Event()
        runner = web.AppRunner(
            self._make_app(),
            access_log=None,
            shutdown_timeout=5.0,
            keepalive_timeout=self._keepalive_timeout,
        )
        await runner.setup()
        try:
            context = None if self._authority is None else self._authority.server_context()
            site = web.TCPSite(runner, self._host, self._port, ssl_context=context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._due_changed = asyncio.Event()
        host, port = runner.addresses[0][:2]
        host = f"[{host}]" if ":" in host else host
        scheme = "http" if self._authority is None else "https"
        self._base_url = f"{scheme}://{host}:{port}"

    async def close(self) -> None:
        """Stop listening and end requests in progress. Safe to call more than once."""
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._closing is not None:
            # Wakes requests sleeping through delays so shutdown never waits for them.
            self._closing.set()
        settler, self._settler = self._settler, None
        if settler is not None:
            settler.cancel()
            await asyncio.gather(settler, return_exceptions=True)
        await self._stream.close()
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server (``https://`` with ``tls=True``)."""
        if self._base_url is None:
            raise RuntimeError("FakeUpbit is not started; use 'async with' or 'await start()'")
        return self._base_url

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that verifies certificates as usual and trusts this fake's
        authority only (``tls=True``): give it to ``UpbitSession(..., ssl=...)``."""
        if self._authority is None:
            raise RuntimeError("this FakeUpbit serves plain HTTP; make it with tls=True")
        return self._authority.client_context()

    @property
    def ca_pem(self) -> bytes | None:
        """The certificate of this fake's authority, PEM-encoded (``None`` without ``tls``):
        written to a file, it is what another process trusts (``SSL_CERT_FILE=that-file``)."""
        return None if self._authority is None else self._authority.pem

    @property
    def faults(self) -> Faults:
        """The delays and failures applied to requests received from now on.

        Set it to change the network mid-run (a path that gets slower or faster): a request
        already received keeps the delays it drew.
        """
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.set_faults(faults)

    def set_faults(
        self, faults: Faults, *, access_key: str | None = None, endpoint: str | None = None
    ) -> None:
        """Change the faults of requests received from now on: all of them, only those
        signed with ``access_key`` (a client of the account on another network path), or only
        those of one ``endpoint``, such as ``"DELETE /v1/orders/open"`` (the batch cancel;
        these win over the others)."""
        if not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults, not {type(faults).__name__}")
        if endpoint is not None:
            if access_key is not None:
                raise ValueError("give access_key or endpoint, not both")
            if endpoint not in _ENDPOINTS:
                raise ValueError(
                    f"unknown endpoint {endpoint!r}: use one of {', '.join(_ENDPOINTS)}"
                )
            self._endpoint_faults[endpoint] = faults
        elif access_key is None:
            self._faults = faults
        elif access_key not in self._keys:
            raise KeyError(f"no such access key on this fake: {access_key[:4]}…")
        else:
            self._key_faults[access_key] = faults

    @property
    def stream_faults(self) -> StreamFaults:
        """How the private stream breaks, from the next event or connect on (assign a new
        :class:`StreamFaults` to change it)."""
        return self._stream.faults

    @stream_faults.setter
    def stream_faults(self, faults: StreamFaults) -> None:
        if not isinstance(faults, StreamFaults):
            raise TypeError(f"stream_faults must be a StreamFaults, not {type(faults).__name__}")
        self._stream.faults = faults

    @property
    def stream_connections(self) -> int:
        """Connections to the private stream open now."""
        return self._stream.connections

    @property
    def stream_events_sent(self) -> int:
        """``myOrder`` events sent so far on the private stream, over every connection."""
        return self._stream.events_sent

    async def _settle_when_due(self) -> None:
        """Put each accepted cancel (or fill) into effect when it is due, not only when the
        next request arrives: the private stream tells it then. Runs while cancels wait."""
        assert self._due_changed is not None
        loop = asyncio.get_running_loop()
        if self._clock != loop.time:
            return  # a clock of the caller's: effects come with requests, as they read it
        while True:
            dues = (pocket.book.next_due() for pocket in self._pockets.values())
            due = min((due for due in dues if due is not None), default=None)
            if due is None:
                return
            if due > loop.time():
                try:
                    async with asyncio.timeout_at(due):
                        await self._due_changed.wait()
                    self._due_changed.clear()
                except TimeoutError:
                    pass
            self._settle_books(loop.time())

    @property
    def policy(self) -> RatePolicy:
        """The rate-limit policy of the main pocket's ``default`` group."""
        return self._main.policies["default"]

    def __repr__(self) -> str:
        where = self._base_url or "not started"
        policy = self.policy
        return (
            f"<FakeUpbit {where} policy={self._policy_name} limit={policy.limit} "
            f"window={policy.window} orders={len(self._main.book)}>"
        )

    # -- account ---------------------------------------------------------------------------

    def add_credentials(
        self, *, can_order: bool = True, can_query: bool = True, pocket: str = MAIN
    ) -> tuple[str, str]:
        """Create another key pair of the same account; return ``(access_key, secret_key)``.

        It belongs to ``pocket`` (the main one unless named) and shares that pocket's rate
        budget and orders. With ``can_order=False`` it lacks the "Make Orders" permission, so
        its cancels are answered 403 ``out_of_scope``; with ``can_query=False`` it lacks the
        "order query" permission, and its order queries are answered the same way.
        """
        self._pocket(pocket)
        credential = self._keys.add(can_order=can_order, can_query=can_query, pocket=pocket)
        return credential.access_key, credential.secret_key

    def add_pocket(
        self, name: str, *, can_order: bool = True, can_query: bool = True
    ) -> tuple[str, str]:
        """Create a sub-pocket of the account and its first key pair; return
        ``(access_key, secret_key)``.

        The pocket has its own orders, its own budget of every rate-limit group (measured as
        the main pocket's) and its own 418 blocks; its keys see and cancel its orders only.
        ``name`` is a non-empty string other than ``"main"`` and the other pockets' names; an
        account has at most 5 sub-pockets. ``can_order`` and ``can_query`` are the key's
        permissions, as in :meth:`add_credentials`.

        Example::

            access_key, secret_key = fake.add_pocket("hedge")
            fake.add_orders(10, pocket="hedge")
        """
        if not isinstance(name, str):
            raise TypeError(f"a pocket's name must be a string, not {type(name).__name__}")
        if not name or not name.isprintable() or name != name.strip():
            raise ValueError(
                f"a pocket's name must be non-empty, printable and unpadded, got {name!r}"
            )
        if name in self._pockets:
            which = "the main pocket's" if name == MAIN else "taken"
            raise ValueError(f"the pocket name {name!r} is {which}; choose another")
        if len(self._pockets) > MAX_SUB_POCKETS:
            raise ValueError(
                f"an account has at most {MAX_SUB_POCKETS} sub-pockets: "
                f"{', '.join(self.pockets[1:])}"
            )
        self._pockets[name] = self._new_pocket(name)
        return self.add_credentials(can_order=can_order, can_query=can_query, pocket=name)

    @property
    def pockets(self) -> tuple[str, ...]:
        """The names of the account's pockets, ``"main"`` first, then in creation order."""
        return tuple(self._pockets)

    def _new_pocket(self, name: str) -> _Pocket:
        book = OrderBook(
            self._rng,
            cancel_delay=self._cancel_delay,
            fill_rate=self._fill_rate,
            unknown_ids=self._unknown_ids,
            quirks=self._quirks,
        )
        book.listener = functools.partial(self._stream.publish, pocket=name)
        limit, window, cancel_all_limit, cancel_all_window = self._limits
        # Each rate-limit group's budget, by group: a 429 in one leaves the others alone.
        policies = {
            "default": make_policy(self._policy_name, limit, window),
            CANCEL_ALL: make_policy("sliding", cancel_all_limit, cancel_all_window),
        }
        return _Pocket(name, book, policies)

    def _pocket(self, name: str) -> _Pocket:
        pocket = self._pockets.get(name)
        if pocket is None:
            raise ValueError(f"unknown pocket {name!r}: use one of {', '.join(self._pockets)}")
        return pocket

    # -- orders ----------------------------------------------------------------------------

    def add_order(
        self,
        market: str = "SGD-BTC",
        state: OrderState = "wait",
        identifier: str | None = None,
        side: str = "bid",
        *,
        pocket: str = MAIN,
    ) -> str:
        """Add one order to a pocket of the account (the main one unless named) and return its
        uuid (a lowercase uuid4 string).

        Identifiers are unique within a pocket, as on Upbit.
        """
        return self._pocket(pocket).book.add_order(market, state, identifier, side)

    def add_orders(
        self,
        n: int,
        market: str = "SGD-BTC",
        state: OrderState = "wait",
        identifiers: bool = False,
        side: str = "bid",
        *,
        pocket: str = MAIN,
    ) -> list[str]:
        """Add *n* orders in one go to a pocket (the main one unless named) and return their
        uuids, in creation order.

        With ``identifiers=True`` each gets a fresh identifier (``fake-000001``, ...); read it
        back with :meth:`order`.
        """
        return self._pocket(pocket).book.add_orders(n, market, state, identifiers, side)

    def _settle(self) -> None:
        """Put into effect what the books have due by now (the clock runs once started)."""
        if self._clock is not None:
            self._settle_books(self._now())

    def _settle_books(self, now: float) -> None:
        for pocket in self._pockets.values():
            if pocket.book.has_pending:
                pocket.book.settle(now)

    def order(self, uuid: str) -> FakeOrder:
        """The order with this uuid as it stands now, in whichever pocket holds it. Raises
        KeyError if unknown."""
        self._settle()
        for pocket in self._pockets.values():
            order = pocket.book.get(uuid)
            if order is not None:
                return order
        raise KeyError(uuid)

    def state(self, uuid: str) -> OrderState:
        """The order's state now (see :data:`OrderState`). Raises KeyError if unknown."""
        return self.order(uuid).state

    def state_counts(self, pocket: str = MAIN) -> dict[str, int]:
        """How many orders of a pocket (the main one unless named) are in each state."""
        book = self._pocket(pocket).book
        self._settle()
        return book.state_counts()

    # -- records ---------------------------------------------------------------------------

    @property
    def records(self) -> list[RequestRecord]:
        """A copy of the records of signed API requests, in arrival order."""
        return list(self._records)

    @property
    def received(self) -> int:
        """Signed API requests whose bytes reached the server so far, arrived or not."""
        return self._received

    @property
    def in_transit(self) -> int:
        """Signed API requests received but still in their inbound delay (not yet arrived).

        A request the client gave up on keeps travelling: wait for this to reach 0 before
        reading the records of requests that may still arrive.
        """
        return self._in_transit

    async def wait_for(self, condition: Callable[[FakeUpbit], bool]) -> None:
        """Wait until ``condition(fake)`` holds, checked each time a request is received or
        recorded, or a connection to the private stream opens or closes (wrap it in
        ``asyncio.timeout`` to bound the wait).

        Example: ``await fake.wait_for(lambda fake: fake.in_transit == 0)`` waits until every
        request on its way has arrived, those its client gave up on included.
        """
        while not condition(self):
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def reset_records(self) -> None:
        """Forget the records (not the orders, nonces, rate budget or block)."""
        self._records.clear()

    def max_in_window(
        self, window: float | None = None, *, group: str = "default", pocket: str = MAIN
    ) -> int:
        """Largest number of admitted requests of a rate-limit ``group`` of a pocket (the main
        one unless named) whose arrivals fit in one window.

        Windows are half-open, ``[s, s + window)``, and ``window`` defaults to the group's.
        """
        policies = self._pocket(pocket).policies
        if group not in policies:
            raise ValueError(f"unknown group {group!r}: use one of {', '.join(policies)}")
        return most_in_window(
            (
                record.arrival
                for record in self._records
                if record.admitted and record.group == group and record.pocket == pocket
            ),
            policies[group].window if window is None else window,
        )

    def stats(self, pocket: str = MAIN) -> dict[str, Any]:
        """Counts over the records of a pocket (the main one unless named): admitted, rejected
        (429), per status, the ``default`` group's max_in_window, and the same for each group
        under ``groups``."""
        policies = self._pocket(pocket).policies
        mine = [record for record in self._records if record.pocket == pocket]
        statuses = Counter(record.status for record in mine)
        groups: dict[str, Any] = {}
        for group in policies:
            records = [record for record in mine if record.group == group]
            groups[group] = {
                "requests": len(records),
                "admitted": sum(record.admitted for record in records),
                "rejected_429": sum(record.status == 429 for record in records),
                "max_in_window": self.max_in_window(group=group, pocket=pocket),
            }
        return {
            "admitted": sum(record.admitted for record in mine),
            "rejected_429": statuses[429],
            "status_counts": {str(status): count for status, count in sorted(statuses.items())},
            "max_in_window": self.max_in_window(pocket=pocket),
            "groups": groups,
        }

    # -- canned answers --------------------------------------------------------------------

    def queue_response(
        self,
        status: int,
        body: object,
        *,
        content_type: str = JSON,
        count: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next *count* signed API requests with this response instead.

        *body* is sent as is if ``str`` or ``bytes``, else serialised to JSON. Queued answers
        skip the rate limiter, authentication and faults (delays still apply), change no order
        and are recorded with ``admitted=False``. Unless *headers* are given, the answer carries
        the usual ``Remaining-Req`` header.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        if isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = dumps(body)
        queued = _Queued(status, raw, content_type, headers, error_name_of(raw))
        self._queued.extend([queued] * count)

    # -- server ----------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application()
        add = app.router.add_route
        # Unbound: each request is served by the book of its key's pocket.
        signed: list[tuple[str, str, _Endpoint, str]] = [
            ("DELETE", "/v1/orders/uuids", OrderBook.cancel_list, "default"),
            ("DELETE", "/v1/order", OrderBook.cancel_one, "default"),
            ("GET", "/v1/orders/open", OrderBook.open_orders, "default"),
            ("DELETE", "/v1/orders/open", OrderBook.cancel_open, CANCEL_ALL),
            ("GET", "/v1/orders/uuids", OrderBook.orders_by_ids, "default"),
            ("GET", "/v1/order", OrderBook.one_order, "default"),
        ]
        for method, path, endpoint, group in signed:
            add(method, path, self._signed(endpoint, f"{method} {path}", group))
        add("GET", "/v1/market/all", self._market_all)
        app.router.add_get("/websocket/v1/private", self._stream.handle)
        _admin.add_routes(app, self)
        return app

    def _now(self) -> float:
        assert self._clock is not None, "the clock is bound in start()"
        return self._clock()

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0 or self._closing is None or self._closing.is_set():
            return
        try:
            async with asyncio.timeout(seconds):
                await self._closing.wait()
        except TimeoutError:
            pass

    def _signed(
        self, endpoint: _Endpoint, name: str, group: str
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._handle_signed(request, endpoint, name, group)

        return handler

    async def _handle_signed(
        self,
        request: web.Request,
        endpoint: _Endpoint,
        name: str,
        group: str,
    ) -> web.StreamResponse:
        self._received += 1
        self._in_transit += 1
        self._notify()
        authorization = request.headers.get("Authorization")
        token = read_token(authorization)
        claimed = token.access_key
        faults = self._faults
        if claimed is not None:
            faults = self._key_faults.get(claimed, faults)
        faults = self._endpoint_faults.get(name, faults)
        try:
            body = await request.read()
            await self._sleep(faults.inbound_delay(self._rng))
        finally:
            self._in_transit -= 1
        # From here to the record nothing awaits, so each request sees the account and the
        # limiter exactly as the previous arrival left them.
        arrival = self._now()
        self._settle_books(arrival)
        pocket = self._pockets[self._keys.pocket_of(claimed)]
        raw_query = request.rel_url.raw_query_string
        call = Call(
            method=request.method,
            path=request.path,
            authorization=authorization,
            raw_query=raw_query,
            params=tuple(parse_qsl(raw_query, keep_blank_values=True)),
            body=body,
            token=token,
        )
        fault: FaultKind | None = None
        if self._queued:
            answer = self._queued_answer(self._queued.popleft(), pocket, arrival, group)
        else:
            fault = faults.choose(self._rng)
            if fault == "error":
                status = self._rng.choice(tuple(GATEWAY_ERRORS))
                answer = Answer(status, html_page(status), content_type="text/html")
            else:
                answer = self._process(call, pocket, arrival, endpoint, group)
        self._records.append(
            RequestRecord(
                arrival=arrival,
                method=call.method,
                path=call.path,
                access_key=call.claimed_access_key,
                status=answer.status,
                error_name=answer.error_name,
                ids=call.ids(),
                admitted=answer.admitted,
                fault=fault,
                canceled=answer.canceled,
                group=group,
                pocket=pocket.name,
            )
        )
        self._notify()
        if self._due_changed is not None and pocket.book.has_pending:
            self._due_changed.set()
            if self._settler is None or self._settler.done():
                self._settler = asyncio.create_task(self._settle_when_due())

        delay = faults.outbound_delay(self._rng)
        if fault == "slow":
            delay += faults.slow_seconds
        await self._sleep(delay)
        if fault == "drop" and request.transport is not None:
            request.transport.abort()
        body_out = answer.body
        if fault == "malformed":
            # A strict prefix of a JSON document is never valid JSON.
            body_out = body_out[: len(body_out) // 2]
        response = web.Response(status=answer.status, body=body_out, headers=answer.headers)
        response.content_type = answer.content_type
        if answer.content_type == JSON:
            response.charset = "utf-8"
        return response

    def _queued_answer(self, queued: _Queued, pocket: _Pocket, now: float, group: str) -> Answer:
        headers = queued.headers
        if headers is None:
            remaining = self._remaining(pocket, now, group)
            headers = {"Remaining-Req": remaining_header(group, remaining)}
        return Answer(
            queued.status,
            queued.body,
            content_type=queued.content_type,
            error_name=queued.error_name,
            headers=headers,
        )

    def _remaining(self, pocket: _Pocket, now: float, group: str) -> int:
        if pocket.blocked_until is not None and now < pocket.blocked_until:
            return 0
        return pocket.policies[group].remaining(now)

    def _process(
        self, call: Call, pocket: _Pocket, now: float, endpoint: _Endpoint, group: str
    ) -> Answer:
        admitted = False
        try:
            self._check_block(pocket, now)
            admitted = pocket.policies[group].admit(now)
            if not admitted:
                raise self._too_many_requests(pocket, now)
            credential = self._keys.authenticate(call)
            if call.method == "DELETE" and not credential.can_order:
                raise Refused(
                    403, "out_of_scope", "This API key lacks the 'Make Orders' permission."
                )
            if call.method == "GET" and not credential.can_query:
                raise Refused(
                    403, "out_of_scope", "This API key lacks the 'order query' permission."
                )
            if call.body:
                raise Refused(
                    400,
                    "QUERY_PARAMETER_NOT_SUPPORTED",
                    "Parameters must be sent in the query string; a request body is not supported.",
                )
            answer = endpoint(pocket.book, call, now)
        except Refused as refused:
            answer = refused.answer()
        remaining = remaining_header(group, self._remaining(pocket, now, group))
        return attrs.evolve(answer, admitted=admitted, headers={"Remaining-Req": remaining})

    def _check_block(self, pocket: _Pocket, now: float) -> None:
        if pocket.blocked_until is None:
            return
        if now >= pocket.blocked_until:
            pocket.blocked_until = None
            return
        seconds = max(1, math.ceil(round(pocket.blocked_until - now, 6)))
        raise Refused(
            418, "blocked", f"Too many requests. Your access is blocked for {seconds} seconds."
        )

    def _too_many_requests(self, pocket: _Pocket, now: float) -> Refused:
        if self._block_after is not None:
            recent = pocket.recent_429s
            recent.append(now)
            while now - recent[0] >= self._block_period:
                recent.popleft()
            if len(recent) >= self._block_after:
                recent.clear()
                pocket.blocked_until = now + self._block_seconds
        return Refused(429, "too_many_requests", _TOO_MANY_REQUESTS, plain=self._plain_text_429)

    async def _market_all(self, request: web.Request) -> web.StreamResponse:
        # Quotation calls are limited per IP in their own group; the fake never limits them.
        markets = {
            market["market"]: market
            for pocket in self._pockets.values()
            for market in pocket.book.markets()
        }
        return web.json_response(
            list(markets.values()),
            dumps=lambda value: dumps(value).decode(),
            headers={"Remaining-Req": remaining_header("market", 9)},
        )
