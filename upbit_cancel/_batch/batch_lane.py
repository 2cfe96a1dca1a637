"""The batch lane of ``cancel_open``: batch cancels, each as soon as its group allows.

Upbit's batch cancel (``DELETE /v1/orders/open``) cancels up to 300 ``wait`` orders chosen by
filter in one call, in a rate-limit group of its own (``order-cancel-all``, 1 call per 2 s),
outside the ``default`` budget that the list lane (listings and list cancels) spends. The lane
asks for the newest orders first, so that it works from the other end of the book than the
list lane, which lists oldest first; every order an answer names is a success of the
operation, through :meth:`Ledger.batch_canceled`.

It stops when an answer cancels fewer orders than asked for (no ``wait`` order of the market is
left to it), when ``stop`` is set (the list lane is done), after an error that stops the
account, or after :data:`_MOST_FAILURES` failed calls in a row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from .._errors import NotSentError, OutcomeUnknownError, UpbitError, stops_the_account
from .._http.session import CANCEL_OPEN, MAX_BATCH_CANCEL, UpbitSession, batch_cancel_params
from .._log import log as _log
from .ledger import Ledger

__all__ = ["batch_lane"]

#: Failed calls in a row after which the lane gives up (the list lane carries on alone).
_MOST_FAILURES: Final = 3


class _Call:
    """One batch cancel's attempts, as the transport reports them: counted in the ledger, and
    whether one left and got no answer (a 429 is an answer: it was not processed)."""

    __slots__ = ("_ledger", "mark", "unanswered")

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        #: The ledger's mark when the first attempt left (see Ledger.batch_leaving).
        self.mark: int | None = None
        #: Whether an attempt left and no answer to it came back (yet).
        self.unanswered = False

    def sending(self) -> None:
        if self.mark is None:
            self.mark = self._ledger.batch_leaving()
        self.unanswered = True

    def ended(self, *, sent: bool, status: int | None) -> None:
        if status is not None:
            self.unanswered = False
        self._ledger.ended(sent=sent, status=status)

    def lost(self) -> None:
        """The call ended without a usable answer to an attempt that left."""
        self._ledger.batch_unanswered(self.mark or 0)


async def batch_lane(
    session: UpbitSession,
    ledger: Ledger,
    market: str | None,
    *,
    stop: asyncio.Event,
    report: Callable[[], None],
) -> UpbitError | None:
    """Batch-cancel the ``wait`` orders of ``market`` (or of every market) until none is left
    to it or ``stop`` is set; return the error that stopped the account, if one did."""
    params = batch_cancel_params(
        pairs=None if market is None else [market], count=MAX_BATCH_CANCEL, order_by="desc"
    )
    failures = 0
    while not stop.is_set():
        call = _Call(ledger)
        try:
            answer = await session._call(CANCEL_OPEN, params=params, stop=stop, observer=call)
        except asyncio.CancelledError:
            if call.unanswered:
                # Given up in flight: it may have canceled orders that only its answer named.
                call.lost()
            raise
        except NotSentError as error:
            if stop.is_set():
                return None
            _log.warning("the batch lane stops: %s", error)
            return error if stops_the_account(error) else None
        except UpbitError as error:
            if isinstance(error, OutcomeUnknownError):
                call.lost()
            if stops_the_account(error):
                _log.warning("the batch lane stops: %s", error)
                return error
            failures += 1
            if failures >= _MOST_FAILURES:
                _log.warning("the batch lane stops after %d failed calls: %s", failures, error)
                return None
            _log.info("a batch cancel failed (%s); the next one goes when its group allows", error)
            continue
        failures = 0
        ledger.batch_canceled(answer.success.orders)
        report()
        if answer.success.count < MAX_BATCH_CANCEL:
            return None
    return None
