"""BatchCanceller: cancel any number of orders, and account for every id."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Iterable, Iterator
from typing import Literal

import attrs

from ._errors import (
    AuthenticationError,
    BlockedError,
    ConnectError,
    InvalidIdError,
    MalformedResponseError,
    NotSentError,
    OutcomeUnknownError,
    OutOfScopeError,
    SessionClosedError,
    UpbitError,
)
from ._ids import MAX_IDS_PER_REQUEST, UUID_EXAMPLE, is_uuid
from ._models import BatchResult, CancelResult, OrderEntry, OrderList, UnresolvedOrder
from ._session import UpbitSession

__all__ = ["BatchCanceller", "ChunkResult", "Progress"]

_log = logging.getLogger("upbit_cancel")

Kind = Literal["uuids", "identifiers"]

#: Errors after which no further request can succeed: stop sending.
_FATAL = (AuthenticationError, OutOfScopeError, BlockedError, SessionClosedError)


@attrs.frozen
class Progress:
    """How far a batch has come, passed to ``on_progress`` after every request."""

    #: Distinct ids accounted for so far (in success, failed or unresolved).
    done: int
    #: Distinct ids in the input: known up front for collections (lists, tuples, sets), and
    #: once the input is exhausted for other iterables (``None`` until then).
    total: int | None
    success: int
    failed: int
    unresolved: int
    #: Requests sent so far, retries included.
    requests: int


@attrs.frozen
class ChunkResult:
    """What happened to one chunk of up to 20 ids (plus any malformed ids met beside them).

    ``ids`` lists the chunk's distinct ids in input order; each appears in exactly one of
    ``success``, ``failed`` and ``unresolved``.
    """

    #: Position of the chunk in the input, from 0.
    index: int
    ids: tuple[str, ...]
    success: OrderList
    failed: OrderList
    unresolved: tuple[UnresolvedOrder, ...]
    #: Ids in ``failed`` that an earlier, unanswered attempt may have canceled.
    possibly_canceled: frozenset[str] = frozenset()


@attrs.define
class _Chunk:
    index: int
    ids: tuple[str, ...]
    valid: tuple[str, ...]
    invalid: dict[str, UnresolvedOrder]
    #: Whether a request for it may have reached the exchange.
    sent: bool = False


def _problem(kind: Kind, value: str) -> str | None:
    if kind == "uuids" and not is_uuid(value):
        return f"malformed uuid {value!r}: Upbit order uuids are lowercase hex like {UUID_EXAMPLE}"
    if not value:
        return "empty identifier"
    return None


def _chunks(
    kind: Kind, values: Iterable[object], on_exhausted: Callable[[int], None]
) -> Iterator[_Chunk]:
    """Deduplicate (first occurrence wins) and cut into chunks of up to 20 valid ids."""
    seen: set[str] = set()
    index = 0
    ids: list[str] = []
    valid: list[str] = []
    invalid: dict[str, UnresolvedOrder] = {}
    items = iter(values)
    while True:
        try:
            item = next(items)
        except StopIteration:
            break
        except Exception:
            # The caller's iterable failed: what it gave so far still goes, then the error.
            if ids:
                yield _Chunk(index, tuple(ids), tuple(valid), invalid)
            raise
        value = item if isinstance(item, str) else str(item)
        if value in seen:
            continue
        seen.add(value)
        ids.append(value)
        problem = (
            f"not a string: {type(item).__name__} {item!r}"
            if not isinstance(item, str)
            else _problem(kind, value)
        )
        if problem is not None:
            error = InvalidIdError(f"{problem}; it was not sent", ids=(value,))
            invalid[value] = UnresolvedOrder(value, error)
            continue
        valid.append(value)
        if len(valid) == MAX_IDS_PER_REQUEST:
            yield _Chunk(index, tuple(ids), tuple(valid), invalid)
            index += 1
            ids, valid, invalid = [], [], {}
    if ids:
        yield _Chunk(index, tuple(ids), tuple(valid), invalid)
    on_exhausted(len(seen))


def _one_ahead(chunks: Iterator[_Chunk]) -> Iterator[_Chunk]:
    """Read one chunk ahead, so the input is known to be exhausted when its last chunk goes."""
    previous = next(chunks, None)
    while previous is not None:
        try:
            chunk = next(chunks, None)
        except Exception:
            # The caller's iterable failed: the chunk already read still goes, then the error.
            yield previous
            raise
        yield previous
        previous = chunk


def _settle(kind: Kind, chunk: _Chunk, result: CancelResult, *, after_unknown: bool) -> ChunkResult:
    """Match the exchange's answer to the chunk's ids, each into exactly one list."""

    def key(entry: OrderEntry) -> str | None:
        return entry.uuid if kind == "uuids" else entry.identifier

    asked = set(chunk.valid)
    success = {key(entry): entry for entry in result.success.orders}
    failed = {key(entry): entry for entry in result.failed.orders}
    stray = [
        entry
        for entry in (*result.success.orders, *result.failed.orders)
        if key(entry) not in asked
    ]
    unmatched: UpbitError | None = None
    if stray:
        # Entries that name no id we sent (an answer without the identifier, say): an id the
        # answer seems not to mention may be one of them, so it is not simply "not mentioned".
        _log.warning("%d order(s) in the answer match no id that was sent", len(stray))
        unmatched = MalformedResponseError(
            f"the answer listed {len(stray)} order(s) that match no id sent "
            f"(such as uuid {stray[0].uuid!r}); this id may be one of them",
            status=200,
            ids=chunk.valid,
        )
    success_list: list[OrderEntry] = []
    failed_list: list[OrderEntry] = []
    unresolved: list[UnresolvedOrder] = []
    possibly_canceled: set[str] = set()
    for value in chunk.ids:
        if value in chunk.invalid:
            unresolved.append(chunk.invalid[value])
        elif value in success:
            success_list.append(success[value])
        elif value in failed:
            failed_list.append(failed[value])
            if after_unknown:
                possibly_canceled.add(value)
        else:
            # The exchange answered but did not mention it: Upbit's answer for ids it does not
            # know is undocumented and may be silence.
            unresolved.append(UnresolvedOrder(value, unmatched))
    return ChunkResult(
        index=chunk.index,
        ids=chunk.ids,
        success=OrderList(tuple(success_list)),
        failed=OrderList(tuple(failed_list)),
        unresolved=tuple(unresolved),
        possibly_canceled=frozenset(possibly_canceled),
    )


def _unresolved(chunk: _Chunk, error: UpbitError) -> ChunkResult:
    """The whole chunk unresolved with ``error`` (malformed ids keep their own error)."""
    return ChunkResult(
        index=chunk.index,
        ids=chunk.ids,
        success=OrderList(),
        failed=OrderList(),
        unresolved=tuple(
            chunk.invalid.get(value, UnresolvedOrder(value, error)) for value in chunk.ids
        ),
    )


def _about_this_request(error: AuthenticationError) -> bool:
    """A hash mismatch concerns one request's query (an odd identifier), not the key."""
    return error.name == "invalid_query_payload"


