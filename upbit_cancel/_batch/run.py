"""One run of cancels: workers take chunks from an intake, send each, and settle it back.

The orchestration is small on purpose: the intake reads the caller's input and registers every
id in the operation's ledger; a worker sends a chunk through the session's one internal entry
point and settles it back. Whatever is raised or cancelled where, :meth:`Intake.finish` settles
what is still open when the run ends, so no id is ever lost. A run stops on an error after which
no request of the account can succeed by state, never by cancelling its workers: it sets an
event that every request checks while it waits for the limiter and before it is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from .._errors import (
    ConnectError,
    NotSentError,
    OutcomeUnknownError,
    UpbitError,
    stops_the_account,
)
from .._http.session import CANCEL_BY_IDS, UpbitSession
from .._ids import MAX_IDS_PER_REQUEST, Ids
from .._log import log as _log
from .._models import CancelResult, ChunkResult, Progress
from .ledger import Chunk, Intake
from .matching import Outcome, chunk_result

__all__ = ["RunSettings", "execute", "interrupted", "stopped"]


#: Workers at most, whatever the limiter's capacity.
_MAX_WORKERS = 200


@attrs.frozen
class RunSettings:
    """How a canceller runs its batches (checked by :class:`BatchCanceller`)."""

    on_progress: Callable[[Progress], object] | None = None
    #: Retries of a request whose outcome is unknown (0: none).
    ambiguous_retries: int = 0
    max_in_flight: int | None = None


def _after_unknown(error: UpbitError, unknown: OutcomeUnknownError | None) -> UpbitError:
    """``error``, unless an earlier attempt got no usable answer: then the outcome is unknown."""
    if unknown is None or isinstance(error, OutcomeUnknownError):
        return error
    return OutcomeUnknownError(
        f"an earlier attempt got no usable answer ({unknown}); then {error}: the orders may "
        "or may not be canceled",
        ids=error.ids or unknown.ids,
    )


def interrupted(chunk: Chunk) -> UpbitError:
    """Why a chunk still open when its run was interrupted is unresolved."""
    if chunk.sent:
        return OutcomeUnknownError(
            "the batch was interrupted while this request was in flight; the orders may or may "
            "not be canceled",
            ids=chunk.valid,
        )
    return NotSentError("not sent: the batch was interrupted", ids=chunk.valid)


async def stopped(runner: asyncio.Task[Any]) -> bool:
    """Cancel ``runner`` if it still runs and wait until it has ended, whatever happens.

    The run can only be finished once no worker can settle a chunk any more, so a second
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
    """One run's intake, its stop event and what stopped it."""

    __slots__ = ("fatal", "intake", "session", "settings", "stop")

    def __init__(self, session: UpbitSession, intake: Intake, settings: RunSettings) -> None:
        self.session = session
        self.intake = intake
        self.settings = settings
        self.stop = asyncio.Event()
        self.fatal: UpbitError | None = None

    def fail(self, error: UpbitError) -> None:
        """Stop sending after a fatal error: requests not yet sent will not be."""
        if self.fatal is None:
            self.fatal = error
            self.stop.set()
            _log.warning("stopping the batch: %s", error)

    def report(self) -> None:
        on_progress = self.settings.on_progress
        if on_progress is None:
            return
        try:
            on_progress(self.intake.progress())
        except (Exception, asyncio.CancelledError):
            # A broken progress display must not abort an emergency cancel. A CancelledError
            # raised by a plain function is the callback's failure, never this task's
            # cancellation (which only arrives at an await).
            _log.exception("on_progress raised; the batch carries on")


async def execute(
    session: UpbitSession,
    intake: Intake,
    settings: RunSettings,
    emit: Callable[[ChunkResult], Awaitable[None]] | None = None,
) -> None:
    """Send every chunk of ``intake`` and settle it; ``emit`` each chunk's result, if given.

    Does not settle what is open when it ends: the caller finishes the intake, whatever ended
    the run. Raises what a worker raised (an ``emit`` that failed, say), unwrapped.
    """
    run = _Run(session, intake, settings)
    workers = settings.max_in_flight or min(2 * session.limiter.capacity, _MAX_WORKERS)
    size = intake.size_hint
    if size is not None:
        # No more workers than requests (malformed ids may add one chunk).
        workers = min(workers, size // MAX_IDS_PER_REQUEST + 1)
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(_work(run, emit))
    except BaseExceptionGroup as failures:
        failure = failures.exceptions[0] if len(failures.exceptions) == 1 else failures
        raise failure from None


async def _work(run: _Run, emit: Callable[[ChunkResult], Awaitable[None]] | None) -> None:
    # Workers share the intake; reading a chunk never awaits, so no chunk is taken twice.
    chunk = run.intake.next_chunk()
    while chunk is not None:
        outcome = await _settle(run, chunk)
        if emit is not None:
            await emit(chunk_result(chunk.index, chunk.ids, outcome))
        # Read on before reporting, so that the report after the last chunk knows the input
        # has ended (and its total).
        chunk = run.intake.next_chunk()
        run.report()
        # Chunks settled without a request (malformed ids, after a fatal error) never await:
        # yield to the loop so that a long input cannot stall it.
        await asyncio.sleep(0)


async def _settle(run: _Run, chunk: Chunk) -> Outcome:
    """Send ``chunk`` (retrying an unknown outcome if asked) and settle it."""
    intake = run.intake
    if not chunk.valid:
        return intake.settle_answer(chunk, CancelResult())
    retries = run.settings.ambiguous_retries
    unknown: OutcomeUnknownError | None = None
    ids = Ids(intake.ledger.kind, tuple(chunk.valid))
    while True:
        if run.fatal is not None:
            return intake.settle_unresolved(chunk, _after_unknown(run.fatal, unknown))
        try:
            answer = await run.session._call(CANCEL_BY_IDS, ids=ids, stop=run.stop, observer=chunk)
        except NotSentError as error:
            if run.fatal is not None:
                # The stop event: the run met a fatal error while this one waited.
                return intake.settle_unresolved(chunk, _after_unknown(run.fatal, unknown))
            # The limiter refused it (the budget cannot be kept): nothing more can be sent.
            if stops_the_account(error):
                run.fail(error)
            return intake.settle_unresolved(chunk, _after_unknown(error, unknown))
        except (ConnectError, OutcomeUnknownError) as error:
            if isinstance(error, OutcomeUnknownError):
                unknown = error
            if retries > 0:
                retries -= 1
                _log.debug("retrying chunk %d after %s", chunk.index, type(error).__name__)
                continue
            return intake.settle_unresolved(chunk, _after_unknown(error, unknown))
        except UpbitError as error:
            if stops_the_account(error):
                run.fail(error)
            return intake.settle_unresolved(chunk, _after_unknown(error, unknown))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise
            # Not this run's cancellation (a caller's resource went away under it).
            return intake.settle_unresolved(chunk, interrupted(chunk))
        return intake.settle_answer(chunk, answer, after_unknown=unknown is not None)
