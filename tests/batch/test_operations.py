"""Each operation owns its accounting: its requests, its 429s, its ids and its partial result.

Counts are checked against what the fake exchange recorded for each operation's own ids, never
against the library's counters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.conftest import SessionFor
from tests.helpers import placed
from upbit_cancel import BatchCanceller, BatchResult, OrderEntry, SlidingWindowLimiter
from upbit_cancel.testing import FakeUpbit, Faults, RequestRecord

CLOSED_STATES = {"cancel", "done", "prevented", "not_found"}


def records_of(records: list[RequestRecord], ids: list[str]) -> list[RequestRecord]:
    """The cancels the fake recorded that carried these ids."""
    own = set(ids)
    return [record for record in records if record.ids and set(record.ids) <= own]


async def test_two_batches_at_once_on_one_session_each_count_their_own_requests(
    session_for: SessionFor,
) -> None:
    """One session, one canceller, two batches at once: each reports the requests and 429s the
    exchange saw for its own ids, no more, no fewer."""
    # The exchange allows 20 a window, the client believes 30: 429s come, shared by both.
    async with FakeUpbit(limit=20) as fake:
        small, large = fake.add_orders(200), fake.add_orders(2_000)
        limiter = SlidingWindowLimiter(30, 1.0)
        async with session_for(fake, limiter=limiter) as session:
            canceller = BatchCanceller(session)
            first = asyncio.create_task(canceller.cancel(uuids=small))
            second = asyncio.create_task(canceller.cancel(uuids=large))
            results = await asyncio.gather(first, second)
        records = fake.records
    for ids, result in zip((small, large), results, strict=True):
        own = records_of(records, ids)
        assert result.requests == len(own)
        assert result.rate_limited == sum(record.status == 429 for record in own)
        assert result.success.count == len(ids)
    assert sum(result.rate_limited for result in results) > 0  # the case was exercised
    assert sum(result.requests for result in results) == len(records)
    assert canceller.result_of(first) == results[0]
    assert canceller.result_of(second) == results[1]


async def test_concurrent_operations_never_overwrite_each_others_partial_results(
    session_for: SessionFor,
) -> None:
    """One operation cancelled while another finishes: each one's result stays its own."""
    async with FakeUpbit(limit=10_000, faults=Faults(jitter_in=0.01)) as fake:
        small, large = fake.add_orders(100), fake.add_orders(3_000)
        async with session_for(fake, limiter=SlidingWindowLimiter(10_000, 1.0)) as session:
            canceller = BatchCanceller(session, max_in_flight=4)
            slow = asyncio.create_task(canceller.cancel(uuids=large))
            await fake.wait_for(lambda exchange: exchange.received >= 20)
            done = await canceller.cancel(uuids=small)
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow
        interrupted = canceller.result_of(slow)
        assert interrupted is not None
        assert sorted(placed(interrupted)) == sorted(large)
        assert sorted(placed(done)) == sorted(small)
        assert canceller.result_of() == done  # this task's own operation
        assert canceller.last_result is not None


async def test_after_confirmation_no_id_the_exchange_reported_is_of_unknown_fate(
    session_for: SessionFor,
) -> None:
    """A fifth of the answers lost: confirmation learns every order's final state, and no id
    whose state the exchange reported closed stays unresolved."""
    async with FakeUpbit(faults=Faults(drop_rate=0.2), seed=3) as fake:
        uuids = fake.add_orders(400)
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel(uuids=uuids, confirm=True)
        states = {uuid: fake.state(uuid) for uuid in uuids}
    dropped = {
        value
        for record in fake.records
        if record.fault == "drop" and record.method == "DELETE"
        for value in record.ids
    }
    assert dropped  # the case was exercised
    assert all(result.states[uuid] == states[uuid] for uuid in uuids)
    unknown_fate = {entry.id for entry in result.unresolved}
    assert not {uuid for uuid in unknown_fate if result.states[uuid] in CLOSED_STATES}
    assert result.unresolved.count == 0
    assert result.success.count == 400
    assert result.placed_by_confirmation <= dropped
    assert result.placed_by_confirmation  # some answers were lost for good
    assert result.still_open == ()


async def test_a_filled_or_unknown_order_whose_cancel_got_no_answer_is_among_the_refused(
    session_for: SessionFor,
) -> None:
    """Filled, and never the exchange's: both refused once confirmation learns it."""
    async with FakeUpbit(unknown_ids="omit") as fake:
        filled = fake.add_orders(3, state="done")
        unknown = ["00000001-0000-4000-8000-00000000abcd"]
        for _ in range(2):
            fake.queue_response(502, "<html>Bad Gateway</html>", content_type="text/html")
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel(uuids=[*filled, *unknown], confirm=True)
    assert [order.uuid for order in result.failed] == [*filled, *unknown]
    assert result.failed[3].market == ""
    assert result.placed_by_confirmation == frozenset([*filled, *unknown])
    assert result.unresolved.count == 0


