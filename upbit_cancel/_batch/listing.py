"""Listing what is open, for ``cancel_open``: every page of the account's open orders.

Trust nothing the exchange did not promise: a listing asks for pages until one comes back
empty (a page shorter than asked for does not prove the end: an exchange may cap its pages),
keeps only the asked market's orders whatever the answer holds, and stops, saying that it did
not end, when a page brings no order it had not seen (an exchange that ignores ``page``) or
after :data:`MOST_PAGES` pages.

Pages are asked for ahead, so that a listing of many pages costs a round trip for every few
pages, not for each: one page at first, one more in flight after each full page, up to
:data:`MOST_AHEAD`. Answers are read in page order, whatever order they come back in. A listing
that fits one page asks for no page past its end beyond the empty one; a longer one for at
most ``MOST_AHEAD - 1`` more (given up when the end is found: they spend budget, change
nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Final

import attrs

from .._errors import ConnectError, OutcomeUnknownError
from .._http.session import OPEN_ORDERS, UpbitSession, check_market_code, open_orders_params
from .._http.transport import Observer
from .._log import log as _log
from .._models import Order

if TYPE_CHECKING:
    from .ledger import Ledger

__all__ = [
    "MOST_AHEAD",
    "MOST_PAGES",
    "PAGE_SIZE",
    "Listing",
    "NotYetCanceled",
    "check_market",
    "list_open",
]


#: Orders asked for per page of the listing (the most Upbit gives).
PAGE_SIZE: Final = 100
#: Pages one listing asks for at most (30,000 orders at 100 a page).
MOST_PAGES: Final = 300
#: Pages of one listing in flight at once, at most.
MOST_AHEAD: Final = 8
#: Attempts at one page: a listing changes nothing, so a failed one is asked again.
_LISTING_ATTEMPTS: Final = 3
#: Pause before asking a failed page again, doubling.
_FIRST_PAUSE: Final = 0.1


@attrs.frozen
class Listing:
    """What one listing found."""

    #: The uuids of the open orders found, each once, in the order listed.
    uuids: tuple[str, ...]
    #: Whether the listing came to its end (an empty page); ``False`` when it stopped early.
    ended: bool


class NotYetCanceled(Collection[str]):
    """The uuids of a listing that the operation's ledger does not hold yet, as of when each is
    read: an order the batch lane cancels meanwhile is skipped if it has not been read."""

    __slots__ = ("_ledger", "_uuids")

    def __init__(self, uuids: Sequence[str], ledger: Ledger) -> None:
        self._uuids = uuids
        self._ledger = ledger

    def __iter__(self) -> Iterator[str]:
        ledger = self._ledger
        return (uuid for uuid in self._uuids if uuid not in ledger)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, value: object) -> bool:
        return value in self._uuids and value not in self._ledger

    def any(self) -> bool:
        """Whether any uuid is left to cancel now."""
        return next(iter(self), None) is not None


def check_market(market: object) -> None:
    """A ``TypeError``/``ValueError`` unless ``market`` is ``None`` or a market code."""
    if market is not None:
        check_market_code("market", market)


async def list_open(
    session: UpbitSession, market: str | None, *, observer: Observer | None = None
) -> Listing:
    """Every open order of the account (in ``market``), page after page until an empty one."""
    ahead: dict[int, asyncio.Task[list[Order]]] = {}
    try:
        return await _list(session, market, observer, ahead)
    finally:
        # Pages asked for past the end (or past an error): given up.
        for task in ahead.values():
            task.cancel()
        if ahead:
            await asyncio.wait(ahead.values())
            for task in ahead.values():
                if not task.cancelled():
                    task.exception()  # retrieved: a page past the end failing says nothing


async def _list(
    session: UpbitSession,
    market: str | None,
    observer: Observer | None,
    ahead: dict[int, asyncio.Task[list[Order]]],
) -> Listing:
    found: dict[str, None] = {}
    other_markets = 0
    window = 1
    asked = 0
    for page in range(1, MOST_PAGES + 1):
        while asked < MOST_PAGES and asked < page - 1 + window:
            asked += 1
            ahead[asked] = asyncio.create_task(_page(session, market, asked, observer))
        # Kept among those ahead until it is done, so that whatever interrupts the wait gives
        # it up with the others.
        orders = await ahead[page]
        del ahead[page]
        if len(orders) >= PAGE_SIZE:
            window = min(window + 1, MOST_AHEAD)
        if not orders:
            return Listing(tuple(found), ended=True)
        before = len(found)
        for order in orders:
            if market is not None and order.market != market:
                other_markets += 1
                continue
            found.setdefault(order.uuid, None)
        if other_markets:
            _log.warning(
                "the listing of %s's open orders held %d order(s) of other markets; they are "
                "left alone",
                market,
                other_markets,
            )
            other_markets = 0
        if len(found) == before and any(_kept(order, market) for order in orders):
            _log.warning(
                "page %d of the open orders held none not already listed: the listing is "
                "stopped, and did not end",
                page,
            )
            return Listing(tuple(found), ended=False)
    _log.warning("the listing of open orders did not end within %d pages", MOST_PAGES)
    return Listing(tuple(found), ended=False)


def _kept(order: Order, market: str | None) -> bool:
    return market is None or order.market == market


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
