"""Value objects: orders and the exchange's answers about them, and what a batch reports."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Final, TypeVar, overload

import attrs

from ._errors import UnresolvedError, UpbitError
from ._ids import Kind

__all__ = [
    "CLOSED_STATES",
    "OPEN_STATES",
    "BatchResult",
    "CancelResult",
    "ChunkResult",
    "Order",
    "OrderEntry",
    "OrderList",
    "Progress",
    "UnresolvedList",
    "UnresolvedOrder",
]


@attrs.frozen
class OrderEntry:
    """One order in a ``success`` or ``failed`` list, as the exchange reported it."""

    #: The order's uuid.
    uuid: str
    #: Its market, such as ``"SGD-BTC"``.
    market: str
    #: The client-chosen identifier, or ``None`` when the order has none (orders created before
    #: 2024-10-18) or the exchange left it out.
    identifier: str | None = None


@attrs.frozen
class OrderList:
    """A ``success`` or ``failed`` list: ``count`` always equals ``len(orders)``.

    It reads like the tuple it holds: ``len(result.success)``, ``for order in result.success``,
    ``result.success[0]``.
    """

    orders: tuple[OrderEntry, ...] = ()

    @property
    def count(self) -> int:
        """How many orders the list holds."""
        return len(self.orders)

    def __len__(self) -> int:
        return len(self.orders)

    def __iter__(self) -> Iterator[OrderEntry]:
        return iter(self.orders)

    @overload
    def __getitem__(self, index: int) -> OrderEntry: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[OrderEntry, ...]: ...
    def __getitem__(self, index: int | slice) -> OrderEntry | tuple[OrderEntry, ...]:
        return self.orders[index]


def _order_list(value: OrderList | Iterable[OrderEntry]) -> OrderList:
    """``success=`` or ``failed=`` as an :class:`OrderList`, whatever iterable it came as."""
    if isinstance(value, OrderList):
        return value
    return OrderList(_entries(value, OrderEntry))


_Entry = TypeVar("_Entry")


def _entries(value: Iterable[_Entry], kind: type[_Entry]) -> tuple[_Entry, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"expected {kind.__name__} entries, not {type(value).__name__}")
    entries = tuple(value)
    for entry in entries:
        if not isinstance(entry, kind):
            raise TypeError(f"expected {kind.__name__} entries, not {type(entry).__name__}")
    return entries


@attrs.frozen
class CancelResult:
    """The exchange's answer to one ``DELETE /v1/orders/uuids`` request.

    ``success`` lists the orders whose cancel the exchange accepted; ``failed`` those it refused
    (already filled, already canceled, market suspended: the exchange gives no reason). Ids the
    exchange does not know may be in ``failed`` or in neither list.
    """

    #: The orders whose cancel the exchange accepted.
    success: OrderList = attrs.field(factory=OrderList, converter=_order_list)
    #: The orders whose cancel the exchange refused (already filled or canceled, the market
    #: suspended; Upbit gives no reason).
    failed: OrderList = attrs.field(factory=OrderList, converter=_order_list)


#: The states of an order that is still open: waiting to fill, or a reserved order waiting to
#: trigger (what ``GET /v1/orders/open`` lists).
OPEN_STATES: Final = frozenset({"wait", "watch"})

#: The states of an order that is closed for good: filled, canceled, or canceled by self-match
#: prevention. Any other state, one this library does not know included, may still fill.
CLOSED_STATES: Final = frozenset({"done", "cancel", "prevented"})


def may_fill(state: str | None) -> bool:
    """Whether an order in ``state`` may still fill: any state the exchange reported but a
    closed one (``None``: not learned; ``"not_found"``: no such order)."""
    return state is not None and state != "not_found" and state not in CLOSED_STATES


@attrs.frozen
class Order:
    """An order as the exchange describes it (``GET /v1/orders/uuids``, ``/v1/orders/open``).

    ``state`` is ``"wait"`` (open), ``"watch"`` (a reserved order waiting to trigger),
    ``"done"`` (fully filled), ``"cancel"`` (canceled) or ``"prevented"`` (canceled by
    self-match prevention), or a state Upbit adds later, which counts as open. Amounts are
    kept as the exchange's decimal strings.
    """

    uuid: str
    market: str
    state: str
    #: ``"bid"`` or ``"ask"``.
    side: str | None = None
    #: The client-chosen identifier, if it has one.
    identifier: str | None = None
    #: Creation time as the exchange writes it (ISO 8601 with an offset).
    created_at: str | None = None
    ord_type: str | None = None
    price: str | None = None
    volume: str | None = None
    remaining_volume: str | None = None
    executed_volume: str | None = None

    @property
    def is_open(self) -> bool:
        """Whether the order can still fill: its state is not a closed one (``done``,
        ``cancel``, ``prevented``)."""
        return may_fill(self.state)


def _frozen_mapping(value: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(value))


@attrs.frozen
class UnresolvedOrder:
    """An id whose fate the batch could not establish.

    ``error`` says why: the request carrying it failed (the error tells whether it was sent), or
    the id was malformed and never sent. ``error`` is ``None`` when the exchange answered the
    request but mentioned the id in neither list (the exchange does this for ids it does not
    know).
    """

    #: The uuid or identifier exactly as given (an input that is not a string is shown as
    #: ``"<int 1001>"``, so that it never stands for the string it resembles).
    id: str
    #: Why it is unresolved, or ``None`` when the exchange answered without mentioning it.
    error: UpbitError | None = attrs.field(default=None, eq=False)


@attrs.frozen
class UnresolvedList:
    """The ``unresolved`` list: ids whose fate is unknown, each with the reason.

    It reads like ``success`` and ``failed``: ``count``, ``len()``, iteration and indexing.
    """

    orders: tuple[UnresolvedOrder, ...] = ()

    @property
    def count(self) -> int:
        """How many ids the list holds."""
        return len(self.orders)

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids, in input order."""
        return tuple(entry.id for entry in self.orders)

    def __len__(self) -> int:
        return len(self.orders)

    def __iter__(self) -> Iterator[UnresolvedOrder]:
        return iter(self.orders)

    @overload
    def __getitem__(self, index: int) -> UnresolvedOrder: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[UnresolvedOrder, ...]: ...
    def __getitem__(self, index: int | slice) -> UnresolvedOrder | tuple[UnresolvedOrder, ...]:
        return self.orders[index]


