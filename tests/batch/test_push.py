"""Confirmation by push: final states from the private stream, REST only for the silent ids.

Every test compares the result's states with the fake's own; REST questions are counted at the
fake (``GET /v1/orders/uuids``).
"""

from __future__ import annotations

import pytest

from tests.conftest import SessionFor
from upbit_cancel import BatchCanceller, BatchResult
from upbit_cancel.testing import FakeUpbit, Faults, StreamFaults


def questions(fake: FakeUpbit) -> int:
    """REST questions the fake was asked (the confirmation's queries)."""
    return sum(
        record.method == "GET" and record.path == "/v1/orders/uuids" for record in fake.records
    )


def assert_states_are_the_exchanges(fake: FakeUpbit, result: BatchResult, uuids: list[str]) -> None:
    assert result.confirmed
    assert result.still_open == ()
    assert result.unknown_states == ()
    assert {uuid: result.states[uuid] for uuid in uuids} == {
        uuid: fake.state(uuid) for uuid in uuids
    }
    placed = [order.uuid for order in result.success] + [order.uuid for order in result.failed]
    assert sorted(placed) == sorted(uuids)


async def test_a_healthy_stream_confirms_without_a_question(session_for: SessionFor) -> None:
    async with FakeUpbit(cancel_delay=0.3, fill_rate=0.05, seed=2) as fake:
        uuids = fake.add_orders(300)
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel(uuids=uuids, confirm=True)
        assert_states_are_the_exchanges(fake, result, uuids)
        assert questions(fake) == 0
        assert {fake.state(uuid) for uuid in uuids} == {"cancel", "done"}
        assert result.requests == 15


async def test_by_query_asks_as_before(session_for: SessionFor) -> None:
    async with FakeUpbit(cancel_delay=0.3, fill_rate=0.05, seed=2) as fake:
        uuids = fake.add_orders(300)
        async with session_for(fake) as session:
            canceller = BatchCanceller(session, confirm_via="query")
            result = await canceller.cancel(uuids=uuids, confirm=True)
        assert_states_are_the_exchanges(fake, result, uuids)
        assert questions(fake) >= 3
        assert fake.stream_connections == 0


@pytest.mark.parametrize(
    "faults",
    [
        StreamFaults(drop_rate=0.1),
        StreamFaults(close_after=40),
        StreamFaults(refuse=True),
    ],
    ids=["dropped-events", "closed-mid-run", "refused"],
)
async def test_a_broken_stream_leaves_the_silent_ids_to_questions(
    session_for: SessionFor, faults: StreamFaults
) -> None:
    """States still equal the exchange's; only what the stream could not vouch for is asked."""
    async with FakeUpbit(cancel_delay=0.3, fill_rate=0.05, seed=5) as fake:
        uuids = fake.add_orders(300)
        fake.stream_faults = faults
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel(uuids=uuids, confirm=True)
        assert_states_are_the_exchanges(fake, result, uuids)
        assert 1 <= questions(fake) <= 3 * 3


async def test_failed_requests_still_get_their_orders_canceled_again(
    session_for: SessionFor,
) -> None:
    """Cancels that failed unprocessed leave orders open, with no event: they are asked about
    and canceled again, as with questions alone."""
    async with FakeUpbit(faults=Faults(error_rate=0.2), seed=9) as fake:
        uuids = fake.add_orders(200)
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel(uuids=uuids, confirm=True)
        assert_states_are_the_exchanges(fake, result, uuids)
        assert all(fake.state(uuid) == "cancel" for uuid in uuids)
        assert result.recanceled


async def test_orders_closed_before_the_run_are_asked_about(session_for: SessionFor) -> None:
    """No snapshot: orders already closed never show on the stream; a question places them."""
    async with FakeUpbit() as fake:
        done = fake.add_orders(30, state="done")
        open_ = fake.add_orders(30)
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel(uuids=done + open_, confirm=True)
        assert_states_are_the_exchanges(fake, result, done + open_)
        assert questions(fake) == 1


async def test_a_key_that_may_not_query_has_no_stream_either(session_for: SessionFor) -> None:
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(10)
        keys = fake.add_credentials(can_query=False)
        async with session_for(fake, keys=keys) as session:
            result = await BatchCanceller(session).cancel(uuids=uuids, confirm=True)
        assert all(fake.state(uuid) == "cancel" for uuid in uuids)
        assert result.unknown_states == tuple(uuids)


async def test_cancel_open_and_a_later_confirm_use_the_stream(session_for: SessionFor) -> None:
    async with FakeUpbit(cancel_delay=0.2, fill_rate=0.05, seed=1) as fake:
        uuids = fake.add_orders(500) + fake.add_orders(20, state="watch")
        async with session_for(fake) as session:
            canceller = BatchCanceller(session)
            result = await canceller.cancel_open(confirm=True)
            assert_states_are_the_exchanges(fake, result, uuids)
            assert questions(fake) == 0
            again = await canceller.confirm(result)
        assert again.states == result.states