class _StoppedError(Exception):
    """Raised before sending when the batch has met a fatal error."""


class _Run:
    """The state of one ``cancel()`` or ``stream()``: counters, in-flight chunks, fatal error."""

    def __init__(
        self, session: UpbitSession, on_progress: Callable[[Progress], None] | None
    ) -> None:
        self.session = session
        self.on_progress = on_progress
        self.fatal: UpbitError | None = None
        self.total: int | None = None
        self.collection: Collection[object] | None = None
        self.in_flight: dict[int, _Chunk] = {}
        # Workers whose chunk has not been sent yet (waiting for the limiter), by chunk index,
        # and the chunks whose worker stop() interrupted.
        self.waiting: dict[int, asyncio.Task[None]] = {}
        self.stopped: set[int] = set()
        self.done = self.success = self.failed = self.unresolved = 0
        self.started = time.monotonic()
        self.requests_before = session.requests_sent
        self.rate_limited_before = session.rate_limited

    def set_total(self, total: int) -> None:
        self.total = total

    def stop(self, error: UpbitError) -> None:
        """Stop the batch after a fatal error: interrupt every chunk still waiting to be sent."""
        if self.fatal is not None:
            return
        self.fatal = error
        _log.warning("stopping the batch: %s", error)
        for index, task in self.waiting.items():
            self.stopped.add(index)
            task.cancel()
        self.waiting.clear()

    @property
    def requests(self) -> int:
        return self.session.requests_sent - self.requests_before

    def count(self, result: ChunkResult) -> None:
        self.done += len(result.ids)
        self.success += result.success.count
        self.failed += result.failed.count
        self.unresolved += len(result.unresolved)

    def report(self) -> None:
        if self.on_progress is None:
            return
        if self.total is None and self.collection is not None:
            self.total = len({v if isinstance(v, str) else str(v) for v in self.collection})
        progress = Progress(
            done=self.done,
            total=self.total,
            success=self.success,
            failed=self.failed,
            unresolved=self.unresolved,
            requests=self.requests,
        )
        try:
            self.on_progress(progress)
        except Exception:
            # A broken progress display must not abort an emergency cancel.
            _log.exception("on_progress raised; the batch carries on")