def _unresolved_list(value: UnresolvedList | Iterable[UnresolvedOrder]) -> UnresolvedList:
    """``unresolved=`` as an :class:`UnresolvedList`, whatever iterable it came as."""
    if isinstance(value, UnresolvedList):
        return value
    return UnresolvedList(_entries(value, UnresolvedOrder))


@attrs.frozen
class BatchResult:
    """What happened to every id given to :meth:`BatchCanceller.cancel`.

    Each distinct input id appears exactly once across ``success``, ``failed`` and
    ``unresolved``, in input order.
    """

    #: The orders whose cancel the exchange accepted.
    success: OrderList = attrs.field(factory=OrderList, converter=_order_list)
    #: The orders whose cancel the exchange refused (already filled or canceled, the market
    #: suspended; Upbit gives no reason).
    failed: OrderList = attrs.field(factory=OrderList, converter=_order_list)
    #: Ids whose fate is unknown, each with the reason.
    unresolved: UnresolvedList = attrs.field(factory=UnresolvedList, converter=_unresolved_list)
    #: Ids in ``failed`` that an earlier, unanswered attempt may have canceled: the exchange
    #: refused them on a retry (``retry_ambiguous=True``) or a second cancel, or while a batch
    #: cancel of :meth:`BatchCanceller.cancel_open` that got no answer was on its way, possibly
    #: because that attempt had already canceled them.
    possibly_canceled: frozenset[str] = frozenset()
    #: Requests this operation sent (its cancels, and its queries and listings if it made
    #: any), retries included; never another operation's on the same session.
    requests: int = 0
    #: 429 answers to this operation's requests (each was paused for and retried).
    rate_limited: int = 0
    #: Seconds from the start of the operation to its end.
    elapsed: float = 0.0
    #: Whether the ids are ``uuids`` or ``identifiers`` (what the lists are matched by).
    kind: Kind = "uuids"
    #: Whether the final states were asked for (``confirm=True`` or :meth:`BatchCanceller.confirm`).
    confirmed: bool = False
    #: After confirmation, each distinct well-formed id's final state as the exchange reports
    #: it (``"cancel"``, ``"done"``, ``"wait"``, ``"watch"``, ``"prevented"``), ``"not_found"``
    #: when the exchange does not know it, or ``None`` when it could not be learned (the reason
    #: is in :attr:`state_errors`). Empty without confirmation.
    states: Mapping[str, str | None] = attrs.field(
        factory=dict, converter=_frozen_mapping, eq=False
    )
    #: Why a state is ``None``, by id.
    state_errors: Mapping[str, UpbitError] = attrs.field(
        factory=dict, converter=_frozen_mapping, eq=False
    )
    #: Ids that confirmation (or a later listing of :meth:`BatchCanceller.cancel_open`) found
    #: open with no accepted cancel (their request failed or its outcome was unknown) and so
    #: canceled again; the lists say what that cancel answered.
    recanceled: frozenset[str] = frozenset()
    #: For :meth:`BatchCanceller.cancel_open`: whether its last listing came to its end and
    #: showed nothing left to cancel. ``False`` when a listing did not end (the exchange kept
    #: answering pages, or repeated one) or the listings found new orders until the last one:
    #: then orders may be left open that no listing showed. ``None`` for other operations.
    listing_complete: bool | None = None
    #: Ids placed by what confirmation found rather than by a cancel's answer: their cancel got
    #: no usable answer, and the exchange then reported them closed (``cancel`` or
    #: ``prevented``: in ``success``; ``done``: in ``failed``) or unknown (``not_found``: in
    #: ``failed``, with an empty market). Every other id is where an answer placed it.
    placed_by_confirmation: frozenset[str] = frozenset()
    #: For :meth:`BatchCanceller.cancel_open` with its batch lane: the uuids in ``success``
    #: that a batch cancel (``DELETE /v1/orders/open``) named canceled. Every other success is
    #: a list cancel's.
    batch_canceled: frozenset[str] = frozenset()
    #: Batch cancels that left and got no usable answer (a timeout, a dropped connection, a
    #: 5xx, the operation cancelled): each may have canceled up to 300 orders that no answer
    #: named. Those a listing had shown are in the result (refused ones among
    #: ``possibly_canceled``, placed by their final state on confirmation); those it had not
    #: are in no list.
    batch_unanswered: int = 0

    @property
    def still_open(self) -> tuple[str, ...]:
        """Ids whose order may still fill after confirmation, the ones to act on: ``wait``,
        ``watch``, or a state this library does not know."""
        return tuple(value for value, state in self.states.items() if may_fill(state))

    @property
    def unknown_states(self) -> tuple[str, ...]:
        """Ids whose final state could not be learned (see :attr:`state_errors`)."""
        return tuple(value for value, state in self.states.items() if state is None)

    def __repr__(self) -> str:
        parts = [
            f"{self.success.count:,} success",
            f"{self.failed.count:,} failed",
            f"{self.unresolved.count:,} unresolved",
            f"{self.requests:,} request{'' if self.requests == 1 else 's'} in {self.elapsed:.1f} s",
        ]
        if self.confirmed:
            parts.append(
                f"confirmed: {len(self.still_open):,} still open, "
                f"{len(self.unknown_states):,} unknown"
            )
        return f"<BatchResult {', '.join(parts)}>"

    def raise_for_unresolved(self) -> None:
        """Raise :class:`UnresolvedError` if any id is unresolved; do nothing otherwise."""
        if self.unresolved:
            raise UnresolvedError(self.unresolved)


