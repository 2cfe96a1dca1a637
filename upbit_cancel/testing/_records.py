"""Value objects the fake exchange hands out: its orders and its record of each API request."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import attrs

from ._faults import FaultKind

__all__ = ["FakeOrder", "OrderState", "RequestRecord", "most_in_window"]

#: Order states the fake knows: open (``wait``), a reserved order waiting to trigger
#: (``watch``, open too), fully executed (``done``), cancelled, or cancelled by self-match
#: prevention (``prevented``).
OrderState = Literal["wait", "watch", "done", "cancel", "prevented"]


@attrs.frozen
class FakeOrder:
    """One order of the fake exchange's account, as it stands now."""

    #: Lowercase uuid4 string chosen by the exchange.
    uuid: str
    #: Market code such as ``"SGD-BTC"``.
    market: str
    #: ``"wait"`` or ``"watch"`` (open and cancellable), ``"done"``, ``"cancel"`` or
    #: ``"prevented"``.
    state: OrderState
    #: The client-chosen identifier, if the order was given one.
    identifier: str | None = None
    #: Creation time in Upbit's format, ISO 8601 with the offset of Korea (``+09:00``).
    created_at: str = ""
    #: ``"bid"`` (buy) or ``"ask"`` (sell).
    side: str = "bid"


@attrs.frozen
class RequestRecord:
    """What the fake saw and did for one signed API request.

    Records never hold secrets or tokens: only the access key the token claimed.
    """

    #: Clock time at which the request arrived (after its inbound delay).
    arrival: float
    #: HTTP method, such as ``"DELETE"``.
    method: str
    #: URL path without the query, such as ``"/v1/orders/uuids"``.
    path: str
    #: Access key claimed by the token (even if the token was then refused), or None.
    access_key: str | None
    #: Status the exchange decided on (a dropped request records the status it never sent).
    status: int
    #: The ``name`` of the error answered, or None for a success or an HTML error page.
    error_name: str | None
    #: The ``uuids[]``, ``identifiers[]``, ``uuid`` or ``identifier`` values the request carried.
    ids: tuple[str, ...]
    #: Whether the request passed the rate limiter (and so used up some of the budget).
    admitted: bool
    #: The fault injected into this request, if any.
    fault: FaultKind | None
    #: Uuids of the orders whose cancel this request accepted. With ``cancel_delay`` they reach
    #: the ``cancel`` state (or fill, ``done``) later.
    canceled: tuple[str, ...]
    #: The rate-limit group whose budget the endpoint spends: ``"default"``, or
    #: ``"order-cancel-all"`` for the batch cancel.
    group: str = "default"
    #: The pocket (sub-account) that served it: the one of the claimed access key, or
    #: ``"main"`` for a key the fake does not know.
    pocket: str = "main"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of this record (as served by ``GET /_fake/records``)."""
        return attrs.asdict(self)


def most_in_window(arrivals: Iterable[float], window: float = 1.0) -> int:
    """The most of ``arrivals`` (times in seconds, in any order) that fit in one half-open
    window ``[s, s + window)``: how the fake's rate limiter counts. Give it every record's
    arrival, refused ones included, to see what an exchange that admitted everything would
    have counted::

        most_in_window(record.arrival for record in fake.records)
    """
    ordered = sorted(arrivals)
    most = start = 0
    for end, arrival in enumerate(ordered):
        while arrival - ordered[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most
