"""Confirmation: what became of every order of an operation, learned into its ledger.

A cancel in ``success`` means the exchange *accepted* the cancel: the order may still fill before
the cancel takes effect, and an id left unresolved (a lost answer, a 5xx) may or may not have
been canceled. Only a query tells. Confirmation asks ``GET /v1/orders/uuids`` about every
well-formed id (100 per request, within the same budget as the cancels), cancels again the
orders it finds still open that no accepted cancel covers (their state is known now, so this is
no blind retry), and asks again about the orders still open until they close or the time is up.

What it learns goes into the operation's ledger: each id's state, the second cancels' answers,
and the place of an unresolved id whose order the exchange reported closed or unknown.

With a :class:`~upbit_cancel._batch.push.Push`, the final states the order stream delivered are
learned first, without a query: an operation whose stream was up before its first cancel waits
for the accepted cancels' final states to be pushed (``push.wait``), and asks only about the ids
still silent; before each later round of questions, what was pushed meanwhile is learned too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from .._errors import ResponseTimeoutError, UpbitError, stops_the_account
from .._http.session import ORDERS_BY_IDS, UpbitSession
from .._ids import MAX_IDS_PER_QUERY, Ids, Kind
from .._models import Order, UnresolvedOrder, may_fill
from .ledger import Ledger
from .matching import Placement
from .push import Push

__all__ = ["confirm"]

#: Queries in progress at once.
_QUERIES_IN_FLIGHT = 10
#: First pause between two rounds of questions, and the longest.
_FIRST_PAUSE, _LONGEST_PAUSE = 0.1, 1.0

#: Cancels ids of the ledger again (a run whose answers revise them).
Recancel = Callable[[list[str]], Awaitable[None]]


async def _ask(
    session: UpbitSession, ledger: Ledger, ids: Sequence[str]
) -> tuple[set[str], UpbitError | None]:
    """Ask about ``ids`` and tell the ledger; returns the ids learned and an error that stops
    every query, if one came."""
    kind: Kind = ledger.kind
    learned: set[str] = set()
    fatal: list[UpbitError] = []
    size = MAX_IDS_PER_QUERY
    chunks = iter([ids[start : start + size] for start in range(0, len(ids), size)])

    async def worker() -> None:
        for chunk in chunks:
            if fatal:
                return
            try:
                orders = await session._call(
                    ORDERS_BY_IDS, ids=Ids(kind, tuple(chunk)), observer=ledger
                )
            except UpbitError as error:
                for value in chunk:
                    ledger.unlearned(value, error)
                if stops_the_account(error):
                    fatal.append(error)
                continue
            known = {_key(kind, order): order for order in orders}
            # An answer may leave out the identifier: then the order is known by its uuid, when
            # a cancel's answer gave it.
            by_uuid = {order.uuid: order for order in orders} if kind == "identifiers" else {}
            for value in chunk:
                order = known.get(value)
                if order is None and by_uuid:
                    order = by_uuid.get(ledger.uuid_of(value) or "")
                ledger.learn(value, order)
                learned.add(value)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(_QUERIES_IN_FLIGHT, len(ids) // MAX_IDS_PER_QUERY + 1)):
            group.create_task(worker())
    return learned, (fatal[0] if fatal else None)


def _hopeless(entry: Placement | None) -> bool:
    """Whether the id's cancel failed for a reason that fails every cancel of the account."""
    return (
        entry is not None
        and isinstance(entry[1], UnresolvedOrder)
        and entry[1].error is not None
        and stops_the_account(entry[1].error)
    )


def _retry(entry: Placement | None) -> bool:
    """Whether an order found open deserves a second cancel: none was accepted, and one may be."""
    return entry is not None and entry[0] == "unresolved" and not _hopeless(entry)


