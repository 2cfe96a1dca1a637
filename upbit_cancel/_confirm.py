"""Confirmation: what became of every order after its cancel, and listing what is still open.

A cancel in ``success`` means the exchange *accepted* the cancel: the order may still fill before
the cancel takes effect, and an id left unresolved (a lost answer, a 5xx) may or may not have
been canceled. Only a query tells. Confirmation asks ``GET /v1/orders/uuids`` about every
well-formed id (100 per request, within the same budget as the cancels), cancels again the
orders it finds still open that no accepted cancel covers (their state is known now, so this is
no blind retry), and asks again about the orders still open until they close or the time is up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeAlias

import attrs

from ._errors import (
    AuthenticationError,
    BlockedError,
    ConnectError,
    InvalidIdError,
    NotSentError,
    OutcomeUnknownError,
    OutOfScopeError,
    ResponseTimeoutError,
    SessionClosedError,
    UpbitError,
)
from ._ids import MAX_IDS_PER_QUERY, CheckedIds, Kind
from ._models import OPEN_STATES, BatchResult, Order, OrderEntry, OrderList, UnresolvedOrder
from ._session import UpbitSession

__all__ = [
    "NOT_FOUND",
    "confirm_result",
    "list_open",
    "merge_results",
    "open_ids",
    "with_second_cancels",
]

#: The state of an id the exchange does not know.
NOT_FOUND = "not_found"

#: Queries in progress at once.
_QUERIES_IN_FLIGHT = 10
#: First pause between two rounds of questions, and the longest.
_FIRST_PAUSE, _LONGEST_PAUSE = 0.1, 1.0
#: Attempts at one page of open orders: a listing changes nothing, so a failed one is repeated.
_LISTING_ATTEMPTS = 3

Outcome: TypeAlias = tuple[str, OrderEntry | UnresolvedOrder]
Recancel: TypeAlias = Callable[[Kind, list[str]], Awaitable[BatchResult]]


def _outcomes(result: BatchResult) -> dict[str, Outcome]:
    """Each id of ``result`` with the list it is in and its entry, in the result's order."""
    outcomes: dict[str, Outcome] = {}
    for name, orders in (("success", result.success.orders), ("failed", result.failed.orders)):
        for entry in orders:
            key = entry.uuid if result.kind == "uuids" else entry.identifier
            if key is not None:
                outcomes[key] = (name, entry)
    for unresolved in result.unresolved:
        outcomes[unresolved.id] = ("unresolved", unresolved)
    return outcomes


def _rebuild(base: BatchResult, outcomes: dict[str, Outcome]) -> BatchResult:
    """``base`` with its lists made of ``outcomes``, in their order."""
    success: list[OrderEntry] = []
    failed: list[OrderEntry] = []
    unresolved: list[UnresolvedOrder] = []
    for name, entry in outcomes.values():
        if name == "unresolved":
            assert isinstance(entry, UnresolvedOrder)
            unresolved.append(entry)
        else:
            assert isinstance(entry, OrderEntry)
            (success if name == "success" else failed).append(entry)
    return attrs.evolve(
        base,
        success=OrderList(tuple(success)),
        failed=OrderList(tuple(failed)),
        unresolved=tuple(unresolved),
    )


def merge_results(kind: Kind, results: Sequence[BatchResult]) -> BatchResult:
    """One result from several batches over the ids of one kind: the latest word on each id.

    Each id appears once, where it first appeared; counters and times add up.
    """
    outcomes: dict[str, Outcome] = {}
    for result in results:
        outcomes.update(_outcomes(result))
    base = BatchResult(
        kind=kind,
        possibly_canceled=frozenset().union(*(result.possibly_canceled for result in results)),
        requests=sum(result.requests for result in results),
        rate_limited=sum(result.rate_limited for result in results),
        elapsed=sum(result.elapsed for result in results),
    )
    return _rebuild(base, outcomes)


def with_second_cancels(result: BatchResult, seconds: Sequence[BatchResult]) -> BatchResult:
    """``result`` updated with second cancels of some of its ids, for an interrupted confirmation.

    What a second cancel says replaces the first word on an id, unless the second request never
    left: then the first word (an unknown outcome, say) is still all there is to know.
    """
    outcomes = _outcomes(result)
    for second in seconds:
        for value, (name, entry) in _outcomes(second).items():
            if isinstance(entry, UnresolvedOrder) and isinstance(entry.error, NotSentError):
                continue
            outcomes[value] = (name, entry)
    return attrs.evolve(
        _rebuild(result, outcomes),
        possibly_canceled=result.possibly_canceled.union(
            *(second.possibly_canceled for second in seconds)
        ),
        requests=result.requests + sum(second.requests for second in seconds),
        rate_limited=result.rate_limited + sum(second.rate_limited for second in seconds),
    )


def _stops_everything(error: UpbitError) -> bool:
    if isinstance(error, AuthenticationError) and error.name == "invalid_query_payload":
        return False
    return isinstance(
        error, AuthenticationError | OutOfScopeError | BlockedError | SessionClosedError
    )


