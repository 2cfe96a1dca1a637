"""Instrumentation: what the library reports as it works, to the instruments a program installs.

Scope: the events (frozen values), the :class:`Instrument` protocol, the process-wide list of
instruments, and :func:`emit`, which the rooms call at the one place each event happens:

    RequestEnded          _http/transport.py   every attempt of a signed request, sent or not
    BudgetWaited          _http/transport.py   every attempt granted a slot: the wait for it
    BudgetStoreChanged    _limiter/shared      a shared budget's store out of reach, back, lost
    OperationEnded        _batch/canceller.py  every operation of a BatchCanceller, at its end

An instrument is called synchronously in the event loop, so it must be quick (update a metric,
append to a list). One that raises is logged once and never stops the library. With no
instrument installed, an event is not even made (:func:`instrumented` is checked first).
Ready-made instruments are in :mod:`upbit_cancel.instrumentation`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol, TypeAlias

import attrs

from ._log import log as _log

__all__ = [
    "BudgetStoreChanged",
    "BudgetWaited",
    "Event",
    "Instrument",
    "OperationEnded",
    "RequestEnded",
    "emit",
    "get_instruments",
    "instrumented",
    "set_instruments",
]

#: What became of one attempt of a request: ``ok`` (2xx), ``rate_limited`` (429), ``blocked``
#: (418), ``refused`` (another status under 500), ``server_error`` (5xx), ``lost`` (sent, no
#: answer: its outcome is unknown), ``not_sent`` (never left: the budget refused it, the
#: account is blocked, the caller stopped or cancelled it, the session closed).
RequestOutcome: TypeAlias = Literal[
    "ok", "rate_limited", "blocked", "refused", "server_error", "lost", "not_sent"
]
#: What happened to a shared budget's store: ``out_of_reach`` (this process now allows itself
#: its fallback share, or waits if it has none), ``back`` (the store answers again), ``lost``
#: (the store lost the budget's state: nothing is granted until what was granted before can
#: no longer count).
StoreChange: TypeAlias = Literal["out_of_reach", "back", "lost"]
#: A :class:`~upbit_cancel.BatchCanceller` operation.
Operation: TypeAlias = Literal["cancel", "cancel_open", "confirm", "stream"]


@attrs.frozen
class RequestEnded:
    """One attempt of a signed request ended (a 429 retried is two attempts)."""

    #: Its rate-limit group (``"default"``, ``"order-cancel-all"``).
    group: str
    #: ``"DELETE"``, ``"GET"``.
    method: str
    #: The endpoint, such as ``"/v1/orders/uuids"`` (never the query: it holds ids).
    path: str
    outcome: RequestOutcome
    #: The HTTP status, if an answer came.
    status: int | None = None
    #: Seconds from the attempt's start (its slot granted) to its end (its answer, or the
    #: moment it was given up), if it was sent.
    seconds: float | None = None


@attrs.frozen
class BudgetWaited:
    """A request was granted a slot of its group's budget (told when its attempt ends, just
    before its :class:`RequestEnded`)."""

    group: str
    #: Seconds from asking for the slot until it was granted (0 when one was free), a lapsed
    #: grant of a shared budget and the wait for another included.
    seconds: float


@attrs.frozen
class BudgetStoreChanged:
    """The store that holds a shared budget (the host's file, Redis) changed state."""

    group: str
    #: ``"host"`` (the host-wide file) or ``"redis"``.
    store: Literal["host", "redis"]
    change: StoreChange
    #: For ``out_of_reach``: the requests per window this process allows itself meanwhile
    #: (0: none, it waits for the store).
    share: int | None = None


@attrs.frozen
class OperationEnded:
    """An operation of a :class:`~upbit_cancel.BatchCanceller` ended, returned or raised."""

    operation: Operation
    #: Ids whose cancel the exchange accepted.
    canceled: int
    #: Ids whose cancel the exchange refused.
    refused: int
    #: Ids whose fate is unknown.
    unresolved: int
    #: Requests it sent, retries included; 429 answers among them.
    requests: int
    rate_limited: int
    #: Seconds from its start to its end.
    seconds: float
    #: The name of the exception that ended it (``"CancelledError"`` included), or ``None``
    #: when it returned.
    error: str | None


Event: TypeAlias = RequestEnded | BudgetWaited | BudgetStoreChanged | OperationEnded


class Instrument(Protocol):
    """Anything called with each :data:`Event`: ``def __call__(self, event) -> None``."""

    def __call__(self, event: Event, /) -> None: ...


_instruments: tuple[Instrument, ...] = ()
_failed: set[int] = set()


def set_instruments(instruments: Iterable[Instrument]) -> None:
    """Install ``instruments`` for the whole process, replacing those installed before (an
    empty list removes them all)."""
    global _instruments
    chosen = tuple(instruments)
    for instrument in chosen:
        if not callable(instrument):
            raise TypeError(
                f"an instrument must be callable with an event, not {type(instrument).__name__}"
            )
    _instruments = chosen
    # Forget the failures of instruments no longer installed (the others stay logged once).
    _failed.intersection_update(id(instrument) for instrument in chosen)


def get_instruments() -> tuple[Instrument, ...]:
    """The instruments installed now."""
    return _instruments


def instrumented() -> bool:
    """Whether any instrument is installed (check it before making an event)."""
    return bool(_instruments)


def emit(event: Event) -> None:
    """Give ``event`` to every instrument; one that raises is logged (once) and skipped."""
    for instrument in _instruments:
        try:
            instrument(event)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:
            # A CancelledError here is the instrument's own (a task is only cancelled at an
            # await, and this call has none): it must not pass for the caller's cancellation.
            if id(instrument) not in _failed:
                _failed.add(id(instrument))
                _log.exception(
                    "the instrument %r raised on %s; the library goes on (logged once)",
                    instrument,
                    type(event).__name__,
                )
