"""The fake exchange's order book: one account's orders, and what each order endpoint does to
them. Plain state on the times it is given: no clock, no I/O."""

from __future__ import annotations

import heapq
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal

import attrs

from ._quirks import Quirks
from ._records import FakeOrder, OrderState
from ._wire import Answer, Call, Refused, dumps

__all__ = [
    "MAX_BATCH",
    "MAX_IDS",
    "MAX_QUERY_IDS",
    "ORDER_STATES",
    "SIDES",
    "OrderBook",
    "UnknownIds",
]

#: What the fake does with ids it does not know: leave them out, or list them in ``failed``.
UnknownIds = Literal["omit", "failed"]

#: Market given to unknown ids listed in ``failed`` (``unknown_ids="failed"``).
UNKNOWN_MARKET: Final = "UNKNOWN"
#: Most ids Upbit accepts in one Order List Cancel call.
MAX_IDS: Final = 20
#: Most ids Upbit accepts in one ``GET /v1/orders/uuids``.
MAX_QUERY_IDS: Final = 100
#: Most orders one batch cancel (``DELETE /v1/orders/open``) cancels, and how many it cancels
#: when ``count`` is not given.
MAX_BATCH: Final = 300
_BATCH_DEFAULT: Final = 20
#: Most markets in ``pairs`` or ``excluded_pairs`` of a batch cancel.
_MAX_PAIRS: Final = 20
_BATCH_PARAMS: Final = frozenset(
    {"cancel_side", "pairs", "excluded_pairs", "quote_currencies", "count", "order_by"}
)

ORDER_STATES: Final = frozenset({"wait", "watch", "done", "cancel", "prevented"})
SIDES: Final = frozenset({"bid", "ask"})
_OPEN_STATES: Final = frozenset({"wait", "watch"})
_UUID_PATTERN: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_VARIANT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_KST: Final = timezone(timedelta(hours=9))

# Markets Upbit lists in its global regions, so ``GET /v1/market/all`` is never empty.
_FIXED_MARKETS: Final = ("SGD-BTC", "SGD-ETH", "KRW-BTC", "KRW-ETH", "IDR-BTC", "THB-BTC")
_CURRENCY_NAMES: Final = {
    "BTC": ("비트코인", "Bitcoin"),
    "ETH": ("이더리움", "Ethereum"),
    "XRP": ("리플", "XRP"),
    "SOL": ("솔라나", "Solana"),
}


def check_order_fields(market: str, state: str, side: str) -> None:
    """A ``ValueError`` unless these can describe an order."""
    if not market:
        raise ValueError("market must be a non-empty market code such as 'SGD-BTC'")
    if state not in ORDER_STATES:
        raise ValueError(f"state must be one of {', '.join(sorted(ORDER_STATES))}, got {state!r}")
    if side not in SIDES:
        raise ValueError(f"side must be 'bid' or 'ask', got {side!r}")


