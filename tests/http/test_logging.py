"""What the library logs, at which level, under the ``upbit_cancel`` logger."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import SessionFor
from upbit_cancel import BatchCanceller, BlockedError, ConnectionLostError
from upbit_cancel.testing import FakeUpbit, Faults

TOO_MANY = {"error": {"name": "too_many_requests", "message": "Too many API requests."}}
BLOCKED = {"error": {"name": "blocked", "message": "Your access is blocked for 30 seconds."}}


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "upbit_cancel" and record.levelno == level
    ]


async def test_each_request_is_one_debug_line(
    fake: FakeUpbit, caplog: pytest.LogCaptureFixture, session_for: SessionFor
) -> None:
    caplog.set_level(logging.DEBUG, logger="upbit_cancel")
    uuids = fake.add_orders(45)
    async with session_for(fake) as session:
        await BatchCanceller(session).cancel(uuids=uuids)
    lines = sorted(messages(caplog, logging.DEBUG))
    assert lines == sorted(
        ["DELETE /v1/orders/uuids (20 ids): 200"] * 2 + ["DELETE /v1/orders/uuids (5 ids): 200"]
    )
    assert fake.secret_key not in caplog.text


async def test_a_429_incident_is_one_warning(
    fake: FakeUpbit, caplog: pytest.LogCaptureFixture, session_for: SessionFor
) -> None:
    """Refused, paused, retried: one warning that says someone else spends the budget."""
    caplog.set_level(logging.WARNING, logger="upbit_cancel")
    uuids = fake.add_orders(20)
    fake.queue_response(429, TOO_MANY)
    async with session_for(fake) as session:
        result = await session.cancel_orders(uuids=uuids)
    assert result.success.count == 20
    [warning] = messages(caplog, logging.WARNING)
    assert warning.startswith("429: another client is spending the account's budget; pausing")


async def test_a_block_is_one_warning_with_its_length(
    fake: FakeUpbit, caplog: pytest.LogCaptureFixture, session_for: SessionFor
) -> None:
    caplog.set_level(logging.WARNING, logger="upbit_cancel")
    uuids = fake.add_orders(60)
    fake.queue_response(418, BLOCKED)
    async with session_for(fake) as session:
        result = await BatchCanceller(session, max_in_flight=1).cancel(uuids=uuids)
        with pytest.raises(BlockedError):
            await session.cancel_orders(uuids=uuids[:1])
    assert all(isinstance(entry.error, BlockedError) for entry in result.unresolved)
    first, stopping = messages(caplog, logging.WARNING)
    assert first == (
        "the exchange blocked the account (HTTP 418: Your access is blocked for 30 seconds.); "
        "nothing is sent for 30.0 s"
    )
    assert stopping.startswith("stopping the batch: the exchange blocked the account")


async def test_a_request_without_an_answer_is_a_debug_line_too(
    caplog: pytest.LogCaptureFixture,
    session_for: SessionFor,
) -> None:
    """A dropped connection: the debug line names what happened instead of a status."""
    caplog.set_level(logging.DEBUG, logger="upbit_cancel")
    async with FakeUpbit(faults=Faults(drop_rate=1.0)) as fake:
        uuids = fake.add_orders(5)
        async with session_for(fake) as session:
            with pytest.raises(ConnectionLostError):
                await session.cancel_orders(uuids=uuids)
    assert messages(caplog, logging.DEBUG) == [
        "DELETE /v1/orders/uuids (5 ids): ConnectionLostError"
    ]
