"""A fake Upbit exchange: a real aiohttp server on loopback with a strict rate limiter.

Request flow of a signed API endpoint, in order::

    read the body
    inbound delay (Faults.latency_in + jitter_in)
    -- arrival: clock() is read; everything up to the answer runs without yielding --
    queued answer?           -> served as given (no limiter, no auth, orders untouched)
    fault "error"?           -> HTML 500/502/503 from the "gateway", not processed, not counted
    account blocked?         -> 418
    rate limiter             -> 429 (not processed; may start a block)
    authentication           -> 401 no_authorization_token / jwt_verification /
                                invalid_access_key / nonce_used / invalid_query_payload
    permission               -> 403 out_of_scope (cancel endpoints only)
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
import hashlib
import heapq
import hmac
import json
import math
import random
import re
import string
import warnings
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import parse_qsl, unquote

import attrs
import jwt
from aiohttp import web

from ._faults import FaultKind, Faults
from ._policies import PolicyName, RatePolicy, make_policy
from ._records import FakeOrder, OrderState, RequestRecord

__all__ = ["FakeUpbit", "UnknownIds"]

#: What the fake does with ids it does not know: leave them out, or list them in ``failed``.
UnknownIds = Literal["omit", "failed"]

#: Market given to unknown ids listed in ``failed`` (``unknown_ids="failed"``).
UNKNOWN_MARKET: Final = "UNKNOWN"
#: Most ids Upbit accepts in one Order List Cancel call.
MAX_IDS: Final = 20

_ORDER_STATES: Final = frozenset({"wait", "watch", "done", "cancel", "prevented"})
_OPEN_STATES: Final = frozenset({"wait", "watch"})
_SIDES: Final = frozenset({"bid", "ask"})
#: Most ids Upbit accepts in one ``GET /v1/orders/uuids``.
MAX_QUERY_IDS: Final = 100
_UUID_PATTERN: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ACCEPTED_ALGORITHMS: Final = ("HS256", "HS512")
_VARIANT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_KEY_ALPHABET: Final = string.ascii_letters + string.digits
_KST: Final = timezone(timedelta(hours=9))

# Markets Upbit lists in its global regions, so ``GET /v1/market/all`` is never empty.
_FIXED_MARKETS: Final = ("SGD-BTC", "SGD-ETH", "KRW-BTC", "KRW-ETH", "IDR-BTC", "THB-BTC")
_CURRENCY_NAMES: Final = {
    "BTC": ("비트코인", "Bitcoin"),
    "ETH": ("이더리움", "Ethereum"),
    "XRP": ("리플", "XRP"),
    "SOL": ("솔라나", "Solana"),
}
_GATEWAY_ERRORS: Final = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
}
_TOO_MANY_REQUESTS: Final = "Too many API requests."
_JSON: Final = "application/json"


@attrs.frozen
class _Credential:
    access_key: str
    secret_key: str = attrs.field(repr=False)
    can_order: bool
    can_query: bool = True


@attrs.frozen
class _Answer:
    """The exchange's decision on one request, before delays and faults."""

    status: int
    body: bytes
    content_type: str = _JSON
    error_name: str | None = None
    admitted: bool = False
    canceled: tuple[str, ...] = ()
    headers: Mapping[str, str] = attrs.field(factory=dict)


class _Refused(Exception):
    """An error answer decided while processing a request; nothing was changed."""

    def __init__(self, status: int, name: str, message: str, *, plain: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.name = name
        self.message = message
        self.plain = plain

    def answer(self) -> _Answer:
        if self.plain:
            # Upbit sometimes answers 429 with this bare text instead of the JSON error.
            return _Answer(self.status, self.message.encode(), content_type="text/plain")
        return _Answer(self.status, _error_body(self.name, self.message), error_name=self.name)


@attrs.frozen
class _Queued:
    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str] | None
    error_name: str | None


@attrs.frozen
class _Call:
    """The parts of a signed request the exchange looks at."""

    method: str
    path: str
    authorization: str | None
    raw_query: str
    params: tuple[tuple[str, str], ...]
    body: bytes
    claimed_access_key: str | None

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.params if key == name]

    def has(self, name: str) -> bool:
        return any(key == name for key, _ in self.params)

    def ids(self) -> tuple[str, ...]:
        id_names = ("uuids[]", "identifiers[]", "uuid", "identifier")
        return tuple(value for key, value in self.params if key in id_names)