class OrderBook:
    """The account's orders, and the order endpoints' effect on them.

    An accepted cancel takes ``cancel_delay`` seconds to take effect; meanwhile the order stays
    open, and a share ``fill_rate`` of such orders fill instead at a random moment in the delay.
    :meth:`settle` puts into effect what is due by a given time.
    """

    __slots__ = (
        "_by_identifier",
        "_cancel_delay",
        "_fill_rate",
        "_markets",
        "_next_identifier",
        "_open",
        "_orders",
        "_pending",
        "_pending_due",
        "_rng",
        "_sequence",
        "_state_counts",
        "_unknown_ids",
        "listener",
        "quirks",
    )

    def __init__(
        self,
        rng: random.Random,
        *,
        cancel_delay: float,
        fill_rate: float,
        unknown_ids: UnknownIds,
        quirks: Quirks,
    ) -> None:
        #: How the order endpoints depart from the docs.
        self.quirks = quirks
        #: Told of every order created and of every change of state, with the order as it
        #: stands after it (the private stream's source).
        self.listener: Callable[[FakeOrder], None] | None = None
        self._rng = rng
        self._cancel_delay = cancel_delay
        self._fill_rate = fill_rate
        self._unknown_ids: UnknownIds = unknown_ids
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

    def __len__(self) -> int:
        return len(self._orders)

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

    def add_order(self, market: str, state: OrderState, identifier: str | None, side: str) -> str:
        """Add one order; return its uuid. Identifiers are unique across the account."""
        check_order_fields(market, state, side)
        if identifier is not None and identifier in self._by_identifier:
            raise ValueError(f"identifier {identifier!r} is already used by another order")
        created_at = datetime.now(_KST).isoformat(timespec="seconds")
        uuid = self._new_uuid()
        self._store(FakeOrder(uuid, market, state, identifier, created_at, side))
        return uuid

    def add_orders(
        self, n: int, market: str, state: OrderState, identifiers: bool, side: str
    ) -> list[str]:
        """Add ``n`` orders in one go; return their uuids in creation order."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        check_order_fields(market, state, side)
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
        if self.listener is not None:
            for uuid in uuids:
                self.listener(orders[uuid])
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
        if self.listener is not None:
            self.listener(order)

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
        moved = self._orders[uuid] = attrs.evolve(order, state=state)
        self._open.pop(uuid, None)
        self._state_counts[order.state] -= 1
        self._state_counts[state] += 1
        if self.listener is not None:
            self.listener(moved)

    def settle(self, now: float) -> None:
        """Put into effect the accepted cancels (and fills) due by ``now``."""
        due = self._pending_due
        while due and due[0][0] <= now:
            _, uuid = heapq.heappop(due)
            _, final = self._pending.pop(uuid)
            self._move(uuid, final)

    def next_due(self) -> float | None:
        """When the next accepted cancel (or fill) takes effect, if one waits."""
        return self._pending_due[0][0] if self._pending_due else None

    @property
    def has_pending(self) -> bool:
        """Whether accepted cancels wait to take effect."""
        return bool(self._pending_due)

    def get(self, uuid: str) -> FakeOrder | None:
        """The order with this uuid as it stands, or ``None``."""
        return self._orders.get(uuid)

    def state_counts(self) -> dict[str, int]:
        """How many orders are in each state."""
        return {state: self._state_counts[state] for state in sorted(ORDER_STATES)}

    def markets(self) -> list[dict[str, str]]:
        """``GET /v1/market/all``: every market the account's orders are in, and Upbit's own."""
        markets = []
        for market in self._markets:
            _, _, currency = market.partition("-")
            korean, english = _CURRENCY_NAMES.get(currency, (currency, currency))
            markets.append({"market": market, "korean_name": korean, "english_name": english})
        return markets

    # -- endpoints -------------------------------------------------------------------------

    def cancel_list(self, call: Call, now: float) -> Answer:
        """``DELETE /v1/orders/uuids``: cancel up to 20 orders by uuid or by identifier."""
        has_uuids, has_identifiers = call.has("uuids[]"), call.has("identifiers[]")
        if has_uuids and has_identifiers:
            raise Refused(
                400, "validation_error", "Send either uuids[] or identifiers[], not both."
            )
        if not (has_uuids or has_identifiers):
            raise Refused(400, "validation_error", "uuids[] or identifiers[] is required.")
        by_uuid = has_uuids
        values = call.values("uuids[]" if by_uuid else "identifiers[]")
        if len(values) > MAX_IDS:
            raise Refused(
                400, "validation_error", f"At most {MAX_IDS} orders per request, got {len(values)}."
            )
        for value in values:
            _check_id(value, by_uuid=by_uuid)

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
                success.append(_summary(order))
            else:
                failed.append(_summary(order))
        payload = {
            "success": {"count": len(success), "orders": success},
            "failed": {"count": len(failed), "orders": failed},
        }
        return Answer(200, dumps(payload), canceled=tuple(canceled))

    def cancel_one(self, call: Call, now: float) -> Answer:
        """``DELETE /v1/order``: cancel one order by uuid or identifier."""
        order = self._one(call, cancellable=True)
        self._accept_cancel(order, now)
        # Upbit answers a single cancel with the order as it was before the cancel.
        return Answer(200, dumps(order_json(order)), canceled=(order.uuid,))

    def cancel_open(self, call: Call, now: float) -> Answer:
        """``DELETE /v1/orders/open``: cancel up to ``count`` (default 20, at most 300) ``wait``
        orders chosen by side, market and quote currency, newest first unless ``order_by=asc``.

        ``watch`` orders are never touched, nor orders whose cancel is already under way.
        """
        unknown = sorted({name for name, _ in call.params} - _BATCH_PARAMS)
        if unknown:
            raise Refused(400, "validation_error", f"Unknown parameter: {unknown[0]}.")
        side = _single(call, "cancel_side", "all")
        if side not in ("all", "ask", "bid"):
            raise Refused(400, "validation_error", "cancel_side must be 'all', 'ask' or 'bid'.")
        pairs = _markets(call, "pairs")
        excluded = _markets(call, "excluded_pairs")
        quotes = _markets(call, "quote_currencies")
        if pairs and quotes:
            raise Refused(
                400, "validation_error", "pairs and quote_currencies cannot be used together."
            )
        count_text = _single(call, "count", str(_BATCH_DEFAULT))
        if not (count_text.isascii() and count_text.isdigit()):
            raise Refused(400, "validation_error", "count must be a whole number.")
        count = int(count_text)
        if not 1 <= count <= MAX_BATCH:
            raise Refused(400, "validation_error", f"count must be between 1 and {MAX_BATCH}.")
        order_by = _single(call, "order_by", "desc")
        if order_by not in ("asc", "desc"):
            raise Refused(400, "validation_error", "order_by must be 'asc' or 'desc'.")
        uuids: Iterable[str] = self._open if order_by == "asc" else reversed(self._open)
        chosen: list[FakeOrder] = []
        for uuid in uuids:
            order = self._orders[uuid]
            if order.state != "wait" or uuid in self._pending:
                continue
            if side != "all" and order.side != side:
                continue
            if order.market in excluded or (pairs and order.market not in pairs):
                continue
            if quotes and order.market.partition("-")[0] not in quotes:
                continue
            chosen.append(order)
            if len(chosen) == count:
                break
        for order in chosen:
            self._accept_cancel(order, now)
        success = [_summary(order) for order in chosen]
        payload = {
            "success": {"count": len(success), "orders": success},
            "failed": {"count": 0, "orders": []},
        }
        return Answer(200, dumps(payload), canceled=tuple(order.uuid for order in chosen))

    def one_order(self, call: Call, now: float) -> Answer:
        """``GET /v1/order``: one order by uuid or identifier."""
        order = self._one(call, cancellable=False)
        return Answer(200, dumps(order_json(order, self.quirks.identifiers_omitted)))

    def _one(self, call: Call, *, cancellable: bool) -> FakeOrder:
        has_uuid, has_identifier = call.has("uuid"), call.has("identifier")
        if has_uuid == has_identifier:
            raise Refused(400, "validation_error", "Send exactly one of uuid and identifier.")
        (value, *rest) = call.values("uuid" if has_uuid else "identifier")
        if rest:
            raise Refused(400, "validation_error", "Send a single uuid or identifier.")
        if cancellable:
            _check_id(value, by_uuid=has_uuid)
        uuid = value if has_uuid else self._by_identifier.get(value)
        order = self._orders.get(uuid) if uuid is not None else None
        if order is None or (cancellable and not self._cancellable(order)):
            raise Refused(404, "order_not_found", "Order not found.")
        return order

    def open_orders(self, call: Call, now: float) -> Answer:
        """``GET /v1/orders/open``: a page of open orders, optionally of one market."""
        quirks = self.quirks
        markets = call.values("market")
        market = markets[-1] if markets and not quirks.open_market_ignored else None
        page = call.int_param("page", default=1, low=1, high=10**9)
        limit = call.int_param("limit", default=100, low=1, high=100)
        if quirks.open_pages_ignored:
            page = 1
        if quirks.open_page_size is not None:
            limit = min(limit, quirks.open_page_size)
        order_by = call.order_by()
        states = set(call.values("states[]")) or {"wait"}
        if call.has("state"):
            states = set(call.values("state"))
        if not states <= _OPEN_STATES:
            raise Refused(400, "validation_error", "states[] must be 'wait' or 'watch'.")
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
            selected.append(order_json(order))
            if len(selected) == limit:
                break
        return Answer(200, dumps(selected))

    def orders_by_ids(self, call: Call, now: float) -> Answer:
        """``GET /v1/orders/uuids``: up to 100 orders by uuid or by identifier."""
        has_uuids, has_identifiers = call.has("uuids[]"), call.has("identifiers[]")
        if has_uuids == has_identifiers:
            raise Refused(400, "validation_error", "Send either uuids[] or identifiers[].")
        values = call.values("uuids[]" if has_uuids else "identifiers[]")
        if len(values) > MAX_QUERY_IDS:
            raise Refused(
                400,
                "validation_error",
                f"At most {MAX_QUERY_IDS} orders per request, got {len(values)}.",
            )
        for value in values:
            _check_id(value, by_uuid=has_uuids)
        markets = call.values("market")
        found: dict[str, FakeOrder] = {}
        for value in values:
            uuid = value if has_uuids else self._by_identifier.get(value)
            order = self._orders.get(uuid) if uuid is not None else None
            if order is not None and (not markets or order.market == markets[-1]):
                found[order.uuid] = order
        ordered = sorted(found.values(), key=lambda order: self._sequence[order.uuid])
        if call.order_by() == "desc":
            ordered.reverse()
        omitted = self.quirks.identifiers_omitted
        return Answer(200, dumps([order_json(order, omitted) for order in ordered]))


def _check_id(value: str, *, by_uuid: bool) -> None:
    if by_uuid and not _UUID_PATTERN.fullmatch(value):
        raise Refused(400, "validation_error", f"Not a valid order uuid: {value!r}.")
    if not value:
        raise Refused(400, "validation_error", "An identifier must not be empty.")


def _single(call: Call, name: str, default: str) -> str:
    values = call.values(name)
    if len(values) > 1:
        raise Refused(400, "validation_error", f"{name} must be given once.")
    return values[0] if values else default


def _markets(call: Call, name: str) -> frozenset[str]:
    """A comma-separated list of at most 20 codes, or a 400 ``validation_error``."""
    if not call.has(name):
        return frozenset()
    codes = _single(call, name, "").split(",")
    if len(codes) > _MAX_PAIRS:
        raise Refused(400, "validation_error", f"{name} holds at most {_MAX_PAIRS} entries.")
    if any(not code or code != code.strip() for code in codes):
        raise Refused(400, "validation_error", f"{name} holds an empty or padded entry.")
    return frozenset(codes)


def _summary(order: FakeOrder) -> dict[str, str]:
    entry = {"uuid": order.uuid, "market": order.market}
    if order.identifier is not None:
        entry["identifier"] = order.identifier
    return entry


def order_json(order: FakeOrder, identifier_omitted: bool = False) -> dict[str, Any]:
    """An order as Upbit's order endpoints describe it (leaving out its identifier if asked)."""
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
    if order.identifier is not None and not identifier_omitted:
        payload["identifier"] = order.identifier
    return payload
