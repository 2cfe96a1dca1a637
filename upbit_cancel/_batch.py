"""BatchCanceller: cancel any number of orders, and account for every id.

The orchestration is small on purpose: workers take chunks from the ledger (which reads the
caller's input and owns every id), send each through the session, and settle it back. Whatever
is raised or cancelled where, the ledger settles what is still open when the batch ends, so no
id is ever lost. The batch stops on a fatal error by state, never by cancelling its workers: it
sets an event that every request checks while it waits for the limiter and before it is sent.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable

import attrs

from ._confirm import confirm_result, list_open, merge_results, open_ids, with_second_cancels
from ._errors import (
    AuthenticationError,
    BlockedError,
    ConnectError,
    NotSentError,
    OutcomeUnknownError,
    OutOfScopeError,
    SessionClosedError,
    UpbitError,
)
from ._ids import MAX_IDS_PER_REQUEST, CheckedIds, Kind, chosen_ids
from ._ledger import Chunk, Ledger
from ._models import BatchResult, CancelResult, ChunkResult, Progress
from ._session import UpbitSession

__all__ = ["BatchCanceller"]

_log = logging.getLogger("upbit_cancel")

#: Errors after which no further request can succeed: stop sending.
_FATAL = (AuthenticationError, OutOfScopeError, BlockedError, SessionClosedError)

#: Workers at most, whatever the limiter's capacity.
_MAX_WORKERS = 200


def _is_fatal(error: UpbitError) -> bool:
    # A hash mismatch concerns one request's query (an odd identifier), not the key.
    if isinstance(error, AuthenticationError) and error.name == "invalid_query_payload":
        return False
    return isinstance(error, _FATAL)


def _after_unknown(error: UpbitError, unknown: OutcomeUnknownError | None) -> UpbitError:
    """``error``, unless an earlier attempt got no usable answer: then the outcome is unknown."""
    if unknown is None or isinstance(error, OutcomeUnknownError):
        return error
    return OutcomeUnknownError(
        f"an earlier attempt got no usable answer ({unknown}); then {error}: the orders may "
        "or may not be canceled",
        ids=error.ids or unknown.ids,
    )


def _interrupted(chunk: Chunk) -> UpbitError:
    """Why a chunk still open when the batch was interrupted is unresolved."""
    if chunk.sent:
        return OutcomeUnknownError(
            "the batch was interrupted while this request was in flight; the orders may or may "
            "not be canceled",
            ids=chunk.valid,
        )
    return NotSentError("not sent: the batch was interrupted", ids=chunk.valid)


async def _stopped(runner: asyncio.Task[None]) -> bool:
    """Cancel ``runner`` if it still runs and wait until it has ended, whatever happens.

    The ledger can only be finished once no worker can settle a chunk any more, so a second
    cancellation while waiting is held back: returns whether one came.
    """
    cancelled_again = False
    if not runner.done():
        runner.cancel()
    while not runner.done():
        try:
            await asyncio.wait({runner})
        except asyncio.CancelledError:
            cancelled_again = True
            runner.cancel()
    if not runner.cancelled():
        runner.exception()  # retrieved: it is raised by the caller, or the consumer left early
    return cancelled_again


class _Run:
    """One ``cancel()`` or ``stream()``: its ledger, its stop event and its counters."""

    def __init__(
        self,
        session: UpbitSession,
        ledger: Ledger,
        on_progress: Callable[[Progress], object] | None,
    ) -> None:
        self.session = session
        self.ledger = ledger
        self.on_progress = on_progress
        self.stop = asyncio.Event()
        self.fatal: UpbitError | None = None
        self.started = time.monotonic()
        self.requests_before = session.requests_sent
        self.rate_limited_before = session.rate_limited

    def fail(self, error: UpbitError) -> None:
        """Stop sending after a fatal error: requests not yet sent will not be."""
        if self.fatal is None:
            self.fatal = error
            self.stop.set()
            _log.warning("stopping the batch: %s", error)

    def report(self) -> None:
        if self.on_progress is None:
            return
        ledger = self.ledger
        progress = Progress(
            done=ledger.done,
            total=ledger.total(),
            success=ledger.success,
            failed=ledger.failed,
            unresolved=ledger.unresolved,
            requests=self.session.requests_sent - self.requests_before,
        )
        try:
            self.on_progress(progress)
        except (Exception, asyncio.CancelledError):
            # A broken progress display must not abort an emergency cancel. A CancelledError
            # raised by a plain function is the callback's failure, never this task's
            # cancellation (which only arrives at an await).
            _log.exception("on_progress raised; the batch carries on")

    def result(self) -> BatchResult:
        return self.ledger.result(
            requests=self.session.requests_sent - self.requests_before,
            rate_limited=self.session.rate_limited - self.rate_limited_before,
            elapsed=time.monotonic() - self.started,
        )


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

    Example::

        async with UpbitSession(access_key, secret_key, region="sg") as session:
            canceller = BatchCanceller(session)
            result = await canceller.cancel(uuids=order_ids)
            print(result.success.count, result.failed.count, len(result.unresolved))

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
    """

    __slots__ = (
        "_ambiguous_retries",
        "_confirm_timeout",
        "_last_result",
        "_max_in_flight",
        "_on_progress",
        "_retry_ambiguous",
        "_session",
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
    ) -> None:
        if not isinstance(session, UpbitSession):
            raise TypeError(f"session must be an UpbitSession, not {type(session).__name__}")
        if on_progress is not None and not callable(on_progress):
            raise TypeError(f"on_progress must be a function of Progress, not {on_progress!r}")
        if isinstance(ambiguous_retries, bool) or not isinstance(ambiguous_retries, int):
            raise TypeError(f"ambiguous_retries must be a whole number, not {ambiguous_retries!r}")
        if ambiguous_retries < 0:
            raise ValueError("ambiguous_retries must be zero or more")
        if max_in_flight is not None:
            if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
                raise TypeError(f"max_in_flight must be a whole number, not {max_in_flight!r}")
            if max_in_flight < 1:
                raise ValueError("max_in_flight must be at least 1")
        if isinstance(confirm_timeout, bool) or not isinstance(confirm_timeout, int | float):
            raise TypeError(f"confirm_timeout must be a number of seconds, not {confirm_timeout!r}")
        if not 0 <= confirm_timeout < math.inf:
            raise ValueError(
                f"confirm_timeout must be zero or more seconds, not {confirm_timeout!r}"
            )
        self._confirm_timeout = float(confirm_timeout)
        self._session = session
        self._on_progress = on_progress
        self._retry_ambiguous = bool(retry_ambiguous)
        self._ambiguous_retries = ambiguous_retries
        self._max_in_flight = max_in_flight
        self._last_result: BatchResult | None = None

    @property
    def last_result(self) -> BatchResult | None:
        """What the latest :meth:`cancel` or :meth:`stream` left, also when it was interrupted.

        After :meth:`cancel`: its whole result, also when it raised or was cancelled. After
        :meth:`stream`: the ids it read but did not hand over (empty when every chunk was
        yielded). Ids of an interrupted batch whose request was in flight are unresolved with
        an :class:`OutcomeUnknownError`, ids not yet sent with a :class:`NotSentError`; a
        collection's ids not yet read are listed as not sent, an iterator's are not read.
        """
        return self._last_result

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
        result = await self._cancel(uuids=uuids, identifiers=identifiers)
        if confirm:
            result = await self.confirm(result)
        return result

    async def confirm(
        self, result: BatchResult, *, confirm_timeout: float | None = None
    ) -> BatchResult:
        """``result`` with the final state of each of its well-formed ids.

        Asks the exchange (``GET /v1/orders/uuids``, 100 ids a request, within the account's
        budget) about every id in ``success``, ``failed`` and ``unresolved``. An order found
        still open that no accepted cancel covers (its request failed before it was processed,
        or its outcome was unknown) is canceled again, its state being known now: the lists
        then say what that second cancel answered, and ``result.recanceled`` names those ids.
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
        within = self._confirm_timeout if confirm_timeout is None else confirm_timeout
        if not isinstance(result, BatchResult):
            raise TypeError(f"result must be a BatchResult, not {type(result).__name__}")

        # The second cancels' results, kept even if the confirmation is interrupted.
        seconds: list[BatchResult] = []

        async def recancel(kind: Kind, ids: list[str]) -> BatchResult:
            if kind == "uuids":
                return await self._cancel(uuids=ids, into=seconds)
            return await self._cancel(identifiers=ids, into=seconds)

        try:
            confirmed = await confirm_result(
                result, session=self._session, recancel=recancel, within=within
            )
        except BaseException:
            self._last_result = with_second_cancels(result, seconds)
            raise
        self._last_result = confirmed
        return confirmed

    async def cancel_open(
        self, *, market: str | None = None, confirm: bool = False, rounds: int = 3
    ) -> BatchResult:
        """Cancel every open order of the account, or of one ``market``.

        Lists open orders (``GET /v1/orders/open``, ``wait`` and ``watch``, 100 a page) and
        cancels them all; lists again, and cancels what is new, until a listing shows nothing
        new or ``rounds`` listings were made. Every order it found is in the result. Orders
        placed meanwhile by the bot itself are listed too when they show up in time: a kill
        switch stops placing orders first. Needs the "order query" permission to list. A page
        of the listing that fails with a 5xx, a lost answer or no connection is asked again (three
        attempts); if it still fails, that error is raised and :attr:`last_result` holds what
        was canceled before.

        Example::

            result = await canceller.cancel_open(market="SGD-BTC", confirm=True)
        """
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(
                f"rounds must be a whole number of listings, at least 1, not {rounds!r}"
            )
        results: list[BatchResult] = []
        handled: set[str] = set()
        self._last_result = None
        session = self._session
        requests_before, rate_limited_before = session.requests_sent, session.rate_limited
        started = time.monotonic()
        try:
            for _ in range(rounds):
                found = open_ids(await list_open(self._session, market))
                new = [uuid for uuid in found if uuid not in handled]
                if not new:
                    break
                handled.update(new)
                await self._cancel(uuids=new, into=results)
        finally:
            # Every round so far, the one interrupted included, and the listings' requests.
            self._last_result = attrs.evolve(
                merge_results("uuids", results),
                requests=session.requests_sent - requests_before,
                rate_limited=session.rate_limited - rate_limited_before,
                elapsed=time.monotonic() - started,
            )
        result = self._last_result
        if confirm:
            result = await self.confirm(result)
        return result

    async def _cancel(
        self,
        *,
        uuids: Iterable[str] | None = None,
        identifiers: Iterable[str] | None = None,
        into: list[BatchResult] | None = None,
    ) -> BatchResult:
        """One batch. Its result, partial or whole, becomes :attr:`last_result`, or is appended
        to ``into`` when it is part of a larger operation that keeps its own."""
        kind, values = chosen_ids(uuids, identifiers)
        ledger = Ledger(kind, values)
        run = _Run(self._session, ledger, self._on_progress)
        if into is None:
            self._last_result = None

        async def keep(result: ChunkResult) -> None:
            ledger.hand_over(result)

        try:
            await self._execute(run, keep)
        except BaseExceptionGroup as group:
            failure = group.exceptions[0] if len(group.exceptions) == 1 else group
            raise failure from None
        finally:
            ledger.finish(_interrupted, drain=True)
            result = run.result()
            if into is None:
                self._last_result = result
            else:
                into.append(result)
        if ledger.input_error is not None:
            raise ledger.input_error
        return result

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
                    print(chunk.index, chunk.success.count, len(chunk.unresolved))
        """
        kind, values = chosen_ids(uuids, identifiers)
        ledger = Ledger(kind, values, keep=False)
        run = _Run(self._session, ledger, self._on_progress)
        self._last_result = None
        # Bounded: when the consumer lags, workers wait to hand over their results instead of
        # piling them up, and no new request starts.
        queue: asyncio.Queue[ChunkResult] = asyncio.Queue(maxsize=1)
        runner = asyncio.create_task(self._execute(run, queue.put))
        getter: asyncio.Future[ChunkResult] | None = None
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
                ledger.hand_over(item)
                yield item
            try:
                runner.result()
            except BaseExceptionGroup as group:
                failure = group.exceptions[0] if len(group.exceptions) == 1 else group
                raise failure from None
        finally:
            if getter is not None:
                getter.cancel()
            cancelled_again = await _stopped(runner)
            ledger.finish(_interrupted, drain=False)
            self._last_result = run.result()
            if cancelled_again:
                raise asyncio.CancelledError
        if ledger.input_error is not None:
            raise ledger.input_error

    async def _execute(self, run: _Run, emit: Callable[[ChunkResult], Awaitable[None]]) -> None:
        workers = self._max_in_flight or min(2 * self._session.limiter.capacity, _MAX_WORKERS)
        size = run.ledger.size_hint
        if size is not None:
            # No more workers than requests (malformed ids may add one chunk).
            workers = min(workers, size // MAX_IDS_PER_REQUEST + 1)
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(self._work(run, emit))

    async def _work(self, run: _Run, emit: Callable[[ChunkResult], Awaitable[None]]) -> None:
        # Workers share the ledger; reading a chunk never awaits, so no chunk is taken twice.
        chunk = run.ledger.next_chunk()
        while chunk is not None:
            result = await self._settle(run, chunk)
            await emit(result)
            # Read on before reporting, so that the report after the last chunk knows the
            # input has ended (and its total).
            chunk = run.ledger.next_chunk()
            run.report()
            # Chunks settled without a request (malformed ids, after a fatal error) never
            # await: yield to the loop so that a long input cannot stall it.
            await asyncio.sleep(0)

    async def _settle(self, run: _Run, chunk: Chunk) -> ChunkResult:
        """Send ``chunk`` (retrying an unknown outcome if asked) and settle it in the ledger."""
        ledger = run.ledger
        if not chunk.valid:
            return ledger.settle_answer(chunk, CancelResult())
        retries = self._ambiguous_retries if self._retry_ambiguous else 0
        unknown: OutcomeUnknownError | None = None
        while True:
            if run.fatal is not None:
                return ledger.settle_unresolved(chunk, _after_unknown(run.fatal, unknown))
            try:
                answer = await self._send(run, chunk)
            except NotSentError:
                # The stop event: the batch met a fatal error while this one waited.
                assert run.fatal is not None
                return ledger.settle_unresolved(chunk, _after_unknown(run.fatal, unknown))
            except (ConnectError, OutcomeUnknownError) as error:
                if isinstance(error, OutcomeUnknownError):
                    unknown = error
                if retries > 0:
                    retries -= 1
                    _log.debug("retrying chunk %d after %s", chunk.index, type(error).__name__)
                    continue
                return ledger.settle_unresolved(chunk, _after_unknown(error, unknown))
            except UpbitError as error:
                if _is_fatal(error):
                    run.fail(error)
                return ledger.settle_unresolved(chunk, _after_unknown(error, unknown))
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise
                # Not this batch's cancellation (a caller's resource went away under it).
                return ledger.settle_unresolved(chunk, _interrupted(chunk))
            return ledger.settle_answer(chunk, answer, after_unknown=unknown is not None)

    async def _send(self, run: _Run, chunk: Chunk) -> CancelResult:
        session = run.session
        # The ledger checked each id as it read it: the session need not check them again.
        ids = CheckedIds(chunk.valid)
        if run.ledger.kind == "uuids":
            return await session.cancel_orders(uuids=ids, stop=run.stop, on_send=chunk.mark_sent)
        return await session.cancel_orders(identifiers=ids, stop=run.stop, on_send=chunk.mark_sent)