@attrs.frozen
class ChunkResult:
    """What happened to one chunk of up to 20 ids (plus any malformed ids met beside them).

    ``ids`` lists the chunk's distinct ids in input order; each appears in exactly one of
    ``success``, ``failed`` and ``unresolved``.
    """

    #: Position of the chunk in the input, from 0.
    index: int
    #: The chunk's distinct ids, in input order.
    ids: tuple[str, ...]
    #: The orders whose cancel the exchange accepted.
    success: OrderList = attrs.field(factory=OrderList, converter=_order_list)
    #: The orders whose cancel the exchange refused (already filled or canceled, the market
    #: suspended; Upbit gives no reason).
    failed: OrderList = attrs.field(factory=OrderList, converter=_order_list)
    #: The chunk's ids whose fate is unknown, each with the reason.
    unresolved: UnresolvedList = attrs.field(factory=UnresolvedList, converter=_unresolved_list)
    #: Ids in ``failed`` that an earlier, unanswered attempt may have canceled.
    possibly_canceled: frozenset[str] = frozenset()


@attrs.frozen
class Progress:
    """How far a batch has come, passed to ``on_progress`` after every chunk."""

    #: Distinct ids accounted for so far (in success, failed or unresolved).
    done: int
    #: Distinct ids in the input, known up front for collections (lists, tuples, sets), and
    #: once the input is exhausted for other iterables (``None`` until then).
    total: int | None
    success: int
    failed: int
    unresolved: int
    #: Requests the operation sent so far, retries included.
    requests: int
