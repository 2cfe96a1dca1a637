"""Ways the fake exchange departs from Upbit's documented behaviour, on demand.

A client must trust nothing the exchange did not promise; these let a test check that it does
not. Each is off by default, when the fake keeps the docs.
"""

from __future__ import annotations

import attrs

__all__ = ["Quirks"]


def _page_size(
    _instance: object, _attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(
            f"open_page_size must be a whole number of orders, at least 1, not {value!r}"
        )


@attrs.frozen
class Quirks:
    """Departures from the docs, for ``FakeUpbit(quirks=...)``.

    Example::

        FakeUpbit(quirks=Quirks(open_page_size=50))  # pages of at most 50 open orders
    """

    #: ``GET /v1/orders/open`` answers at most this many orders a page, whatever ``limit`` asks
    #: (the docs promise up to 100).
    open_page_size: int | None = attrs.field(default=None, validator=_page_size)
    #: ``GET /v1/orders/open`` ignores ``page``: every page is the first.
    open_pages_ignored: bool = False
    #: ``GET /v1/orders/open`` ignores ``market``: every market's open orders.
    open_market_ignored: bool = False
    #: ``GET /v1/orders/uuids`` and ``GET /v1/order`` leave out each order's ``identifier``.
    identifiers_omitted: bool = False