def _dumps(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _error_body(name: str, message: str) -> bytes:
    return _dumps({"error": {"name": name, "message": message}})


def _error_name_of(body: bytes) -> str | None:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        name = payload["error"].get("name")
        return name if isinstance(name, str) else None
    return None


def _claimed_access_key(authorization: str | None) -> str | None:
    if not authorization:
        return None
    _, _, token = authorization.partition(" ")
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    access_key = payload.get("access_key")
    return access_key if isinstance(access_key, str) else None


def _html_page(status: int) -> bytes:
    title = f"{status} {_GATEWAY_ERRORS[status]}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


def _remaining_header(group: str, sec: int) -> str:
    # ``min`` is deprecated by Upbit and always 1800 for the default group.
    minute = 1800 if group == "default" else 600
    return f"group={group}; min={minute}; sec={sec}"


class FakeUpbit:
    """A fake Upbit exchange on loopback, strict about signing and rate limits.

    It serves ``DELETE /v1/orders/uuids`` (Order List Cancel), ``DELETE /v1/order``,
    ``GET /v1/orders/uuids``, ``GET /v1/orders/open``, ``GET /v1/order`` and
    ``GET /v1/market/all`` for one account, plus an admin API under ``/_fake/`` for other
    processes. The documentation's "fake exchange" page describes its full behaviour.

    Example::

        async with FakeUpbit(policy="sliding", limit=30, window=1.0) as fake:
            uuids = fake.add_orders(100)
            ...  # point a client at fake.base_url with fake.access_key / fake.secret_key
            assert fake.max_in_window() <= 30

    All keyword arguments are optional:

    - ``policy``, ``limit``, ``window``: how the ``default`` group's budget is measured
      (:class:`SlidingWindowPolicy`, :class:`FixedWindowPolicy`, :class:`TokenBucketPolicy`),
      shared by every key of the account.
    - ``host``, ``port``: where to listen; port 0 picks a free port.
    - ``access_key``, ``secret_key``: the first key pair (random 40-character strings if not given).
    - ``unknown_ids``: ``"omit"`` leaves unknown ids out of both lists, ``"failed"`` lists them in
      ``failed`` with market ``"UNKNOWN"``.
    - ``plain_text_429``: answer 429 with the plain text ``Too many API requests.``.
    - ``block_after``, ``block_period``, ``block_seconds``: after ``block_after`` 429s within
      ``block_period`` seconds, answer every signed request 418 for ``block_seconds``.
    - ``faults``: delays and failures to inject (:class:`Faults`).
    - ``cancel_delay``: seconds an accepted cancel takes to take effect; meanwhile the order
      stays ``wait`` (``watch``), and a second cancel of it is listed in ``failed``.
    - ``fill_rate``: the fraction of accepted cancels that lose the race: the order fills
      (``done``) at a random moment within ``cancel_delay`` instead.
    - ``seed``: seeds the one random generator behind keys, uuids, delays and faults.
    - ``clock``: time source for arrivals, rate limiting and blocks; defaults to the running
      loop's ``time()``. Delays are real ``asyncio`` sleeps whatever the clock.
    """

    def __init__(
        self,
        *,
        policy: PolicyName = "sliding",
        limit: int = 30,
        window: float = 1.0,
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
        seed: int | None = 0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not (isinstance(cancel_delay, int | float) and 0 <= cancel_delay < math.inf):
            raise ValueError(f"cancel_delay must be zero or more seconds, got {cancel_delay!r}")
        if not (isinstance(fill_rate, int | float) and 0 <= fill_rate <= 1):
            raise ValueError(f"fill_rate must be between 0 and 1, got {fill_rate!r}")
        if fill_rate and not cancel_delay:
            raise ValueError("fill_rate needs a cancel_delay: orders fill while a cancel waits")
        self._cancel_delay = float(cancel_delay)
        self._fill_rate = float(fill_rate)
        if unknown_ids not in ("omit", "failed"):
            raise ValueError(f"unknown_ids must be 'omit' or 'failed', got {unknown_ids!r}")
        if block_after is not None and block_after < 1:
            raise ValueError(f"block_after must be at least 1 or None, got {block_after}")
        if not (block_period > 0 and block_seconds > 0):
            raise ValueError("block_period and block_seconds must be positive")
        self._policy_name = policy
        self._policy: RatePolicy = make_policy(policy, limit, window)
        self._host = host
        self._port = port
        self._unknown_ids: UnknownIds = unknown_ids
        self._plain_text_429 = plain_text_429
        self._block_after = block_after
        self._block_period = block_period
        self._block_seconds = block_seconds
        self._faults = faults
        # Faults of requests signed with particular keys (clients elsewhere on the network).
        self._key_faults: dict[str, Faults] = {}
        self._rng = random.Random(seed)
        self._clock = clock

        self._credentials: dict[str, _Credential] = {}
        self._nonces: dict[str, set[str]] = {}
        self._orders: dict[str, FakeOrder] = {}
        self._by_identifier: dict[str, str] = {}
        # Open orders in creation order, so listing them never scans closed ones.
        self._open: dict[str, None] = {}
        # Accepted cancels not in effect yet (cancel_delay): when, and to which state.
        self._pending: dict[str, tuple[float, OrderState]] = {}
        self._pending_due: list[tuple[float, str]] = []
        # Creation order, for order_by.
        self._sequence: dict[str, int] = {}
        self._state_counts: Counter[str] = Counter()
        self._markets: dict[str, None] = dict.fromkeys(_FIXED_MARKETS)
        self._next_identifier = 1

        self._records: list[RequestRecord] = []
        self._received = 0
        self._in_transit = 0
        self._changed: asyncio.Event | None = None
        self._queued: deque[_Queued] = deque()
        self._recent_429s: deque[float] = deque()
        self._blocked_until: float | None = None

        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._closing: asyncio.Event | None = None
        self._closed = False

        first = self._new_credential(access_key, secret_key, can_order=True)
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
        runner = web.AppRunner(self._make_app(), access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        host = f"[{host}]" if ":" in host else host
        self._base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Stop listening and end requests in progress. Safe to call more than once."""
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._closing is not None:
            # Wakes requests sleeping through delays so shutdown never waits for them.
            self._closing.set()
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
        """``http://host:port`` of the running server."""
        if self._base_url is None:
            raise RuntimeError("FakeUpbit is not started; use 'async with' or 'await start()'")
        return self._base_url

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

    def set_faults(self, faults: Faults, *, access_key: str | None = None) -> None:
        """Change the faults of requests received from now on: all of them, or only those
        signed with ``access_key`` (a client of the account on another network path)."""
        if not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults, not {type(faults).__name__}")
        if access_key is None:
            self._faults = faults
        elif access_key not in self._credentials:
            raise KeyError(f"no such access key on this fake: {access_key[:4]}…")
        else:
            self._key_faults[access_key] = faults

    @property
    def policy(self) -> RatePolicy:
        """The rate-limit policy of the account's ``default`` group."""
        return self._policy

    def __repr__(self) -> str:
        where = self._base_url or "not started"
        return (
            f"<FakeUpbit {where} policy={self._policy_name} limit={self._policy.limit} "
            f"window={self._policy.window} orders={len(self._orders)}>"
        )

    # -- account ---------------------------------------------------------------------------

    def _random_key(self) -> str:
        return "".join(self._rng.choices(_KEY_ALPHABET, k=40))

    def _new_credential(
        self,
        access_key: str | None,
        secret_key: str | None,
        *,
        can_order: bool,
        can_query: bool = True,
    ) -> _Credential:
        access_key = access_key or self._random_key()
        if access_key in self._credentials:
            raise ValueError("this access key is already registered")
        credential = _Credential(access_key, secret_key or self._random_key(), can_order, can_query)
        self._credentials[access_key] = credential
        self._nonces[access_key] = set()
        return credential

    def add_credentials(self, *, can_order: bool = True, can_query: bool = True) -> tuple[str, str]:
        """Create another key pair of the same account; return ``(access_key, secret_key)``.

        It shares the account's rate budget. With ``can_order=False`` it lacks the "Make Orders"
        permission, so its cancels are answered 403 ``out_of_scope``; with ``can_query=False`` it
        lacks the "order query" permission, and its order queries are answered the same way.
        """
        credential = self._new_credential(None, None, can_order=can_order, can_query=can_query)
        return credential.access_key, credential.secret_key

    # -- orders ----------------------------------------------------------------------------

    def _new_uuid(self) -> str:
        randbytes = self._rng.randbytes
        while True:
            # A uuid4: 122 random bits, version nibble 4, variant nibble 8, 9, a or b.
            h = randbytes(16).hex()
            uuid = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
            if uuid not in self._orders:
                return uuid

    def _new_identifier(self) -> str:
        while True:
            identifier = f"fake-{self._next_identifier:06d}"
            self._next_identifier += 1
            if identifier not in self._by_identifier:
                return identifier

    @staticmethod
    def _check_order_fields(market: str, state: str, side: str) -> None:
        if not market:
            raise ValueError("market must be a non-empty market code such as 'SGD-BTC'")
        if state not in _ORDER_STATES:
            raise ValueError(
                f"state must be one of {', '.join(sorted(_ORDER_STATES))}, got {state!r}"
            )
        if side not in _SIDES:
            raise ValueError(f"side must be 'bid' or 'ask', got {side!r}")

    def add_order(
        self,
        market: str = "SGD-BTC",
        state: OrderState = "wait",
        identifier: str | None = None,
        side: str = "bid",
    ) -> str:
        """Add one order to the account and return its uuid (a lowercase uuid4 string).

        Identifiers are unique across the account, as on Upbit.
        """
        self._check_order_fields(market, state, side)
        if identifier is not None and identifier in self._by_identifier:
            raise ValueError(f"identifier {identifier!r} is already used by another order")
        created_at = datetime.now(_KST).isoformat(timespec="seconds")
        uuid = self._new_uuid()
        self._store(FakeOrder(uuid, market, state, identifier, created_at, side))
        return uuid

    def add_orders(
        self,
        n: int,
        market: str = "SGD-BTC",
        state: OrderState = "wait",
        identifiers: bool = False,
        side: str = "bid",
    ) -> list[str]:
        """Add *n* orders in one go and return their uuids, in creation order.

        With ``identifiers=True`` each gets a fresh identifier (``fake-000001``, ...); read it
        back with :meth:`order`.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self._check_order_fields(market, state, side)
        created_at = datetime.now(_KST).isoformat(timespec="seconds")
        # The bookkeeping of _store, done once for the whole batch: benchmarks seed 60,000.
        orders = self._orders
        sequence = self._sequence
        new_uuid = self._new_uuid
        uuids: list[str] = []
        for _ in range(n):
            uuid = new_uuid()
            identifier = self._new_identifier() if identifiers else None
            orders[uuid] = FakeOrder(uuid, market, state, identifier, created_at, side)
            sequence[uuid] = len(sequence)
            if identifier is not None:
                self._by_identifier[identifier] = uuid
            uuids.append(uuid)
        if state in _OPEN_STATES:
            self._open.update(dict.fromkeys(uuids))
        self._state_counts[state] += n
        self._markets.setdefault(market, None)
        return uuids

    def _store(self, order: FakeOrder) -> None:
        self._orders[order.uuid] = order
        self._sequence[order.uuid] = len(self._sequence)
        if order.identifier is not None:
            self._by_identifier[order.identifier] = order.uuid
        if order.state in _OPEN_STATES:
            self._open[order.uuid] = None
        self._state_counts[order.state] += 1
        if order.market not in self._markets:
            self._markets[order.market] = None

    def _cancellable(self, order: FakeOrder) -> bool:
        return order.state in _OPEN_STATES and order.uuid not in self._pending

    def _accept_cancel(self, order: FakeOrder, now: float) -> None:
        """Accept the cancel of an open order: at once, or after ``cancel_delay`` (it may fill
        meanwhile, with probability ``fill_rate``)."""
        if not self._cancel_delay:
            self._move(order.uuid, "cancel")
            return
        final: OrderState = "cancel"
        due = now + self._cancel_delay
        if self._rng.random() < self._fill_rate:
            final, due = "done", now + self._rng.uniform(0.0, self._cancel_delay)
        self._pending[order.uuid] = (due, final)
        heapq.heappush(self._pending_due, (due, order.uuid))

    def _move(self, uuid: str, state: OrderState) -> None:
        order = self._orders[uuid]
        self._orders[uuid] = attrs.evolve(order, state=state)
        self._open.pop(uuid, None)
        self._state_counts[order.state] -= 1
        self._state_counts[state] += 1

    def _settle(self, now: float | None = None) -> None:
        """Put into effect the accepted cancels (and fills) due by ``now``."""
        due = self._pending_due
        if not due:
            return
        if now is None:
            if self._clock is None:
                return
            now = self._now()
        while due and due[0][0] <= now:
            _, uuid = heapq.heappop(due)
            _, final = self._pending.pop(uuid)
            self._move(uuid, final)

    def order(self, uuid: str) -> FakeOrder:
        """The order with this uuid as it stands now. Raises KeyError if unknown."""
        self._settle()
        return self._orders[uuid]

    def state(self, uuid: str) -> OrderState:
        """The order's state now (see :data:`OrderState`). Raises KeyError if unknown."""
        return self.order(uuid).state

    def state_counts(self) -> dict[str, int]:
        """How many orders are in each state."""
        self._settle()
        return {state: self._state_counts[state] for state in sorted(_ORDER_STATES)}

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
        recorded (wrap it in ``asyncio.timeout`` to bound the wait).

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

    def max_in_window(self, window: float | None = None) -> int:
        """Largest number of admitted requests whose arrivals fit in one window.

        Windows are half-open, ``[s, s + window)``, and ``window`` defaults to the fake's.
        """
        window = self._policy.window if window is None else window
        arrivals = sorted(record.arrival for record in self._records if record.admitted)
        best = start = 0
        for end, arrival in enumerate(arrivals):
            while arrival - arrivals[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def stats(self) -> dict[str, Any]:
        """Counts over the records: admitted, rejected (429), per status, and max_in_window."""
        statuses = Counter(record.status for record in self._records)
        return {
            "admitted": sum(record.admitted for record in self._records),
            "rejected_429": statuses[429],
            "status_counts": {str(status): count for status, count in sorted(statuses.items())},
            "max_in_window": self.max_in_window(),
        }

    # -- canned answers --------------------------------------------------------------------

    def queue_response(
        self,
        status: int,
        body: object,
        *,
        content_type: str = _JSON,
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
            raw = _dumps(body)
        queued = _Queued(status, raw, content_type, headers, _error_name_of(raw))
        self._queued.extend([queued] * count)

    # -- server ----------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application()
        add = app.router.add_route
        add("DELETE", "/v1/orders/uuids", self._signed(self._cancel_list))
        add("DELETE", "/v1/order", self._signed(self._cancel_one))
        add("GET", "/v1/orders/open", self._signed(self._open_orders))
        add("GET", "/v1/orders/uuids", self._signed(self._orders_by_ids))
        add("GET", "/v1/order", self._signed(self._one_order))
        add("GET", "/v1/market/all", self._market_all)
        add("POST", "/_fake/orders", self._admin_add_orders)
        add("GET", "/_fake/orders/{uuid}", self._admin_order)
        add("GET", "/_fake/states", self._admin_states)
        add("GET", "/_fake/records", self._admin_records)
        add("GET", "/_fake/stats", self._admin_stats)
        add("POST", "/_fake/reset-records", self._admin_reset_records)
        add("POST", "/_fake/faults", self._admin_set_faults)
        add("POST", "/_fake/credentials", self._admin_add_credentials)
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
        self, endpoint: Callable[[_Call, float], _Answer]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._handle_signed(request, endpoint)

        return handler

    async def _handle_signed(
        self, request: web.Request, endpoint: Callable[[_Call, float], _Answer]
    ) -> web.StreamResponse:
        self._received += 1
        self._in_transit += 1
        self._notify()
        authorization = request.headers.get("Authorization")
        claimed_access_key = _claimed_access_key(authorization)
        faults = self._faults
        if claimed_access_key is not None:
            faults = self._key_faults.get(claimed_access_key, faults)
        try:
            body = await request.read()
            await self._sleep(faults.inbound_delay(self._rng))
        finally:
            self._in_transit -= 1
        # From here to the record nothing awaits, so each request sees the account and the
        # limiter exactly as the previous arrival left them.
        arrival = self._now()
        self._settle(arrival)
        raw_query = request.rel_url.raw_query_string
        call = _Call(
            method=request.method,
            path=request.path,
            authorization=authorization,
            raw_query=raw_query,
            params=tuple(parse_qsl(raw_query, keep_blank_values=True)),
            body=body,
            claimed_access_key=claimed_access_key,
        )
        fault: FaultKind | None = None
        if self._queued:
            answer = self._queued_answer(self._queued.popleft(), arrival)
        else:
            fault = faults.choose(self._rng)
            if fault == "error":
                status = self._rng.choice(tuple(_GATEWAY_ERRORS))
                answer = _Answer(status, _html_page(status), content_type="text/html")
            else:
                answer = self._process(call, arrival, endpoint)
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
            )
        )
        self._notify()

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
        if answer.content_type == _JSON:
            response.charset = "utf-8"
        return response

    def _queued_answer(self, queued: _Queued, now: float) -> _Answer:
        headers = queued.headers
        if headers is None:
            headers = {"Remaining-Req": _remaining_header("default", self._remaining(now))}
        return _Answer(
            queued.status,
            queued.body,
            content_type=queued.content_type,
            error_name=queued.error_name,
            headers=headers,
        )

    def _remaining(self, now: float) -> int:
        if self._blocked_until is not None and now < self._blocked_until:
            return 0
        return self._policy.remaining(now)

    def _process(
        self, call: _Call, now: float, endpoint: Callable[[_Call, float], _Answer]
    ) -> _Answer:
        admitted = False
        try:
            self._check_block(now)
            admitted = self._policy.admit(now)
            if not admitted:
                raise self._too_many_requests(now)
            credential = self._authenticate(call)
            if call.method == "DELETE" and not credential.can_order:
                raise _Refused(
                    403, "out_of_scope", "This API key lacks the 'Make Orders' permission."
                )
            if call.method == "GET" and not credential.can_query:
                raise _Refused(
                    403, "out_of_scope", "This API key lacks the 'order query' permission."
                )
            if call.body:
                raise _Refused(
                    400,
                    "QUERY_PARAMETER_NOT_SUPPORTED",
                    "Parameters must be sent in the query string; a request body is not supported.",
                )
            answer = endpoint(call, now)
        except _Refused as refused:
            answer = refused.answer()
        remaining = _remaining_header("default", self._remaining(now))
        return attrs.evolve(answer, admitted=admitted, headers={"Remaining-Req": remaining})

    def _check_block(self, now: float) -> None:
        if self._blocked_until is None:
            return
        if now >= self._blocked_until:
            self._blocked_until = None
            return
        seconds = max(1, math.ceil(round(self._blocked_until - now, 6)))
        raise _Refused(
            418, "blocked", f"Too many requests. Your access is blocked for {seconds} seconds."
        )

    def _too_many_requests(self, now: float) -> _Refused:
        if self._block_after is not None:
            recent = self._recent_429s
            recent.append(now)
            while now - recent[0] >= self._block_period:
                recent.popleft()
            if len(recent) >= self._block_after:
                recent.clear()
                self._blocked_until = now + self._block_seconds
        return _Refused(429, "too_many_requests", _TOO_MANY_REQUESTS, plain=self._plain_text_429)

    def _authenticate(self, call: _Call) -> _Credential:
        if not call.authorization:
            raise _Refused(401, "no_authorization_token", "Authorization header is missing.")
        scheme, _, token = call.authorization.partition(" ")
        if scheme != "Bearer" or not token:
            raise _Refused(401, "jwt_verification", "Expected 'Authorization: Bearer <jwt>'.")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise _Refused(401, "jwt_verification", "The token is malformed.") from None
        if algorithm not in _ACCEPTED_ALGORITHMS:
            raise _Refused(401, "jwt_verification", "The token must be signed with HS256 or HS512.")
        if call.claimed_access_key is None:
            raise _Refused(401, "jwt_verification", "The token carries no access_key.")
        credential = self._credentials.get(call.claimed_access_key)
        if credential is None:
            raise _Refused(401, "invalid_access_key", "The access key is not registered.")
        try:
            with warnings.catch_warnings():
                # Upbit secrets are 40 bytes, shorter than the 64 PyJWT recommends for HS512.
                warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                payload = jwt.decode(token, credential.secret_key, algorithms=[algorithm])
        except jwt.PyJWTError:
            raise _Refused(401, "jwt_verification", "The token signature is invalid.") from None
        nonce = payload.get("nonce")
        if not isinstance(nonce, str) or not nonce:
            raise _Refused(401, "jwt_verification", "The token carries no nonce.")
        used = self._nonces[credential.access_key]
        if nonce in used:
            raise _Refused(401, "nonce_used", "This nonce was already used.")
        used.add(nonce)
        self._check_query_hash(call, payload)
        return credential

    @staticmethod
    def _check_query_hash(call: _Call, payload: Mapping[str, Any]) -> None:
        # Upbit hashes the decoded query string as received, parameters in their order.
        expected = hashlib.sha512(unquote(call.raw_query).encode()).hexdigest()
        query_hash = payload.get("query_hash")
        if query_hash is None:
            if call.raw_query:
                raise _Refused(
                    401, "invalid_query_payload", "The token carries no query_hash for the query."
                )
            return
        if payload.get("query_hash_alg", "SHA512") != "SHA512":
            raise _Refused(401, "invalid_query_payload", "query_hash_alg must be SHA512.")
        if not isinstance(query_hash, str) or not hmac.compare_digest(query_hash, expected):
            raise _Refused(401, "invalid_query_payload", "query_hash does not match the query.")

    # -- endpoints -------------------------------------------------------------------------

    def _cancel_list(self, call: _Call, now: float) -> _Answer:
        has_uuids, has_identifiers = call.has("uuids[]"), call.has("identifiers[]")
        if has_uuids and has_identifiers:
            raise _Refused(
                400, "validation_error", "Send either uuids[] or identifiers[], not both."
            )
        if not (has_uuids or has_identifiers):
            raise _Refused(400, "validation_error", "uuids[] or identifiers[] is required.")
        by_uuid = has_uuids
        values = call.values("uuids[]" if by_uuid else "identifiers[]")
        if len(values) > MAX_IDS:
            raise _Refused(
                400, "validation_error", f"At most {MAX_IDS} orders per request, got {len(values)}."
            )
        for value in values:
            self._check_id(value, by_uuid=by_uuid)

        success: list[dict[str, str]] = []
        failed: list[dict[str, str]] = []
        canceled: list[str] = []
        # Ids are handled one after another: a repeated id is cancelled first, then failed.
        for value in values:
            uuid = value if by_uuid else self._by_identifier.get(value)
            order = self._orders.get(uuid) if uuid is not None else None
            if order is None:
                if self._unknown_ids == "failed":
                    entry = {"uuid": value if by_uuid else "", "market": UNKNOWN_MARKET}
                    if not by_uuid:
                        entry["identifier"] = value
                    failed.append(entry)
                continue
            if self._cancellable(order):
                self._accept_cancel(order, now)
                canceled.append(order.uuid)
                success.append(self._summary(order))
            else:
                failed.append(self._summary(order))
        payload = {
            "success": {"count": len(success), "orders": success},
            "failed": {"count": len(failed), "orders": failed},
        }
        return _Answer(200, _dumps(payload), canceled=tuple(canceled))

    @staticmethod
    def _check_id(value: str, *, by_uuid: bool) -> None:
        if by_uuid and not _UUID_PATTERN.fullmatch(value):
            raise _Refused(400, "validation_error", f"Not a valid order uuid: {value!r}.")
        if not value:
            raise _Refused(400, "validation_error", "An identifier must not be empty.")

    @staticmethod
    def _summary(order: FakeOrder) -> dict[str, str]:
        entry = {"uuid": order.uuid, "market": order.market}
        if order.identifier is not None:
            entry["identifier"] = order.identifier
        return entry

    def _cancel_one(self, call: _Call, now: float) -> _Answer:
        has_uuid, has_identifier = call.has("uuid"), call.has("identifier")
        if has_uuid == has_identifier:
            raise _Refused(400, "validation_error", "Send exactly one of uuid and identifier.")
        (value, *rest) = call.values("uuid" if has_uuid else "identifier")
        if rest:
            raise _Refused(400, "validation_error", "Send a single uuid or identifier.")
        self._check_id(value, by_uuid=has_uuid)
        uuid = value if has_uuid else self._by_identifier.get(value)
        order = self._orders.get(uuid) if uuid is not None else None
        if order is None or not self._cancellable(order):
            raise _Refused(404, "order_not_found", "Order not found.")
        self._accept_cancel(order, now)
        # Upbit answers a single cancel with the order as it was before the cancel.
        return _Answer(200, _dumps(_order_json(order)), canceled=(order.uuid,))

    def _open_orders(self, call: _Call, now: float) -> _Answer:
        markets = call.values("market")
        market = markets[-1] if markets else None
        page = _int_param(call, "page", default=1, low=1, high=10**9)
        limit = _int_param(call, "limit", default=100, low=1, high=100)
        order_by = _order_by(call)
        states = set(call.values("states[]")) or {"wait"}
        if call.has("state"):
            states = set(call.values("state"))
        if not states <= _OPEN_STATES:
            raise _Refused(400, "validation_error", "states[] must be 'wait' or 'watch'.")
        uuids: Iterable[str] = self._open if order_by == "asc" else reversed(self._open)
        selected: list[dict[str, Any]] = []
        skip = (page - 1) * limit
        for uuid in uuids:
            order = self._orders[uuid]
            if order.state not in states:
                continue
            if market is not None and order.market != market:
                continue
            if skip:
                skip -= 1
                continue
            selected.append(_order_json(order))
            if len(selected) == limit:
                break
        return _Answer(200, _dumps(selected))

    def _orders_by_ids(self, call: _Call, now: float) -> _Answer:
        has_uuids, has_identifiers = call.has("uuids[]"), call.has("identifiers[]")
        if has_uuids == has_identifiers:
            raise _Refused(400, "validation_error", "Send either uuids[] or identifiers[].")
        values = call.values("uuids[]" if has_uuids else "identifiers[]")
        if len(values) > MAX_QUERY_IDS:
            raise _Refused(
                400,
                "validation_error",
                f"At most {MAX_QUERY_IDS} orders per request, got {len(values)}.",
            )
        for value in values:
            self._check_id(value, by_uuid=has_uuids)
        markets = call.values("market")
        found: dict[str, FakeOrder] = {}
        for value in values:
            uuid = value if has_uuids else self._by_identifier.get(value)
            order = self._orders.get(uuid) if uuid is not None else None
            if order is not None and (not markets or order.market == markets[-1]):
                found[order.uuid] = order
        ordered = sorted(found.values(), key=lambda order: self._sequence[order.uuid])
        if _order_by(call) == "desc":
            ordered.reverse()
        return _Answer(200, _dumps([_order_json(order) for order in ordered]))

    def _one_order(self, call: _Call, now: float) -> _Answer:
        has_uuid, has_identifier = call.has("uuid"), call.has("identifier")
        if has_uuid == has_identifier:
            raise _Refused(400, "validation_error", "Send exactly one of uuid and identifier.")
        (value, *rest) = call.values("uuid" if has_uuid else "identifier")
        if rest:
            raise _Refused(400, "validation_error", "Send a single uuid or identifier.")
        uuid = value if has_uuid else self._by_identifier.get(value)
        order = self._orders.get(uuid) if uuid is not None else None
        if order is None:
            raise _Refused(404, "order_not_found", "Order not found.")
        return _Answer(200, _dumps(_order_json(order)))

    async def _market_all(self, request: web.Request) -> web.StreamResponse:
        markets = []
        for market in self._markets:
            _, _, currency = market.partition("-")
            korean, english = _CURRENCY_NAMES.get(currency, (currency, currency))
            markets.append({"market": market, "korean_name": korean, "english_name": english})
        # Quotation calls are limited per IP in their own group; the fake never limits them.
        return web.json_response(
            markets,
            dumps=lambda value: _dumps(value).decode(),
            headers={"Remaining-Req": _remaining_header("market", 9)},
        )

    # -- admin API -------------------------------------------------------------------------

    async def _admin_add_orders(self, request: web.Request) -> web.StreamResponse:
        try:
            payload = await request.json()
        except ValueError:
            return _admin_error("The body must be a JSON object.")
        if not isinstance(payload, dict):
            return _admin_error("The body must be a JSON object.")
        count = payload.get("count", 1)
        market = payload.get("market", "SGD-BTC")
        state = payload.get("state", "wait")
        side = payload.get("side", "bid")
        identifiers = payload.get("identifiers", False)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return _admin_error("count must be a non-negative integer.")
        if not isinstance(market, str) or state not in _ORDER_STATES or side not in _SIDES:
            return _admin_error(
                "market must be a string, state one of "
                f"{', '.join(sorted(_ORDER_STATES))} and side bid or ask."
            )
        if not isinstance(identifiers, bool):
            return _admin_error("identifiers must be true or false.")
        uuids = self.add_orders(
            count, market=market, state=state, identifiers=identifiers, side=side
        )
        created = [self._orders[uuid].identifier for uuid in uuids] if identifiers else None
        return web.json_response({"uuids": uuids, "identifiers": created})

    async def _admin_order(self, request: web.Request) -> web.StreamResponse:
        self._settle()
        order = self._orders.get(request.match_info["uuid"])
        if order is None:
            return web.json_response(
                {"error": {"name": "order_not_found", "message": "Order not found."}}, status=404
            )
        return web.json_response(attrs.asdict(order))

    async def _admin_states(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.state_counts())

    async def _admin_records(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([record.to_dict() for record in self._records])

    async def _admin_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats())

    async def _admin_reset_records(self, request: web.Request) -> web.StreamResponse:
        self.reset_records()
        return web.json_response({"ok": True})

    async def _admin_set_faults(self, request: web.Request) -> web.StreamResponse:
        """Set :attr:`faults` from a JSON object of `Faults` fields (missing ones default)."""
        try:
            payload = await request.json()
        except ValueError:
            return _admin_error("The body must be a JSON object of Faults fields.")
        if not isinstance(payload, dict):
            return _admin_error("The body must be a JSON object of Faults fields.")
        access_key = payload.pop("access_key", None)
        if access_key is not None and access_key not in self._credentials:
            return _admin_error("access_key must be a key of this fake, or left out.")
        names = attrs.fields_dict(Faults)
        unknown = sorted(set(payload) - names.keys())
        if unknown:
            return _admin_error(
                f"Unknown Faults field(s): {', '.join(unknown)}; "
                f"expected some of {', '.join(names)}."
            )
        for name, value in payload.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                return _admin_error(f"{name} must be a number, not {value!r}.")
            if not math.isfinite(value):
                return _admin_error(f"{name} must be a finite number, not {value!r}.")
        try:
            faults = Faults(**{name: float(value) for name, value in payload.items()})
        except ValueError as error:
            return _admin_error(f"{error}.")
        self.set_faults(faults, access_key=access_key)
        return web.json_response(attrs.asdict(faults))

    async def _admin_add_credentials(self, request: web.Request) -> web.StreamResponse:
        """Create another key pair of the account, as :meth:`add_credentials` does."""
        text = await request.text()
        try:
            payload = json.loads(text) if text.strip() else {}
        except ValueError:
            return _admin_error("The body must be a JSON object, or empty.")
        if not isinstance(payload, dict):
            return _admin_error("The body must be a JSON object, or empty.")
        unknown = sorted(set(payload) - {"can_order", "can_query"})
        if unknown:
            return _admin_error(
                f"Unknown field(s): {', '.join(unknown)}; expected can_order, can_query."
            )
        can_order = payload.get("can_order", True)
        can_query = payload.get("can_query", True)
        if not isinstance(can_order, bool) or not isinstance(can_query, bool):
            return _admin_error("can_order and can_query must be true or false.")
        access_key, secret_key = self.add_credentials(can_order=can_order, can_query=can_query)
        return web.json_response({"access_key": access_key, "secret_key": secret_key})


def _admin_error(message: str) -> web.Response:
    return web.json_response(
        {"error": {"name": "validation_error", "message": message}}, status=400
    )


def _order_by(call: _Call) -> str:
    order_by = (call.values("order_by") or ["desc"])[-1]
    if order_by not in ("asc", "desc"):
        raise _Refused(400, "validation_error", "order_by must be 'asc' or 'desc'.")
    return order_by


def _int_param(call: _Call, name: str, *, default: int, low: int, high: int) -> int:
    values = call.values(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise _Refused(400, "validation_error", f"{name} must be an integer.") from None
    if not low <= value <= high:
        raise _Refused(400, "validation_error", f"{name} must be between {low} and {high}.")
    return value


def _order_json(order: FakeOrder) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "uuid": order.uuid,
        "side": order.side,
        "ord_type": "limit",
        "price": "1000",
        "state": order.state,
        "market": order.market,
        "created_at": order.created_at,
        "volume": "1",
        "remaining_volume": "1",
        "reserved_fee": "0.5",
        "remaining_fee": "0.5",
        "paid_fee": "0",
        "locked": "1000.5",
        "executed_volume": "0",
        "trades_count": 0,
    }
    if order.identifier is not None:
        payload["identifier"] = order.identifier
    return payload
