"""Confirmation by push: final states from the private stream, REST only for the silent ids.

Every test compares the result's states with the fake's own; REST questions are counted at the
fake (``GET /v1/orders/uuids``).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import SessionFor
from upbit_cancel import BatchCanceller, BatchResult, BlockedError, NotSentError
from upbit_cancel.testing import FakeUpbit, Faults, StreamFaults

LIST = "DELETE /v1/orders/uuids"


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
        assert questions(fake) >= 1


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


async def test_lost_events_never_stop_the_second_cancels(session_for: SessionFor) -> None:
    """Failed requests leave orders open and events are lost, with a short confirm_timeout:
    the orders left open are still asked about and canceled again in time."""
    async with FakeUpbit(faults=Faults(error_rate=0.2), seed=9) as fake:
        uuids = fake.add_orders(200)
        fake.stream_faults = StreamFaults(drop_rate=0.05)
        async with session_for(fake) as session:
            canceller = BatchCanceller(session, confirm_timeout=1.0)
            result = await canceller.cancel(uuids=uuids, confirm=True)
        assert result.recanceled
        assert all(fake.state(uuid) == "cancel" for uuid in uuids)
        assert_states_are_the_exchanges(fake, result, uuids)


async def test_other_orders_events_do_not_hold_the_wait(session_for: SessionFor) -> None:
    """Events of orders outside the operation keep coming; the silent ones of the operation are
    still asked about, and the operation ends well within its confirm_timeout."""
    async with FakeUpbit(cancel_delay=0.2, seed=4) as fake:
        uuids = fake.add_orders(100)
        others = fake.add_orders(400)
        fake.stream_faults = StreamFaults(drop_rate=0.2)
        async with session_for(fake) as session:
            canceller = BatchCanceller(session, confirm_timeout=30.0)
            task = asyncio.ensure_future(canceller.cancel(uuids=uuids, confirm=True))
            other = BatchCanceller(session)
            while not task.done():
                # Someone else's cancels, pushed on the same account, one chunk at a time.
                await other.cancel(uuids=others[:20])
                others = others[20:] or fake.add_orders(400)
            result = await task
        assert_states_are_the_exchanges(fake, result, uuids)
        assert result.elapsed < 30.0


async def test_cancelled_while_the_stream_connects_lists_the_ids_not_sent(
    session_for: SessionFor,
) -> None:
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(50)
        fake.stream_faults = StreamFaults(silent=True)
        async with session_for(fake) as session:
            canceller = BatchCanceller(session)
            task = asyncio.ensure_future(canceller.cancel(uuids=uuids, confirm=True))
            await fake.wait_for(lambda fake: fake.stream_connections == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            result = canceller.result_of(task)
            assert result is not None
            assert sorted(entry.id for entry in result.unresolved) == sorted(uuids)
            assert all(isinstance(entry.error, NotSentError) for entry in result.unresolved)
        assert all(fake.state(uuid) == "wait" for uuid in uuids)
        assert fake.records == []


async def test_second_cancels_go_on_while_pushes_are_awaited(session_for: SessionFor) -> None:
    """Some cancels fail, and their second cancels fail too; events are lost, and the
    confirmation is short. Third cancels still go while the accepted ones are awaited by push,
    and nothing is left open."""
    async with FakeUpbit(cancel_delay=0.3, seed=0) as fake:
        uuids = fake.add_orders(200)
        fake.set_faults(Faults(error_rate=0.3), endpoint=LIST)
        fake.stream_faults = StreamFaults(drop_rate=0.02)

        def heal(progress: object) -> None:
            # After the second cancels began failing too, the exchange recovers.
            if (
                sum(
                    record.path == "/v1/orders/uuids" and record.method == "GET"
                    for record in fake.records
                )
                >= 1
            ):
                fake.set_faults(Faults(), endpoint=LIST)

        async with session_for(fake) as session:
            canceller = BatchCanceller(session, confirm_timeout=1.0, on_progress=heal)
            result = await canceller.cancel(uuids=uuids, confirm=True)
        assert result.recanceled
        assert_states_are_the_exchanges(fake, result, uuids)
        assert all(fake.state(uuid) in ("cancel", "done") for uuid in uuids)


async def test_a_block_met_by_the_questions_is_every_silent_ids_reason(
    session_for: SessionFor,
) -> None:
    async with FakeUpbit(cancel_delay=0.3) as fake:
        uuids = fake.add_orders(100)
        fake.stream_faults = StreamFaults(drop_rate=1.0)
        fake.set_faults(Faults(error_rate=1.0), endpoint=LIST)

        def block(progress: object) -> None:
            fake.set_faults(Faults(), endpoint=LIST)
            fake.queue_response(418, {"error": {"name": "blocked", "message": "blocked"}})

        async with session_for(fake) as session:
            canceller = BatchCanceller(session, on_progress=block)
            result = await canceller.cancel(uuids=uuids, confirm=True)
        assert result.unknown_states
        assert all(
            isinstance(result.state_errors[value], BlockedError) for value in result.unknown_states
        )
