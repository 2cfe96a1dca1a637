"""BatchCanceller's decision paths: the fake answers what each test queues, in order."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from tests.conftest import SessionFor
from upbit_cancel import (
    AuthenticationError,
    BatchCanceller,
    InvalidRequestError,
    OutcomeUnknownError,
    ServerError,
    SlidingWindowLimiter,
    UpbitSession,
)
from upbit_cancel.testing import FakeUpbit

GATEWAY = "<html><body><h1>502 Bad Gateway</h1></body></html>"


def one_at_a_time(session: UpbitSession, **options: Any) -> BatchCanceller:
    return BatchCanceller(session, max_in_flight=1, **options)


async def test_an_unknown_outcome_is_kept_when_the_retry_fails_otherwise(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """A 5xx, then a refusal on the retry: still 'may be canceled', with both reasons."""
    uuids = fake.add_orders(20)
    fake.queue_response(502, GATEWAY, content_type="text/html")
    fake.queue_response(400, {"error": {"name": "validation_error", "message": "no"}})
    async with session_for(fake) as session:
        result = await one_at_a_time(session, retry_ambiguous=True, ambiguous_retries=1).cancel(
            uuids=uuids
        )
    assert [entry.id for entry in result.unresolved] == uuids
    error = result.unresolved[0].error
    assert isinstance(error, OutcomeUnknownError)
    assert "no usable answer" in str(error)
    assert "validation_error" in str(error)


async def test_failures_after_an_unanswered_attempt_are_flagged(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """A lost answer, then 'failed' on the retry: failed, and possibly canceled by the first."""
    uuids = fake.add_orders(20, state="done")
    fake.queue_response(502, GATEWAY, content_type="text/html")
    async with session_for(fake) as session:
        result = await one_at_a_time(session, retry_ambiguous=True).cancel(uuids=uuids)
    assert [order.uuid for order in result.failed.orders] == uuids
    assert result.possibly_canceled == frozenset(uuids)
    assert result.requests == 2


async def test_without_retry_an_unknown_outcome_is_unresolved(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """By default a lost answer is not retried: its ids are unresolved with that error."""
    uuids = fake.add_orders(40)
    fake.queue_response(502, GATEWAY, content_type="text/html")
    async with session_for(fake) as session:
        result = await one_at_a_time(session).cancel(uuids=uuids)
    assert len(fake.records) == 2
    assert [entry.id for entry in result.unresolved] == uuids[:20]
    assert all(isinstance(entry.error, ServerError) for entry in result.unresolved)
    assert [order.uuid for order in result.success.orders] == uuids[20:]


async def test_a_hash_mismatch_concerns_one_request_not_the_batch(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """invalid_query_payload fails its own chunk; the next chunk is still sent."""
    uuids = fake.add_orders(40)
    fake.queue_response(401, {"error": {"name": "invalid_query_payload", "message": "hash"}})
    async with session_for(fake) as session:
        result = await one_at_a_time(session).cancel(uuids=uuids)
    assert [order.uuid for order in result.success.orders] == uuids[20:]
    assert [entry.id for entry in result.unresolved] == uuids[:20]


async def test_a_refused_key_stops_the_batch(fake: FakeUpbit, session_for: SessionFor) -> None:
    """Any other authentication error is fatal: the next chunk is never sent."""
    uuids = fake.add_orders(40)
    fake.queue_response(401, {"error": {"name": "invalid_access_key", "message": "who?"}})
    async with session_for(fake) as session:
        result = await one_at_a_time(session).cancel(uuids=uuids)
    assert len(fake.records) == 1
    assert len(result.unresolved) == 40
    assert all(isinstance(entry.error, AuthenticationError) for entry in result.unresolved)
    assert fake.state_counts()["wait"] == 40


async def test_other_refusals_concern_their_own_request(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """A 400 for one request leaves the others to go on."""
    uuids = fake.add_orders(40)
    fake.queue_response(400, {"error": {"name": "validation_error", "message": "odd"}})
    async with session_for(fake) as session:
        result = await one_at_a_time(session).cancel(uuids=uuids)
    assert all(isinstance(entry.error, InvalidRequestError) for entry in result.unresolved)
    assert result.success.count == 20


async def test_entries_matching_no_id_make_the_silence_suspect(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """An answer entry without the identifier: the unmatched ids get an error, not None."""
    fake.queue_response(
        200,
        {
            "success": {"count": 1, "orders": [{"uuid": "u-1", "market": "SGD-BTC"}]},
            "failed": {"count": 0, "orders": []},
        },
    )
    async with session_for(fake) as session:
        result = await one_at_a_time(session).cancel(identifiers=["a", "b"])
    assert result.success.count == 0
    assert [entry.id for entry in result.unresolved] == ["a", "b"]
    assert all("match no id" in str(entry.error) for entry in result.unresolved)


async def test_something_that_is_not_iterable_is_a_type_error(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """uuids=123 is refused at the boundary with a message, nothing sent."""
    async with session_for(fake) as session:
        with pytest.raises(TypeError, match="iterable of them"):
            await one_at_a_time(session).cancel(uuids=123)  # type: ignore[arg-type]
    assert fake.records == []


async def test_a_few_ids_start_a_few_tasks_whatever_the_rate(session_for: SessionFor) -> None:
    """A generous limiter does not make a small batch start hundreds of workers."""
    async with FakeUpbit(limit=100_000) as fake:
        uuids = fake.add_orders(40)
        most = 0

        def count(progress: object) -> None:
            nonlocal most
            most = max(most, len(asyncio.all_tasks()))

        limiter = SlidingWindowLimiter(100_000, 1.0)
        async with session_for(fake, limiter=limiter) as session:
            result = await BatchCanceller(session, on_progress=count).cancel(uuids=uuids)
        assert result.success.count == 40
        # The test's task, one worker per request of 20 (plus one), and the fake's handlers.
        assert most <= 1 + 3 + 2 * 3


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_in_flight": 0}, ValueError, "max_in_flight"),
        ({"max_in_flight": 1.5}, TypeError, "max_in_flight"),
        ({"ambiguous_retries": -1}, ValueError, "ambiguous_retries"),
        ({"on_progress": "print"}, TypeError, "on_progress"),
    ],
)
async def test_bad_options_are_refused_when_built(
    fake: FakeUpbit,
    options: dict[str, Any],
    error: type[Exception],
    message: str,
    session_for: SessionFor,
) -> None:
    """Options that make no sense fail at construction, naming the option."""
    async with session_for(fake) as session:
        with pytest.raises(error, match=message):
            BatchCanceller(session, **options)


def test_a_session_is_required() -> None:
    """Anything but an UpbitSession is refused at once."""
    with pytest.raises(TypeError, match="UpbitSession"):
        BatchCanceller("session")  # type: ignore[arg-type]


async def test_a_connection_that_never_opened_is_not_a_request_sent(fake: FakeUpbit) -> None:
    """Nothing listens at the port: every id unresolved, and no request counted as sent."""
    with socket.socket() as bound:
        # Bound but not listening: connecting is refused, and no other server can take the port.
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        session = UpbitSession(
            fake.access_key, fake.secret_key, base_url=f"http://127.0.0.1:{port}"
        )
        async with session:
            result = await BatchCanceller(session).cancel(uuids=fake.add_orders(45))
    assert result.requests == 0
    assert session.requests_sent == 0
    assert len(result.unresolved) == 45
    assert all("nothing was sent" in str(entry.error) for entry in result.unresolved)
    assert result.possibly_canceled == frozenset()


async def test_repr_of_a_result_is_a_short_summary(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """One line of counts, not thousands of orders."""
    uuids = fake.add_orders(1000)
    async with session_for(fake) as session:
        result = await BatchCanceller(session).cancel(uuids=[*uuids, "not-a-uuid"])
    assert repr(result) == (
        f"<BatchResult 1,000 success, 0 failed, 1 unresolved, 50 requests in "
        f"{result.elapsed:.1f} s>"
    )
