"""BatchCanceller's decision paths, driven by a scripted session: every outcome is chosen here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from typing import cast

import pytest

from upbit_cancel import (
    AuthenticationError,
    BatchCanceller,
    CancelResult,
    ConnectError,
    OrderEntry,
    OrderList,
    OutcomeUnknownError,
    ResponseTimeoutError,
    SlidingWindowLimiter,
    UpbitError,
    UpbitSession,
)

IDS = [f"{n:08x}-0000-4000-8000-00000000abcd" for n in range(40)]

Answer = CancelResult | UpbitError


class ScriptedSession:
    """Stands in for UpbitSession: each request gets the next scripted answer."""

    def __init__(self, answers: Sequence[Callable[[Sequence[str]], Answer]]) -> None:
        self.limiter = SlidingWindowLimiter(1000, 1.0)
        self.requests_sent = 0
        self.rate_limited = 0
        self._answers = iter(answers)

    async def _cancel(
        self, kind: str, ids: Sequence[str], before_send: Callable[[], None] | None = None
    ) -> CancelResult:
        await asyncio.sleep(0)
        if before_send is not None:
            before_send()
        self.requests_sent += 1
        answer = next(self._answers)(ids)
        if isinstance(answer, UpbitError):
            raise answer
        return answer


def all_success(ids: Sequence[str]) -> CancelResult:
    return CancelResult(success=OrderList(tuple(OrderEntry(i, "SGD-BTC") for i in ids)))


def all_failed(ids: Sequence[str]) -> CancelResult:
    return CancelResult(failed=OrderList(tuple(OrderEntry(i, "SGD-BTC") for i in ids)))


def canceller(session: ScriptedSession, **options: object) -> BatchCanceller:
    return BatchCanceller(cast(UpbitSession, session), max_in_flight=1, **options)  # type: ignore[arg-type]


async def test_an_unknown_outcome_is_kept_when_the_retry_cannot_connect() -> None:
    """Timeout, then a connect error on the retry: still 'may be canceled', not 'not sent'."""
    session = ScriptedSession(
        [
            lambda ids: ResponseTimeoutError("no answer", ids=ids),
            lambda ids: ConnectError("refused; nothing was sent", ids=ids),
        ]
    )
    result = await canceller(session, retry_ambiguous=True, ambiguous_retries=1).cancel(
        uuids=IDS[:20]
    )
    assert [entry.id for entry in result.unresolved] == IDS[:20]
    error = result.unresolved[0].error
    assert isinstance(error, OutcomeUnknownError)
    assert "no usable answer" in str(error)
    assert "refused" in str(error)


async def test_failures_after_an_unanswered_attempt_are_flagged() -> None:
    """Lost answer, then 'failed' on the retry: listed as failed and as possibly canceled."""
    session = ScriptedSession([lambda ids: ResponseTimeoutError("no answer", ids=ids), all_failed])
    result = await canceller(session, retry_ambiguous=True).cancel(uuids=IDS[:20])
    assert [order.uuid for order in result.failed.orders] == IDS[:20]
    assert result.possibly_canceled == frozenset(IDS[:20])


async def test_without_retry_an_unknown_outcome_is_unresolved() -> None:
    """By default a lost answer is not retried: its ids are unresolved with that error."""
    session = ScriptedSession([lambda ids: ResponseTimeoutError("no answer", ids=ids), all_success])
    result = await canceller(session).cancel(uuids=IDS)
    assert session.requests_sent == 2
    assert [entry.id for entry in result.unresolved] == IDS[:20]
    assert all(isinstance(entry.error, ResponseTimeoutError) for entry in result.unresolved)
    assert [order.uuid for order in result.success.orders] == IDS[20:]


async def test_a_hash_mismatch_concerns_one_request_not_the_batch() -> None:
    """invalid_query_payload fails its own chunk; the next chunk is still sent."""
    session = ScriptedSession(
        [
            lambda ids: AuthenticationError(
                "hash mismatch", status=401, name="invalid_query_payload", ids=ids
            ),
            all_success,
        ]
    )
    result = await canceller(session).cancel(uuids=IDS)
    assert [order.uuid for order in result.success.orders] == IDS[20:]
    assert len(result.unresolved) == 20


async def test_a_refused_key_stops_the_batch() -> None:
    """Any other authentication error is fatal: the next chunk is never sent."""
    session = ScriptedSession(
        [lambda ids: AuthenticationError("bad key", status=401, name="invalid_access_key", ids=ids)]
    )
    result = await canceller(session).cancel(uuids=IDS)
    assert session.requests_sent == 1
    assert len(result.unresolved) == 40
    assert all(isinstance(entry.error, AuthenticationError) for entry in result.unresolved)


async def test_entries_matching_no_id_make_the_silence_suspect() -> None:
    """An answer entry without the identifier: the unmatched ids get an error, not None."""
    identifiers = ["a", "b"]

    def without_identifiers(ids: Sequence[str]) -> CancelResult:
        return CancelResult(success=OrderList((OrderEntry("u-1", "SGD-BTC"),)))

    session = ScriptedSession([without_identifiers])
    result = await canceller(session).cancel(identifiers=identifiers)
    assert result.success.count == 0
    assert [entry.id for entry in result.unresolved] == identifiers
    assert all("match no id" in str(entry.error) for entry in result.unresolved)


async def test_something_that_is_not_iterable_is_a_value_error() -> None:
    """uuids=123 is refused at the boundary with a message, nothing sent."""
    session = ScriptedSession([])
    with pytest.raises(ValueError, match="iterable of ids"):
        await canceller(session).cancel(uuids=123)  # type: ignore[arg-type]
    assert session.requests_sent == 0


async def test_an_iterator_failing_midway_raises_its_own_error() -> None:
    """The caller's iterator error comes out as itself; what was done is in last_result."""

    def ids() -> Iterator[str]:
        yield from IDS[:20]
        yield from IDS[20:25]
        raise OSError("the file went away")

    session = ScriptedSession([all_success] * 5)
    batch = canceller(session)
    with pytest.raises(OSError, match="went away"):
        await batch.cancel(uuids=ids())
    assert batch.last_result is not None
    # Everything read before the failure was sent and is accounted for.
    assert [order.uuid for order in batch.last_result.success.orders] == IDS[:25]


async def test_a_few_ids_start_a_few_tasks_whatever_the_rate() -> None:
    """A generous limiter does not make a small batch start thousands of workers."""
    tasks_seen = 0

    def count_tasks(ids: Sequence[str]) -> CancelResult:
        nonlocal tasks_seen
        tasks_seen = max(tasks_seen, len(asyncio.all_tasks()))
        return all_success(ids)

    session = ScriptedSession([count_tasks] * 2)
    session.limiter = SlidingWindowLimiter(100_000, 1.0)
    batch = BatchCanceller(cast(UpbitSession, session))
    result = await batch.cancel(uuids=IDS)
    assert result.success.count == 40
    # This test's task and one worker per request of 20.
    assert tasks_seen <= 1 + 3