async def _round(
    session: UpbitSession,
    ledger: Ledger,
    asking: Sequence[str],
    ids: Sequence[str],
    recancel: Recancel,
    deadline: float,
) -> UpbitError | None:
    """One round of questions about ``asking``, then the second cancels of every id of ``ids``
    found open with no accepted cancel; the error after which nothing more can be learned, if
    one came."""
    _, fatal = await _ask(session, ledger, asking)
    if fatal is not None:
        return fatal
    again = [
        value for value in ids if may_fill(ledger.state(value)) and _retry(ledger.place(value))
    ]
    if again and asyncio.get_running_loop().time() < deadline:
        # Known to be open and covered by no accepted cancel: cancel it again.
        await recancel(again)
        ledger.recanceled(again)
    return None


def _accepted(entry: Placement | None) -> bool:
    return entry is not None and entry[0] == "success"


def _known_final(state: str | None) -> bool:
    return state is not None and not may_fill(state)


def _key(kind: Kind, order: Order) -> str | None:
    return order.uuid if kind == "uuids" else order.identifier


async def confirm(
    ledger: Ledger,
    *,
    session: UpbitSession,
    recancel: Recancel,
    within: float,
    push: Push | None = None,
    pushed_first: bool = False,
) -> None:
    """Learn the final state of every well-formed id of ``ledger`` (see the module docstring).

    ``recancel(ids)`` cancels ids again, revising them in the ledger; ``within`` seconds bound
    the whole confirmation, second cancels included. With ``push`` and ``pushed_first`` (its
    stream was started with the operation), the accepted cancels' final states are awaited by
    push before they are asked about, while the rounds of questions and second cancels go on
    for every other id. The ledger is confirmed once it returns.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    ids = ledger.well_formed()
    ledger.asking(ids)
    pause = _FIRST_PAUSE
    awaited: set[str] = set()
    waiting: asyncio.Task[None] | None = None
    if push is not None:
        push.learn(ledger, ids)
        if pushed_first:
            # The accepted cancels' final states are awaited by push, while the rounds of
            # questions (and second cancels) go on for every other id.
            awaited = {
                value
                for value in ids
                if _accepted(ledger.place(value)) and not _known_final(ledger.state(value))
            }
            waiting = asyncio.ensure_future(push.wait(ledger, sorted(awaited), deadline))

    def pending(value: str) -> bool:
        return waiting is not None and not waiting.done() and value in awaited

    asking = [
        value for value in ids if not _known_final(ledger.state(value)) and not pending(value)
    ]
    fatal: UpbitError | None = None
    asked: set[str] = set()
    try:
        while True:
            if asking:
                asked.update(asking)
                fatal = await _round(session, ledger, asking, ids, recancel, deadline)
                if fatal is not None:
                    break
            # Still open with a cancel accepted, refused as under way, or to be tried again: it
            # may close. One whose cancel the exchange will not take (the key, a block) will not.
            asking = [
                value
                for value in ids
                if (
                    ledger.state(value) is None
                    or (may_fill(ledger.state(value)) and not _hopeless(ledger.place(value)))
                )
                and not pending(value)
            ]
            if not asking and waiting is not None and not waiting.done():
                await waiting
                # What the push left silent is asked about at once, once at least, whatever
                # the time left (as the first round of questions is).
                asking = [value for value in awaited if not _known_final(ledger.state(value))]
                continue
            left = deadline - loop.time()
            if asking and left <= 0:
                # Out of time: an id never asked about (the push left it silent) is asked once.
                asking = [value for value in asking if value not in asked]
                if asking:
                    continue
            if not asking or left <= 0:
                break
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 1.5, _LONGEST_PAUSE)
            if push is not None:
                push.learn(ledger, asking)
                asking = [value for value in asking if not _known_final(ledger.state(value))]
        if waiting is not None:
            await waiting  # pushes still come when questions cannot be asked any more
    finally:
        if waiting is not None and not waiting.done():
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
    if push is not None:
        push.learn(ledger, [value for value in ids if ledger.state(value) is None])
    if fatal is not None:
        # Nothing more can be learned: every id still unknown keeps this reason.
        for value in ids:
            if ledger.state(value) is None:
                ledger.unlearned(value, fatal)
    for value in ids:
        if ledger.state(value) is None and not ledger.has_reason(value):
            ledger.unlearned(
                value,
                ResponseTimeoutError(
                    f"its state was not learned within {within:g} s", ids=(value,)
                ),
            )
    ledger.confirmed = True
