"""Listing what is open, for ``cancel_open``: every page of the account's open orders."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from .._errors import ConnectError, OutcomeUnknownError
from .._http.session import OPEN_ORDERS, UpbitSession, open_orders_params
from .._http.transport import Observer
from .._models import Order

__all__ = ["PAGE_SIZE", "list_open", "open_ids"]

#: Orders per page of the listing (the most Upbit gives).
PAGE_SIZE = 100
#: Attempts at one page: a listing changes nothing, so a failed one is asked again.
_LISTING_ATTEMPTS = 3
#: Pause before asking a failed page again, doubling.
_FIRST_PAUSE = 0.1


async def list_open(
    session: UpbitSession, market: str | None, *, observer: Observer | None = None
) -> list[Order]:
    """Every open order of the account (in ``market``), page after page until a short one."""
    found: list[Order] = []
    page = 1
    while True:
        orders = await _page(session, market, page, observer)
        found += orders
        if len(orders) < PAGE_SIZE:
            return found
        page += 1


async def _page(
    session: UpbitSession, market: str | None, page: int, observer: Observer | None
) -> list[Order]:
    """One page of open orders, asked again after a 5xx, a lost answer or no connection."""
    params = open_orders_params(market, page, PAGE_SIZE)
    pause = _FIRST_PAUSE
    for _ in range(_LISTING_ATTEMPTS - 1):
        try:
            return await session._call(OPEN_ORDERS, params=params, observer=observer)
        except (OutcomeUnknownError, ConnectError):
            await asyncio.sleep(pause)
            pause *= 2
    return await session._call(OPEN_ORDERS, params=params, observer=observer)


def open_ids(orders: Iterable[Order]) -> list[str]:
    """The uuids of ``orders``, each once, in order."""
    return list(dict.fromkeys(order.uuid for order in orders))