class BatchCanceller:
    """Cancel any number of orders through one session, accounting for every id.

    The ids are deduplicated (first occurrence wins), cut into requests of 20 and sent
    concurrently through the session's limiter, so the batch runs as fast as the account's
    budget allows. Every distinct id ends in exactly one of ``success``, ``failed`` or
    ``unresolved``: malformed ids are never sent and come back unresolved with an
    :class:`InvalidIdError`; a request that fails leaves its ids unresolved with the error while
    the other requests carry on; after a fatal error (authentication refused, key without
    permission, a 418 block) nothing more is sent and the rest is unresolved with that error.

    Example::

        async with UpbitSession(access_key, secret_key, region="sg") as session:
            canceller = BatchCanceller(session)
            result = await canceller.cancel(uuids=order_ids)
            print(result.success.count, result.failed.count, len(result.unresolved))

    Args:
        session: The session to send through (its limiter paces the batch).
        on_progress: Called with a :class:`Progress` after every request.
        retry_ambiguous: Retry a request that got no usable answer (timeout, dropped
            connection, 5xx, garbled body) up to ``ambiguous_retries`` times. The ids that the
            retry reports as failed are listed in ``possibly_canceled``: the unanswered attempt
            may have canceled them. Off by default, since such ids are safest reported as
            unresolved for the caller to check.
        ambiguous_retries: How many times ``retry_ambiguous`` retries one request.
        max_in_flight: Requests in progress at once (waiting for the limiter included); bounds
            the batch's memory and tasks whatever the number of ids. Default: twice the
            limiter's rate, at most 200, and no more than the input has requests.
    """

    __slots__ = (
        "_ambiguous_retries",
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
        on_progress: Callable[[Progress], None] | None = None,
        retry_ambiguous: bool = False,
        ambiguous_retries: int = 2,
        max_in_flight: int | None = None,
    ) -> None:
        if ambiguous_retries < 0:
            raise ValueError("ambiguous_retries must be zero or more")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._session = session
        self._on_progress = on_progress
        self._retry_ambiguous = retry_ambiguous
        self._ambiguous_retries = ambiguous_retries
        self._max_in_flight = max_in_flight
        self._last_result: BatchResult | None = None

    @property
    def last_result(self) -> BatchResult | None:
        """The result of the latest :meth:`cancel`, also when it was cancelled or failed.

        After a cancellation, ids whose request was in flight are unresolved with an
        :class:`OutcomeUnknownError`, and ids not yet sent with a :class:`NotSentError`. Ids an
        iterator had not yet produced are not listed.
        """
        return self._last_result

    async def cancel(
        self,
        *,
        uuids: Iterable[str] | None = None,
        identifiers: Iterable[str] | None = None,
    ) -> BatchResult:
        """Cancel every order named by ``uuids`` or ``identifiers`` (any iterable, any length).

        Does not raise for failed requests: look at ``result.unresolved``, or call
        ``result.raise_for_unresolved()``. Raises ``ValueError`` if not exactly one of
        ``uuids`` and ``identifiers`` is given.
        """
        kind, values = _kind_and_values(uuids, identifiers)
        run = _Run(self._session, self._on_progress)
        collected: list[ChunkResult] = []

        async def keep(result: ChunkResult) -> None:
            collected.append(result)

        source = self._source(kind, values, run)
        try:
            await self._execute(kind, source, run, keep)
        except BaseException as error:
            self._last_result = self._interrupted(run, collected, source)
            # An exception from the caller's iterable surfaces as itself, not in a group.
            if isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
                raise error.exceptions[0] from None
            raise
        result = _merge(collected, run)
        self._last_result = result
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
        batch: no further request starts, and results not yet handed over are dropped. Close it
        with ``contextlib.aclosing`` so that leaving the loop early stops it at once.

        Example::

            async with contextlib.aclosing(canceller.stream(uuids=order_ids)) as chunks:
                async for chunk in chunks:
                    print(chunk.index, chunk.success.count, len(chunk.unresolved))
        """
        kind, values = _kind_and_values(uuids, identifiers)
        run = _Run(self._session, self._on_progress)
        # Bounded: when the consumer lags, workers wait to hand over their results instead of
        # piling them up, and no new request starts.
        queue: asyncio.Queue[ChunkResult] = asyncio.Queue(maxsize=1)
        runner = asyncio.create_task(
            self._execute(kind, self._source(kind, values, run), run, queue.put)
        )
        getter: asyncio.Future[ChunkResult] | None = None
        try:
            while True:
                if not queue.empty():
                    yield queue.get_nowait()
                    continue
                if runner.done():
                    runner.result()
                    return
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, runner}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    item = getter.result()
                    getter = None
                    yield item
                else:
                    getter.cancel()
                    getter = None
        finally:
            if getter is not None:
                getter.cancel()
            if not runner.done():
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)

    def _source(self, kind: Kind, values: Iterable[object], run: _Run) -> Iterator[_Chunk]:
        if isinstance(values, Collection):
            # Already in memory: its total can be counted, and its unsent rest listed if the
            # batch is interrupted. Counting waits for the first report, so that the first
            # requests go out before any pass over a long input.
            run.collection = values
        return _one_ahead(_chunks(kind, values, run.set_total))

    async def _execute(
        self,
        kind: Kind,
        source: Iterator[_Chunk],
        run: _Run,
        emit: Callable[[ChunkResult], Awaitable[None]],
    ) -> None:
        workers = self._max_in_flight or min(2 * int(self._session.limiter.max_rate), 200)
        if run.collection is not None:
            # No more workers than requests (malformed ids may add one chunk).
            workers = min(workers, len(run.collection) // MAX_IDS_PER_REQUEST + 1)

        async def worker() -> None:
            task = asyncio.current_task()
            assert task is not None
            # Workers share one iterator; next() never awaits, so no chunk is taken twice.
            for chunk in source:
                run.in_flight[chunk.index] = chunk
                if run.fatal is None:
                    run.waiting[chunk.index] = task
                try:
                    result = await self._send(kind, chunk, run)
                except asyncio.CancelledError:
                    # Interrupted by stop() before sending (and by nothing else): settle here.
                    if chunk.index not in run.stopped or task.uncancel() > 0 or not run.fatal:
                        raise
                    result = _unresolved(chunk, run.fatal)
                run.waiting.pop(chunk.index, None)
                run.stopped.discard(chunk.index)
                # Left in place if the send is interrupted, so the partial result lists it.
                del run.in_flight[chunk.index]
                run.count(result)
                await emit(result)
                run.report()
                # Chunks settled without a request (malformed ids, after a fatal error) never
                # await: yield to the loop so a long input cannot stall it.
                await asyncio.sleep(0)

        async with asyncio.TaskGroup() as group:
            for _ in range(int(workers)):
                group.create_task(worker())

    async def _send(self, kind: Kind, chunk: _Chunk, run: _Run) -> ChunkResult:
        if not chunk.valid:
            return _settle(kind, chunk, CancelResult(), after_unknown=False)
        retries = self._ambiguous_retries if self._retry_ambiguous else 0
        unknown: OutcomeUnknownError | None = None

        def before_send() -> None:
            if run.fatal is not None:
                raise _StoppedError
            run.waiting.pop(chunk.index, None)
            chunk.sent = True

        def unresolved(error: UpbitError) -> ChunkResult:
            if unknown is not None and not isinstance(error, OutcomeUnknownError):
                # An earlier attempt may have canceled these orders: say so, whatever came next.
                error = OutcomeUnknownError(
                    f"an earlier attempt got no usable answer ({unknown}); the retry then "
                    f"failed ({error}): the orders may or may not be canceled",
                    ids=chunk.valid,
                )
            return _unresolved(chunk, error)

        while True:
            if run.fatal is not None:
                return unresolved(run.fatal)
            try:
                result = await self._session._cancel(kind, chunk.valid, before_send)
            except _StoppedError:
                assert run.fatal is not None
                return unresolved(run.fatal)
            except (ConnectError, OutcomeUnknownError) as error:
                if isinstance(error, OutcomeUnknownError):
                    unknown = error
                if retries > 0:
                    retries -= 1
                    _log.debug("retrying chunk %d after %s", chunk.index, type(error).__name__)
                    continue
                return unresolved(error)
            except _FATAL as error:
                if not (isinstance(error, AuthenticationError) and _about_this_request(error)):
                    run.stop(error)
                return unresolved(error)
            except UpbitError as error:
                return unresolved(error)
            return _settle(kind, chunk, result, after_unknown=unknown is not None)

    def _interrupted(
        self, run: _Run, collected: list[ChunkResult], source: Iterator[_Chunk]
    ) -> BatchResult:
        """The partial result of a run stopped by cancellation or an exception."""
        results = list(collected)
        for chunk in run.in_flight.values():
            error: UpbitError = (
                OutcomeUnknownError(
                    "the batch was cancelled while this request was in flight; the orders may "
                    "or may not be canceled",
                    ids=chunk.valid,
                )
                if chunk.sent
                else NotSentError("not sent: the batch was cancelled", ids=chunk.valid)
            )
            results.append(_unresolved(chunk, error))
        if run.collection is not None:
            # A collection's remaining chunks are known: list them rather than drop them.
            for chunk in source:
                error = NotSentError("not sent: the batch was cancelled", ids=chunk.valid)
                results.append(_unresolved(chunk, error))
        return _merge(results, run)


def _kind_and_values(
    uuids: Iterable[str] | None, identifiers: Iterable[str] | None
) -> tuple[Kind, Iterable[object]]:
    if (uuids is None) == (identifiers is None):
        raise ValueError("pass exactly one of uuids=... or identifiers=...")
    kind: Kind = "uuids" if uuids is not None else "identifiers"
    values = uuids if uuids is not None else identifiers
    assert values is not None
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{kind} must be an iterable of ids, not one string: {kind}=[{values!r}]")
    try:
        iter(values)
    except TypeError:
        raise ValueError(
            f"{kind} must be an iterable of ids (a list, a set, a generator), "
            f"not {type(values).__name__}"
        ) from None
    return kind, values


def _merge(results: list[ChunkResult], run: _Run) -> BatchResult:
    results.sort(key=lambda result: result.index)
    success: list[OrderEntry] = []
    failed: list[OrderEntry] = []
    unresolved: list[UnresolvedOrder] = []
    possibly_canceled: set[str] = set()
    for result in results:
        success.extend(result.success.orders)
        failed.extend(result.failed.orders)
        unresolved.extend(result.unresolved)
        possibly_canceled.update(result.possibly_canceled)
    return BatchResult(
        success=OrderList(tuple(success)),
        failed=OrderList(tuple(failed)),
        unresolved=tuple(unresolved),
        possibly_canceled=frozenset(possibly_canceled),
        requests=run.requests,
        rate_limited=run.session.rate_limited - run.rate_limited_before,
        elapsed=time.monotonic() - run.started,
    )
