"""BatchCanceller: cancel any number of orders, and account for every id.

Each public call is one operation with one :class:`Ledger`, which every stage of it feeds: the
runs of cancels (``run``), the listings of ``cancel_open`` (``listing``) and the confirmation
(``confirm``). The canceller only starts operations, keeps their ledgers reachable (by task, and
the latest), and reads their results.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Iterable

import attrs

from .._check import seconds, whole_number
from .._http.session import UpbitSession
from .._ids import chosen_ids
from .._instrument import Operation, OperationEnded, emit, instrumented
from .._log import log as _log
from .._models import BatchResult, ChunkResult, Progress
from .batch_lane import batch_lane
from .confirm import confirm
from .ledger import Intake, Ledger
from .listing import NotYetCanceled, check_market, list_open
from .push import STREAM_WAIT, Push, start_push
from .run import RunSettings, execute, interrupted, stopped

__all__ = ["BatchCanceller"]


#: Pauses before listing again while listed orders' accepted cancels take effect: doubling
#: from the first to the last (2.3 s in all), then the listing counts as not complete.
_SETTLE_PAUSE = 0.075
_SETTLE_PAUSE_MOST = 1.2

#: Seconds the batch lane carries on at most once the list lane ended by an error.
BATCH_LANE_AFTER_ERROR = 30.0


async def _wind_down(lane: asyncio.Task[object], stop: asyncio.Event, error: BaseException) -> None:
    """The batch lane once the list lane ended by ``error``.

    After an error (a listing that kept failing, a key that may not list), the batch lane is
    what still cancels: it carries on until it ends by itself (nothing left to it, or its own
    errors), for :data:`BATCH_LANE_AFTER_ERROR` seconds at most; then it sends nothing more
    and its call in flight ends by itself. When the operation is cancelled (or the process
    stops), it sends nothing more and its call in flight is given up."""
    if isinstance(error, Exception):
        try:
            await asyncio.wait({lane}, timeout=BATCH_LANE_AFTER_ERROR)
            stop.set()
            await asyncio.wait({lane})
            return
        except asyncio.CancelledError:
            stop.set()
            await stopped(lane)
            raise
    stop.set()
    await stopped(lane)


class BatchCanceller:
    """Cancel any number of orders through one session, accounting for every id.

    The ids are deduplicated (first occurrence wins), cut into requests of 20 and sent
    concurrently through the session's limiter, so the batch runs as fast as the account's
    budget allows. Every distinct id ends in exactly one of ``success``, ``failed`` or
    ``unresolved``: malformed ids are never sent and come back unresolved with an
    :class:`InvalidIdError`; a request that fails leaves its ids unresolved with the error while
    the other requests carry on; after a fatal error (authentication refused, key without
    permission, a 418 block, the session closed) nothing more is sent and the rest is
    unresolved with that error.

    Every call (``cancel``, ``stream``, ``confirm``, ``cancel_open``) is one operation with a
    ledger of its own: its result counts its own requests and 429s only, and one canceller may
    run several operations at once. What an operation established so far, also when it raised
    or was cancelled, is :meth:`result_of` the task that ran it (:attr:`last_result`: of the
    latest operation).

    Example::

        async with UpbitSession(access_key, secret_key, region="sg") as session:
            canceller = BatchCanceller(session)
            result = await canceller.cancel(uuids=order_ids)
            print(result.success.count, result.failed.count, result.unresolved.count)

    Args:
        session: The session to send through (its limiter paces the batch).
        on_progress: Called with a :class:`Progress` after every chunk; what it raises is
            logged and the batch carries on.
        retry_ambiguous: Retry a request that got no usable answer (timeout, dropped
            connection, 5xx, garbled body) up to ``ambiguous_retries`` times. The ids that the
            retry reports as failed are listed in ``possibly_canceled``: the unanswered attempt
            may have canceled them. Off by default, since such ids are safest reported as
            unresolved for the caller to check.
        ambiguous_retries: How many times ``retry_ambiguous`` retries one request.
        max_in_flight: Requests in progress at once (waiting for the limiter included); bounds
            the batch's memory and tasks whatever the number of ids. Default: twice the
            limiter's capacity, at most 200, and no more than the input has requests.
        confirm_timeout: Seconds a confirmation keeps asking about orders still open after
            their cancel was accepted, and may start second cancels (see :meth:`confirm`). The
            first round of questions always runs to its end: one request per 100 ids, within
            the account's budget (about 3 s for 10,000 ids).
        confirm_via: ``"push"`` (the default): a confirming operation subscribes to the
            account's private order stream as it starts, learns the
            final states it pushes without a question, and asks by REST only about the ids it
            leaves silent (closed before the subscription, refused, events missed, the stream
            down or quiet for 1 s). The cancels wait 0.25 s at most for the subscription.
            ``"query"``: every state is asked about by REST.
    """

    __slots__ = (
        "_by_task",
        "_confirm_timeout",
        "_confirm_via",
        "_latest",
        "_session",
        "_settings",
    )

    def __init__(
        self,
        session: UpbitSession,
        *,
        on_progress: Callable[[Progress], object] | None = None,
        retry_ambiguous: bool = False,
        ambiguous_retries: int = 2,
        max_in_flight: int | None = None,
        confirm_timeout: float = 5.0,
        confirm_via: str = "push",
    ) -> None:
        if not isinstance(session, UpbitSession):
            raise TypeError(f"session must be an UpbitSession, not {type(session).__name__}")
        if on_progress is not None and not callable(on_progress):
            raise TypeError(f"on_progress must be a function of Progress, not {on_progress!r}")
        whole_number("ambiguous_retries", ambiguous_retries)
        if max_in_flight is not None:
            whole_number("max_in_flight", max_in_flight, least=1)
        self._confirm_timeout = seconds("confirm_timeout", confirm_timeout, zero=True)
        if confirm_via not in ("push", "query"):
            raise ValueError(f"confirm_via must be 'push' or 'query', not {confirm_via!r}")
        self._confirm_via = confirm_via
        self._session = session
        self._settings = RunSettings(
            on_progress=on_progress,
            ambiguous_retries=ambiguous_retries if retry_ambiguous else 0,
            max_in_flight=max_in_flight,
        )
        self._latest: Ledger | None = None
        self._by_task: weakref.WeakKeyDictionary[asyncio.Task[object], Ledger] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def last_result(self) -> BatchResult | None:
        """What the latest operation started through this canceller established, also while it
        runs and when it was interrupted (``None`` before the first).

        After :meth:`cancel`: its whole result, also when it raised or was cancelled. After
        :meth:`stream`: the ids it read but did not hand over (empty when every chunk was
        yielded). Ids of an interrupted batch whose request was in flight are unresolved with
        an :class:`OutcomeUnknownError`, ids not yet sent with a :class:`NotSentError`; a
        collection's ids not yet read are listed as not sent, an iterator's are not read.
        When operations run at once, each one's is :meth:`result_of` its task.
        """
        return None if self._latest is None else self._latest.result(time.monotonic())

    def result_of(self, task: asyncio.Task[object] | None = None) -> BatchResult | None:
        """What the latest operation that ``task`` (default: the current task) ran through this
        canceller established, as :attr:`last_result` says; ``None`` if it ran none.

        Operations that run at once in different tasks never see each other's results.

        Example::

            task = asyncio.create_task(canceller.cancel(uuids=order_ids))
            ...
            task.cancel()
            partial = canceller.result_of(task)
        """
        if task is None:
            task = asyncio.current_task()
        ledger = None if task is None else self._by_task.get(task)
        return None if ledger is None else ledger.result(time.monotonic())

    def _begin(self, ledger: Ledger) -> Ledger:
        """``ledger``'s operation starts: reachable as the latest, and by its task."""
        self._latest = ledger
        task = asyncio.current_task()
        if task is not None:
            self._by_task[task] = ledger
        return ledger

    def _end(
        self,
        ledger: Ledger,
        operation: Operation,
        error: BaseException | None,
        handed: tuple[int, int, int] = (0, 0, 0),
    ) -> None:
        """``ledger``'s operation ended, by ``error`` if it raised: the instruments are told,
        with the ids ``handed`` over already (canceled, refused, unresolved: a stream's) besides
        those of the ledger."""
        now = time.monotonic()
        ledger.close(now)
        if instrumented():
            result = ledger.result(now)
            emit(
                OperationEnded(
                    operation,
                    canceled=handed[0] + result.success.count,
                    refused=handed[1] + result.failed.count,
                    unresolved=handed[2] + len(result.unresolved),
                    requests=result.requests,
                    rate_limited=result.rate_limited,
                    seconds=result.elapsed,
                    error=None if error is None else type(error).__name__,
                )
            )

    async def cancel(
        self,
        *,
        uuids: Iterable[str] | None = None,
        identifiers: Iterable[str] | None = None,
        confirm: bool = False,
    ) -> BatchResult:
        """Cancel every order named by ``uuids`` or ``identifiers`` (any iterable, any length).

        Does not raise for failed requests: look at ``result.unresolved``, or call
        ``result.raise_for_unresolved()``. If the iterable itself raises, every id it gave
        before is still sent and settled, then its error is raised (the result is in
        :attr:`last_result`). With ``confirm=True`` the result also says what became of each
        order (see :meth:`confirm`).
        """
        kind, values = chosen_ids(uuids, identifiers)
        ledger = self._begin(Ledger(kind, started=time.monotonic()))
        push = self._start_push() if confirm else None
        error: BaseException | None = None
        try:
            if push is not None:
                try:
                    await push.stream.ready(within=STREAM_WAIT, first_try=True)
                except asyncio.CancelledError:
                    # Cancelled before the first cancel: a collection's ids are not sent.
                    Intake(ledger, values).finish(interrupted, drain=True)
                    raise
            await self._run(ledger, values)
            if confirm:
                await self._confirm(ledger, self._confirm_timeout, push, pushed_first=True)
        except BaseException as raised:
            error = raised
            raise
        finally:
            self._end(ledger, "cancel", error)
            if push is not None:
                await push.stream.aclose()
        return ledger.result(time.monotonic())

    async def confirm(
        self, result: BatchResult, *, confirm_timeout: float | None = None
    ) -> BatchResult:
        """``result`` with the final state of each of its well-formed ids.

        Asks the exchange (``GET /v1/orders/uuids``, 100 ids a request, within the account's
        budget) about every id in ``success``, ``failed`` and ``unresolved``. An order found
        still open that no accepted cancel covers (its request failed before it was processed,
        or its outcome was unknown) is canceled again, its state being known now: the lists
        then say what that second cancel answered, and ``result.recanceled`` names those ids.
        An unresolved id whose order the exchange reports closed or unknown leaves
        ``unresolved``: canceled (or ``prevented``) into ``success``, filled (``done``) or
        ``not_found`` into ``failed``; ``result.placed_by_confirmation`` names those ids.
        Orders still open after an accepted cancel are asked about again, at growing intervals,
        until they close or ``confirm_timeout`` (default: the canceller's) has passed since the
        confirmation began; second cancels start only before then. The first round of questions
        always runs to its end (one request per 100 ids). If the confirmation is interrupted
        (its task cancelled), :attr:`last_result` is ``result`` updated with what the second
        cancels sent so far answered.

        ``result.states`` maps each id to ``"cancel"``, ``"done"``, ``"wait"``, ``"watch"``,
        ``"prevented"``, ``"not_found"``, or ``None`` when it could not be learned
        (``result.state_errors`` says why: a key without the "order query" permission gets
        :class:`OutOfScopeError`); ``result.still_open`` lists the ids to act on.

        Example::

            result = await canceller.cancel(uuids=order_ids, confirm=True)
            for uuid in result.still_open:
                print("still open:", uuid, result.states[uuid])
        """
        if not isinstance(result, BatchResult):
            raise TypeError(f"result must be a BatchResult, not {type(result).__name__}")
        within = self._confirm_timeout
        if confirm_timeout is not None:
            within = seconds("confirm_timeout", confirm_timeout, zero=True)
        ledger = self._begin(Ledger.from_result(result, started=time.monotonic()))
        push = self._start_push()
        error: BaseException | None = None
        try:
            await self._confirm(ledger, within, push, pushed_first=False)
        except BaseException as raised:
            error = raised
            raise
        finally:
            self._end(ledger, "confirm", error)
            if push is not None:
                await push.stream.aclose()
        return ledger.result(time.monotonic())

    async def cancel_open(
        self,
        *,
        market: str | None = None,
        confirm: bool = False,
        rounds: int = 3,
        batch_cancel: bool = True,
    ) -> BatchResult:
        """Cancel every open order of the account, or of one ``market``, in two lanes at once.

        The list lane lists open orders (``GET /v1/orders/open``, ``wait`` and ``watch``, 100 a
        page, oldest first, until an empty page) and cancels them all by list; lists again, and
        cancels what is new and what is still listed open with no cancel known to be accepted
        (``result.recanceled``), until a listing shows nothing left to cancel or ``rounds``
        listings were made. With ``batch_cancel`` (the default) the batch lane runs beside it:
        a batch cancel (``DELETE /v1/orders/open``, up to 300 ``wait`` orders of the market,
        newest first) at once and then each time its own group's budget allows (1 call per
        2 s, outside the ``default`` budget), until one cancels fewer than 300 or the list lane
        is done. The list lane skips what the batch lane has canceled, and alone cancels
        ``watch`` orders (a batch cancel never touches them). ``batch_cancel=False``: the list
        lane alone.

        Every order an answer or a listing named is in the result once; an order one lane
        canceled and the other found already canceled is in ``success``
        (``result.batch_canceled`` names those the batch lane canceled). A batch cancel that got
        no usable answer may have canceled orders no listing showed: they are in no list, and
        ``result.batch_unanswered`` counts such calls. The requests count both lanes' and the
        listings'. ``result.listing_complete`` says whether the last listing came to its end and
        showed nothing left to cancel: only then is nothing left open that a listing could
        show. Orders of other markets are left alone. Orders placed meanwhile by the bot itself
        are canceled too when they show up in time: a kill switch stops placing orders first.
        Needs the "order query" permission to list (the batch lane, only "Make Orders"). A page
        of the listing that fails with a 5xx, a lost answer or no connection is asked again
        (three attempts); if it still fails, the batch lane carries on until it has nothing
        left to cancel (30 s at most), then that error is raised and :attr:`last_result` holds
        what was canceled. With ``confirm=True`` the union of both lanes' orders is confirmed
        (see :meth:`confirm`).

        Example::

            result = await canceller.cancel_open(market="SGD-BTC", confirm=True)
        """
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(
                f"rounds must be a whole number of listings, at least 1, not {rounds!r}"
            )
        if not isinstance(batch_cancel, bool):
            raise TypeError(f"batch_cancel must be True or False, not {batch_cancel!r}")
        check_market(market)
        ledger = self._begin(Ledger("uuids", started=time.monotonic()))
        ledger.listing_complete = False
        stop = asyncio.Event()
        lane: asyncio.Task[object] | None = None
        push = self._start_push() if confirm else None
        error: BaseException | None = None
        try:
            if push is not None:
                await push.stream.ready(within=STREAM_WAIT, first_try=True)
            if batch_cancel:
                report = functools.partial(self._report, ledger)
                lane = asyncio.create_task(
                    batch_lane(self._session, ledger, market, stop=stop, report=report)
                )
            listings = 0
            settle_pause = _SETTLE_PAUSE
            while listings < rounds:
                listing = await list_open(self._session, market, observer=ledger)
                new = NotYetCanceled(listing.uuids, ledger)
                # Listed open, and no cancel of it is known to be accepted: canceled again.
                again = ledger.unresolved_among(listing.uuids)
                if not new.any() and not again:
                    # Listed, its cancel accepted and not in effect yet: while such orders
                    # close, the pages of a listing shift, and it may have skipped an order.
                    # Only a listing made once they have closed proves nothing is left.
                    settling = ledger.accepted_among(listing.uuids)
                    if settling and settle_pause <= _SETTLE_PAUSE_MOST:
                        await asyncio.sleep(settle_pause)
                        settle_pause *= 2
                        continue
                    ledger.listing_complete = listing.ended and not settling
                    break
                listings += 1
                if again:
                    ledger.recanceled(again)
                    await self._run(ledger, again, revising=True)
                await self._run(ledger, new, lanes=lane is not None)
            stop.set()
            if lane is not None:
                await lane
            if confirm:
                await self._confirm(ledger, self._confirm_timeout, push, pushed_first=True)
        except BaseException as raised:
            error = raised
            if lane is not None and not lane.done():
                await _wind_down(lane, stop, raised)
            raise
        finally:
            self._end(ledger, "cancel_open", error)
            if push is not None:
                await push.stream.aclose()
        return ledger.result(time.monotonic())

    def _report(self, ledger: Ledger) -> None:
        on_progress = self._settings.on_progress
        if on_progress is None:
            return
        try:
            on_progress(ledger.progress(None))
        except (Exception, asyncio.CancelledError):
            _log.exception("on_progress raised; the batch carries on")

    async def stream(
        self,
        *,
        uuids: Iterable[str] | None = None,
        identifiers: Iterable[str] | None = None,
    ) -> AsyncGenerator[ChunkResult, None]:
        """Yield each chunk's :class:`ChunkResult` as its request completes.

        Results are handed over, not kept: while the consumer is busy, no new request starts,
        so memory stays flat however many ids stream through (only the set of ids already seen,
        for deduplication, grows). Closing the generator, or cancelling the consumer, stops the
        batch: no further request starts, and :attr:`last_result` lists the ids read but not
        handed over. Close it with ``contextlib.aclosing`` so that leaving the loop early stops
        it at once.

        Example::

            async with contextlib.aclosing(canceller.stream(uuids=order_ids)) as chunks:
                async for chunk in chunks:
                    print(chunk.index, chunk.success.count, chunk.unresolved.count)
        """
        kind, values = chosen_ids(uuids, identifiers)
        ledger = self._begin(Ledger(kind, started=time.monotonic()))
        intake = Intake(ledger, values, streaming=True)
        # Bounded: when the consumer lags, workers wait to hand over their results instead of
        # piling them up, and no new request starts.
        queue: asyncio.Queue[ChunkResult] = asyncio.Queue(maxsize=1)
        runner = asyncio.create_task(execute(self._session, intake, self._settings, queue.put))
        getter: asyncio.Future[ChunkResult] | None = None
        error: BaseException | None = None
        handed = [0, 0, 0]  # canceled, refused, unresolved: what the consumer was given
        try:
            while True:
                if not queue.empty():
                    item = queue.get_nowait()
                elif runner.done():
                    break
                else:
                    getter = asyncio.ensure_future(queue.get())
                    await asyncio.wait({getter, runner}, return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        getter.cancel()
                        getter = None
                        continue
                    item = getter.result()
                    getter = None
                intake.hand_over(item.index)
                handed[0] += item.success.count
                handed[1] += item.failed.count
                handed[2] += len(item.unresolved)
                yield item
            runner.result()
            error = intake.input_error
        except BaseException as raised:
            error = raised
            raise
        finally:
            if getter is not None:
                getter.cancel()
            cancelled_again = await stopped(runner)
            intake.finish(interrupted, drain=False)
            if cancelled_again and error is None:
                error = asyncio.CancelledError()
            self._end(ledger, "stream", error, (handed[0], handed[1], handed[2]))
            if cancelled_again:
                raise asyncio.CancelledError
        if intake.input_error is not None:
            raise intake.input_error

    async def _run(
        self,
        ledger: Ledger,
        values: Iterable[object],
        *,
        revising: bool = False,
        lanes: bool = False,
    ) -> None:
        """One run of cancels into ``ledger``; what the input raised is raised once every id it
        gave is settled. Beside a batch lane (``lanes``) it reads no further ahead than one
        window of requests, so that little of what it reads is canceled meanwhile by the
        other lane."""
        intake = Intake(ledger, values, revising=revising)
        settings = self._settings
        if lanes and settings.max_in_flight is None:
            settings = attrs.evolve(settings, max_in_flight=self._session.limiter.capacity)
        try:
            await execute(self._session, intake, settings)
        finally:
            intake.finish(interrupted, drain=True)
        if intake.input_error is not None:
            raise intake.input_error

    def _start_push(self) -> Push | None:
        """The order stream of a confirming operation (``confirm_via="push"``), connecting."""
        if self._confirm_via != "push":
            return None
        return start_push(self._session)

    async def _confirm(
        self, ledger: Ledger, within: float, push: Push | None, *, pushed_first: bool
    ) -> None:
        async def recancel(ids: list[str]) -> None:
            await self._run(ledger, ids, revising=True)

        await confirm(
            ledger,
            session=self._session,
            recancel=recancel,
            within=within,
            push=push,
            pushed_first=pushed_first,
        )