def test_unresolved_reads_like_the_other_lists() -> None:
    """count is a number, and the list iterates and has a length, like success and failed."""
    result = BatchResult()
    for listing in (result.success, result.failed, result.unresolved):
        assert isinstance(listing.count, int)
        assert listing.count == len(listing) == len(list(listing)) == 0


def test_every_list_reads_alike_whatever_it_was_made_from() -> None:
    """A result made by hand from tuples: each list is a list of the library's, with a number
    for ``count``; entries of another kind are refused."""
    entry = OrderEntry("cdd92199-2897-4e14-9448-f923320408ad", "SGD-BTC")
    result = BatchResult(success=(entry,), failed=[entry], unresolved=())
    assert result.success.count == result.failed.count == 1
    assert result.unresolved.count == 0
    with pytest.raises(TypeError, match="UnresolvedOrder"):
        BatchResult(unresolved=("cdd92199-2897-4e14-9448-f923320408ad",))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="OrderEntry"):
        BatchResult(success="cdd92199")  # type: ignore[arg-type]


async def test_two_non_strings_that_look_alike_are_two_ids(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """Non-strings are never sent; each is an id of its own, however alike their names."""
    given = [10**70, 10**70 + 1, 10**70]
    async with session_for(fake) as session:
        result = await BatchCanceller(session).cancel(identifiers=given)  # type: ignore[arg-type]
    assert result.unresolved.count == len(given)
    assert all(entry.id.startswith("<int ") for entry in result.unresolved)


async def test_an_input_that_raises_cancelled_error_loses_no_id(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """The input's own CancelledError (no cancellation of the task) is raised once every id it
    gave is settled; none is lost."""
    uuids = fake.add_orders(30)

    def given() -> Iterator[str]:
        yield from uuids
        raise asyncio.CancelledError("the input's own")

    async with session_for(fake) as session:
        canceller = BatchCanceller(session)
        with pytest.raises(asyncio.CancelledError, match="the input's own"):
            await canceller.cancel(uuids=given())
    result = canceller.last_result
    assert result is not None
    assert sorted(placed(result)) == sorted(uuids)
    assert all(fake.state(uuid) == "cancel" for uuid in uuids)


async def test_confirming_an_earlier_result_counts_only_its_own_requests(
    session_for: SessionFor,
) -> None:
    """confirm(result) is an operation of its own: its counts are what it sent."""
    async with FakeUpbit(faults=Faults(drop_rate=1.0)) as fake:
        uuids = fake.add_orders(150)
        async with session_for(fake) as session:
            canceller = BatchCanceller(session)
            first = await canceller.cancel(uuids=uuids)
            sent_by_first = len(fake.records)
            fake.faults = Faults()
            confirmed = await canceller.confirm(first)
    assert first.requests == sent_by_first
    assert confirmed.requests == len(fake.records) - sent_by_first


async def test_a_second_cancel_refused_while_the_first_takes_effect_is_not_a_refusal(
    session_for: SessionFor,
) -> None:
    """Cancels the exchange accepted but whose answers were lost, confirmed while they still
    take effect: the second cancels are refused as under way, and the orders end canceled,
    among the canceled."""
    async with FakeUpbit(cancel_delay=0.3, faults=Faults(drop_rate=1.0)) as fake:
        uuids = fake.add_orders(5)
        async with session_for(fake) as session:
            canceller = BatchCanceller(session)
            first = await canceller.cancel(uuids=uuids)
            fake.faults = Faults()
            result = await canceller.confirm(first)
    assert all(fake.state(uuid) == "cancel" for uuid in uuids)
    assert result.recanceled == frozenset(uuids)  # the case was exercised
    assert sorted(order.uuid for order in result.success) == sorted(uuids)
    assert result.placed_by_confirmation == frozenset(uuids)
    assert result.possibly_canceled == frozenset()


async def test_a_result_made_by_hand_is_confirmed_entry_by_entry(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """An entry that names no id of the result's kind, or an id twice: each entry stays."""
    [uuid] = fake.add_orders(1, identifiers=True)
    identifier = fake.order(uuid).identifier
    assert identifier is not None
    entries = [
        OrderEntry(uuid, "SGD-BTC", identifier),
        OrderEntry(uuid, "SGD-BTC", identifier),
        OrderEntry(uuid, "SGD-BTC", None),
    ]
    given = BatchResult(success=entries, kind="identifiers")
    async with session_for(fake) as session:
        result = await BatchCanceller(session).confirm(given)
    assert result.success.count == 3
    assert result.states == {identifier: "wait"}