async def _ask(
    session: UpbitSession, kind: Kind, ids: Sequence[str]
) -> tuple[dict[str, str], dict[str, UpbitError], UpbitError | None]:
    """The states of ``ids``: learned ones, failed ones with why, and an error that stops all."""
    states: dict[str, str] = {}
    failures: dict[str, UpbitError] = {}
    fatal: list[UpbitError] = []
    size = MAX_IDS_PER_QUERY
    chunks = iter([ids[start : start + size] for start in range(0, len(ids), size)])

    async def worker() -> None:
        for chunk in chunks:
            if fatal:
                return
            checked = CheckedIds(chunk)
            try:
                if kind == "uuids":
                    orders = await session.orders(uuids=checked)
                else:
                    orders = await session.orders(identifiers=checked)
            except UpbitError as error:
                for value in chunk:
                    failures[value] = error
                if _stops_everything(error):
                    fatal.append(error)
                continue
            known = {_key(kind, order): order.state for order in orders}
            for value in chunk:
                states[value] = known.get(value, NOT_FOUND)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(_QUERIES_IN_FLIGHT, len(ids) // MAX_IDS_PER_QUERY + 1)):
            group.create_task(worker())
    return states, failures, (fatal[0] if fatal else None)


def _hopeless(outcome: Outcome) -> bool:
    """Whether the id's cancel failed for a reason that fails every cancel of the account."""
    _, entry = outcome
    return (
        isinstance(entry, UnresolvedOrder)
        and entry.error is not None
        and _stops_everything(entry.error)
    )


def _retry(outcome: Outcome) -> bool:
    """Whether an order found open deserves a second cancel: none was accepted, and one may be."""
    return outcome[0] == "unresolved" and not _hopeless(outcome)


def _key(kind: Kind, order: Order) -> str | None:
    return order.uuid if kind == "uuids" else order.identifier


async def confirm_result(
    result: BatchResult, *, session: UpbitSession, recancel: Recancel, within: float
) -> BatchResult:
    """``result`` with the final state of each well-formed id (see the module docstring).

    ``recancel(kind, ids)`` cancels ids again (a plain batch); ``within`` seconds bound the
    whole confirmation, second cancels included.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + within
    requests_before = session.requests_sent
    kind = result.kind
    outcomes = _outcomes(result)
    ids = [
        value
        for value, (name, entry) in outcomes.items()
        if not (isinstance(entry, UnresolvedOrder) and isinstance(entry.error, InvalidIdError))
    ]
    states: dict[str, str | None] = dict.fromkeys(ids)
    errors: dict[str, UpbitError] = {}
    recanceled: set[str] = set()
    extra_requests = extra_429s = 0
    pause = _FIRST_PAUSE
    asking = ids
    while asking:
        learned, failures, fatal = await _ask(session, kind, asking)
        states.update(learned)
        for value in learned:
            errors.pop(value, None)
        errors.update(failures)
        if fatal is not None:
            # Nothing more can be learned: every id not answered keeps this reason.
            for value in asking:
                if value not in learned:
                    errors[value] = fatal
            break
        again = [value for value in ids if states[value] in OPEN_STATES and _retry(outcomes[value])]
        if again and loop.time() < deadline:
            # Known to be open and covered by no accepted cancel: cancel it again.
            second = await recancel(kind, again)
            outcomes.update(_outcomes(second))
            recanceled.update(again)
            extra_requests += second.requests
            extra_429s += second.rate_limited
        # Still open with a cancel accepted, refused as under way, or to be tried again: it may
        # close. One whose cancel the exchange will not take (the key, a block) will not.
        asking = [
            value
            for value in ids
            if states[value] is None
            or (states[value] in OPEN_STATES and not _hopeless(outcomes[value]))
        ]
        left = deadline - loop.time()
        if not asking or left <= 0:
            break
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 1.5, _LONGEST_PAUSE)
    for value in ids:
        if states[value] is None and value not in errors:
            errors[value] = ResponseTimeoutError(
                f"its state was not learned within {within:g} s", ids=(value,)
            )
    queries = session.requests_sent - requests_before - extra_requests
    return attrs.evolve(
        _rebuild(result, outcomes),
        confirmed=True,
        states=states,
        state_errors={value: errors[value] for value in ids if states[value] is None},
        recanceled=frozenset(recanceled),
        requests=result.requests + extra_requests + max(0, queries),
        rate_limited=result.rate_limited + extra_429s,
        elapsed=result.elapsed + loop.time() - started,
    )


async def list_open(session: UpbitSession, market: str | None) -> list[Order]:
    """Every open order of the account (in ``market``), page after page until a short one."""
    found: list[Order] = []
    page = 1
    while True:
        orders = await _open_page(session, market, page)
        found += orders
        if len(orders) < 100:
            return found
        page += 1


async def _open_page(session: UpbitSession, market: str | None, page: int) -> list[Order]:
    """One page of open orders, asked again after a 5xx, a lost answer or no connection."""
    pause = _FIRST_PAUSE
    for _ in range(_LISTING_ATTEMPTS - 1):
        try:
            return await session.open_orders(market=market, page=page, limit=100)
        except (OutcomeUnknownError, ConnectError):
            await asyncio.sleep(pause)
            pause *= 2
    return await session.open_orders(market=market, page=page, limit=100)


def open_ids(orders: Iterable[Order]) -> list[str]:
    """The uuids of ``orders``, each once, in order."""
    return list(dict.fromkeys(order.uuid for order in orders))
