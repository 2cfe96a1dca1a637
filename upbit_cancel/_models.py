"""Value objects: the exchange's answers and the batch canceller's report."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs

from ._errors import UnresolvedError, UpbitError

__all__ = [
    "BatchResult",
    "CancelResult",
    "OrderEntry",
    "OrderList",
    "RemainingReq",
    "UnresolvedOrder",
    "parse_remaining_req",
]

_log = logging.getLogger("upbit_cancel")


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
    """A ``success`` or ``failed`` list: ``count`` always equals ``len(orders)``."""

    orders: tuple[OrderEntry, ...] = ()

    @property
    def count(self) -> int:
        """How many orders the list holds."""
        return len(self.orders)


@attrs.frozen
class CancelResult:
    """The exchange's answer to one ``DELETE /v1/orders/uuids`` request.

    ``success`` lists the orders whose cancel the exchange accepted; ``failed`` those it refused
    (already filled, already canceled, market suspended: the exchange gives no reason). Ids the
    exchange does not know may be in ``failed`` or in neither list.
    """

    success: OrderList = OrderList()
    failed: OrderList = OrderList()


@attrs.frozen
class RemainingReq:
    """The ``Remaining-Req`` header: calls left in the current window of a rate-limit group."""

    #: The rate-limit group, such as ``"default"``.
    group: str
    #: Calls left in the current second.
    sec: int
    #: Calls left in the current minute (deprecated by Upbit and fixed; ``None`` when absent).
    min: int | None = None


def parse_remaining_req(value: str | None) -> RemainingReq | None:
    """Parse ``group=default; min=1800; sec=29``; ``None`` (logged at debug) when unusable.

    Tolerant by design: the exchange's header is advisory, and a malformed one must never fail a
    request that otherwise succeeded.
    """
    if value is None:
        return None
    fields: dict[str, str] = {}
    for part in value.split(";"):
        key, sep, item = part.partition("=")
        if sep:
            fields[key.strip().lower()] = item.strip()
    try:
        group = fields["group"]
        sec = int(fields["sec"])
        minute = int(fields["min"]) if "min" in fields else None
    except (KeyError, ValueError):
        _log.debug("ignoring malformed Remaining-Req header %r", value)
        return None
    if not group or sec < 0:
        _log.debug("ignoring malformed Remaining-Req header %r", value)
        return None
    return RemainingReq(group=group, sec=sec, min=minute)


def _order_list(value: object) -> OrderList:
    if not isinstance(value, Mapping):
        raise ValueError("expected an object with 'count' and 'orders'")
    orders = value.get("orders")
    if not isinstance(orders, list):
        raise ValueError("expected 'orders' to be a list")
    entries = []
    for order in orders:
        if not isinstance(order, Mapping):
            raise ValueError("expected each order to be an object")
        # Lenient where a missing field costs nothing: the batch matches entries by uuid or
        # identifier, and an entry matching nothing is reported, never dropped silently.
        uuid, market = order.get("uuid", ""), order.get("market", "")
        identifier = order.get("identifier")
        if not isinstance(uuid, str) or not isinstance(market, str):
            raise ValueError("expected 'uuid' and 'market' to be strings")
        if identifier is not None and not isinstance(identifier, str):
            raise ValueError("expected 'identifier' to be a string when present")
        entries.append(OrderEntry(uuid=uuid, market=market, identifier=identifier))
    return OrderList(tuple(entries))


def parse_cancel_result(body: Any) -> CancelResult:
    """Build a :class:`CancelResult` from the decoded JSON; ``ValueError`` if it is off-shape."""
    if not isinstance(body, Mapping) or ("success" not in body and "failed" not in body):
        raise ValueError("expected a JSON object with 'success' and 'failed'")
    # One list missing is read as empty: the other one is still worth having.
    empty = {"count": 0, "orders": []}
    return CancelResult(
        success=_order_list(body.get("success", empty)),
        failed=_order_list(body.get("failed", empty)),
    )


@attrs.frozen
class UnresolvedOrder:
    """An id whose fate the batch could not establish.

    ``error`` says why: the request carrying it failed (the error tells whether it was sent), or
    the id was malformed and never sent. ``error`` is ``None`` when the exchange answered the
    request but mentioned the id in neither list (the exchange does this for ids it does not
    know).
    """

    #: The uuid or identifier exactly as given.
    id: str
    #: Why it is unresolved, or ``None`` when the exchange answered without mentioning it.
    error: UpbitError | None = attrs.field(default=None, eq=False)


@attrs.frozen
class BatchResult:
    """What happened to every id given to :meth:`BatchCanceller.cancel`.

    Each distinct input id appears exactly once across ``success``, ``failed`` and
    ``unresolved``, in input order.
    """

    success: OrderList = OrderList()
    failed: OrderList = OrderList()
    #: Ids whose fate is unknown, each with the reason.
    unresolved: tuple[UnresolvedOrder, ...] = ()
    #: Ids in ``failed`` that an earlier, unanswered attempt may have canceled (only with
    #: ``retry_ambiguous=True``): the exchange refused them on the retry, possibly because the
    #: first attempt had already canceled them.
    possibly_canceled: frozenset[str] = frozenset()
    #: Requests the session sent during the batch, retries included.
    requests: int = 0
    #: 429 answers the session received during the batch (each was paused for and retried).
    rate_limited: int = 0
    #: Seconds from the start of the batch to its end.
    elapsed: float = 0.0

    def raise_for_unresolved(self) -> None:
        """Raise :class:`UnresolvedError` if any id is unresolved; do nothing otherwise."""
        if self.unresolved:
            raise UnresolvedError(self.unresolved)
