"""cancel_open's two lanes: batch cancels beside list cancels, each within its group's budget.

Read at the fake: both lanes' 429s, the default group's requests in any second and the batch
cancels in any 2 s; every order of the market closed, ``watch`` ones by the list lane; every
order either lane touched in exactly one list; faults in either lane.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.conftest import SessionFor
from upbit_cancel import BatchCanceller, BatchResult, OutOfScopeError, SlidingWindowLimiter
from upbit_cancel._batch import canceller as canceller_module
from upbit_cancel.testing import FakeUpbit, Faults

BATCH = "DELETE /v1/orders/open"
LIST = "DELETE /v1/orders/uuids"


def placed(result: BatchResult) -> list[str]:
    """Every id of the result, from all three lists (repeats kept, to be counted)."""
    return [
        *(order.uuid for order in result.success),
        *(order.uuid for order in result.failed),
        *(entry.id for entry in result.unresolved),
    ]


def canceled_by(fake: FakeUpbit, method: str, path: str) -> set[str]:
    return {
        uuid
        for record in fake.records
        if (record.method, record.path) == (method, path)
        for uuid in record.canceled
    }


def assert_within_budgets(fake: FakeUpbit) -> None:
    groups = fake.stats()["groups"]
    assert groups["default"]["rejected_429"] == 0
    assert groups["order-cancel-all"]["rejected_429"] == 0
    assert fake.max_in_window(1.0) <= 30
    assert fake.max_in_window(2.0, group="order-cancel-all") <= 1


async def test_both_lanes_close_every_order_of_the_market(session_for: SessionFor) -> None:
    """wait orders from both ends, watch orders by list; the other market untouched; each
    order once in the result; neither group's budget exceeded."""
    async with FakeUpbit() as fake:
        wait = fake.add_orders(700, "SGD-BTC", side="bid")
        watch = fake.add_orders(40, "SGD-BTC", state="watch")
        wait += fake.add_orders(700, "SGD-BTC", side="ask")
        other = fake.add_orders(150, "SGD-ETH")
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel_open(market="SGD-BTC")
        ids = placed(result)
        assert len(ids) == len(set(ids))
        assert sorted(ids) == sorted(wait + watch)
        assert result.success.count == len(wait) + len(watch)
        assert result.listing_complete is True
        assert all(fake.state(uuid) == "cancel" for uuid in wait + watch)
        assert all(fake.state(uuid) == "wait" for uuid in other)
        by_batch = canceled_by(fake, "DELETE", "/v1/orders/open")
        assert result.batch_canceled == by_batch
        assert len(by_batch) >= 300  # the first strike at least
        assert not by_batch & set(watch)
        assert set(watch) <= canceled_by(fake, "DELETE", "/v1/orders/uuids")
        # The lanes worked from opposite ends: the batch lane's orders are the newest.
        assert wait[-1] in by_batch
        assert wait[0] not in by_batch
        assert_within_budgets(fake)
        assert result.requests == len(fake.records)


async def test_the_batch_lane_fires_before_any_listing_comes_back(
    session_for: SessionFor,
) -> None:
    """The batch cancel reaches the exchange while the first page of the listing is still on
    its way back: 300 orders canceled in one round trip."""
    async with FakeUpbit(faults=Faults(latency_out=0.2)) as fake:
        fake.add_orders(400)
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel_open()
        first_batch = next(record for record in fake.records if record.group != "default")
        first_page = next(record for record in fake.records if record.method == "GET")
        assert first_batch.arrival < first_page.arrival + 0.2
        assert len(first_batch.canceled) == 300
        assert result.success.count == 400


async def test_without_the_batch_lane_nothing_is_batch_canceled(session_for: SessionFor) -> None:
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(60)
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel_open(batch_cancel=False)
        assert sorted(placed(result)) == sorted(uuids)
        assert result.batch_canceled == frozenset()
        assert all(record.group == "default" for record in fake.records)


async def test_every_market_when_none_is_named(session_for: SessionFor) -> None:
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(200, "SGD-BTC") + fake.add_orders(200, "KRW-ETH")
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel_open()
        assert sorted(placed(result)) == sorted(uuids)
        assert fake.state_counts()["wait"] == 0


@pytest.mark.parametrize(
    ("list_lane", "batch_lane"),
    [
        # The list lane's answer (refused) comes back before the batch cancel's.
        (Faults(latency_in=0.6), Faults(latency_in=0.2, latency_out=1.5)),
        # The batch cancel's answer comes back while the list lane's requests are on their way
        # (the listing, with no delay, has 0.5 s to come back first: time enough under load).
        (Faults(latency_in=1.0, latency_out=1.0), Faults(latency_in=0.5)),
    ],
    ids=["refused-first", "batch-answer-first"],
)
async def test_an_order_the_other_lane_canceled_is_a_success_once(
    session_for: SessionFor, list_lane: Faults, batch_lane: Faults
) -> None:
    """The lanes race for the same orders: the listing comes back at once, the batch cancel
    reaches the orders first, the list lane's cancels later. An order the list lane then finds
    canceled is a success, once."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(120)
        fake.set_faults(list_lane, endpoint=LIST)
        fake.set_faults(batch_lane, endpoint=BATCH)
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel_open()
        ids = placed(result)
        assert sorted(ids) == sorted(uuids)
        assert result.success.count == 120
        assert result.failed.count == 0
        # The list lane did send some of them, and was refused: they were canceled already.
        refused = [record for record in fake.records if record.path == "/v1/orders/uuids"]
        assert refused
        assert all(not record.canceled for record in refused)
        assert result.batch_canceled == set(uuids)


@pytest.mark.parametrize("fault", ["drop", "error", "malformed"])
async def test_a_failing_batch_lane_leaves_the_work_to_the_list_lane(
    session_for: SessionFor, fault: str
) -> None:
    """Every batch cancel fails: the lane gives up after three, the list lane closes every
    order, and what a batch cancel did without an answer is said."""
    faults = {
        "drop": Faults(drop_rate=1.0),
        "error": Faults(error_rate=1.0),
        "malformed": Faults(malformed_rate=1.0),
    }[fault]
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(900) + fake.add_orders(20, state="watch")
        fake.set_faults(faults, endpoint=BATCH)
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel_open(confirm=True)
        assert fake.state_counts()["wait"] == fake.state_counts()["watch"] == 0
        assert result.still_open == ()
        batch_calls = [record for record in fake.records if record.group == "order-cancel-all"]
        assert len(batch_calls) <= 3
        assert result.batch_unanswered == len(batch_calls)
        assert result.batch_canceled == frozenset()
        ids = placed(result)
        assert len(ids) == len(set(ids))
        unnamed = canceled_by(fake, "DELETE", "/v1/orders/open")
        # Every order is in the result, but those a lost batch cancel closed before any
        # listing showed them; each is placed by what the exchange says of it.
        assert set(ids) | unnamed == set(uuids)
        assert set(ids) <= set(uuids)
        assert all(fake.state(order.uuid) == "cancel" for order in result.success)
        assert result.failed.count == 0
        assert_within_budgets(fake)


async def test_faults_in_both_lanes_still_close_everything(session_for: SessionFor) -> None:
    """Lost answers and gateway errors in both lanes' cancels: with confirmation, every order
    closes, each once in the result, within both budgets."""
    async with FakeUpbit(seed=7) as fake:
        uuids = fake.add_orders(1200) + fake.add_orders(30, state="watch")
        fake.set_faults(Faults(drop_rate=0.2, error_rate=0.2), endpoint=LIST)
        fake.set_faults(Faults(drop_rate=0.3, error_rate=0.2), endpoint=BATCH)
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel_open(confirm=True)
        counts = fake.state_counts()
        assert counts["wait"] == counts["watch"] == 0
        ids = placed(result)
        assert Counter(ids).most_common(1)[0][1] == 1
        unnamed = canceled_by(fake, "DELETE", "/v1/orders/open") - set(ids)
        assert set(ids) | unnamed == set(uuids)
        assert result.still_open == ()
        assert result.unresolved.count == 0
        assert_within_budgets(fake)


@pytest.mark.parametrize(
    ("market", "error"),
    [("", ValueError), ("sgd-btc", ValueError), ("SGD-BTC,SGD-ETH", ValueError), (3, TypeError)],
)
async def test_a_market_that_is_not_a_code_is_refused_before_anything_is_sent(
    session_for: SessionFor, market: object, error: type[Exception]
) -> None:
    async with FakeUpbit() as fake:
        fake.add_orders(5)
        async with session_for(fake) as session:
            with pytest.raises(error, match="market code such as 'SGD-BTC'"):
                await BatchCanceller(session).cancel_open(market=market)  # type: ignore[arg-type]
        assert fake.records == []


@pytest.mark.parametrize("confirm", [False, True])
async def test_refusals_while_a_lost_batch_cancel_was_in_flight_are_possibly_its_cancels(
    session_for: SessionFor, confirm: bool
) -> None:
    """The batch cancel reaches the orders at once, its answer is lost a second later; the
    list lane's cancels of the same orders were refused meanwhile. Those refusals may be the
    lost cancel's work: possibly canceled, and with confirmation placed by their final state."""
    async with FakeUpbit(cancel_delay=0.5) as fake:
        uuids = fake.add_orders(400)
        fake.set_faults(Faults(latency_out=1.0, drop_rate=1.0), endpoint=BATCH)
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel_open(confirm=confirm)
        by_batch = canceled_by(fake, "DELETE", "/v1/orders/open")
        assert by_batch
        assert result.batch_unanswered >= 1
        refused = {order.uuid for order in result.failed}
        if confirm:
            assert refused == set()
            assert by_batch <= {order.uuid for order in result.success}
            assert by_batch <= result.placed_by_confirmation
        else:
            assert by_batch & set(uuids) <= refused | {o.uuid for o in result.success}
            assert refused <= result.possibly_canceled
        assert fake.state_counts()["wait"] == 0


async def test_a_listed_order_whose_cancel_got_no_answer_is_canceled_again(
    session_for: SessionFor,
) -> None:
    """The list lane's cancels all fail with a gateway error (nothing processed); the next
    listing shows the orders still open: they are canceled again, and the listing ends."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(50)
        fake.set_faults(Faults(error_rate=1.0), endpoint=LIST)

        def heal(progress: object) -> None:
            fake.set_faults(Faults(), endpoint=LIST)

        async with session_for(fake) as session:
            canceller = BatchCanceller(session, on_progress=heal)
            result = await canceller.cancel_open(batch_cancel=False)
        assert sorted(order.uuid for order in result.success) == sorted(uuids)
        unprocessed = {
            uuid
            for record in fake.records
            if record.path == "/v1/orders/uuids" and record.status >= 500
            for uuid in record.ids
        }
        assert unprocessed
        assert result.recanceled == unprocessed
        assert result.listing_complete is True
        assert fake.state_counts()["wait"] == 0


async def test_when_the_listing_fails_the_batch_lane_still_cancels_what_it_can(
    session_for: SessionFor,
) -> None:
    """A key that may cancel but not list: the listing's error is raised once the batch lane
    has canceled every wait order it could; the result holds them."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(700)
        watch = fake.add_orders(5, state="watch")
        keys = fake.add_credentials(can_query=False)
        fast = SlidingWindowLimiter(100, 1.0, group="order-cancel-all")
        async with session_for(fake, keys=keys, group_limiters={"order-cancel-all": fast}) as s:
            canceller = BatchCanceller(s)
            with pytest.raises(OutOfScopeError):
                await canceller.cancel_open()
        result = canceller.last_result
        assert result is not None
        assert sorted(order.uuid for order in result.success) == sorted(uuids)
        assert result.batch_canceled == set(uuids)
        assert all(fake.state(uuid) == "watch" for uuid in watch)


async def test_after_a_listing_error_the_batch_lane_carries_on_for_a_bounded_time(
    session_for: SessionFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its time after the error is bounded: past it the lane sends nothing more (here, no
    second batch cancel), and what the first one canceled is in the result."""
    monkeypatch.setattr(canceller_module, "BATCH_LANE_AFTER_ERROR", 0.2)
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(1000)
        keys = fake.add_credentials(can_query=False)
        async with session_for(fake, keys=keys) as session:
            canceller = BatchCanceller(session)
            with pytest.raises(OutOfScopeError):
                await canceller.cancel_open()
        result = canceller.last_result
        assert result is not None
        batches = [record for record in fake.records if record.group == "order-cancel-all"]
        assert len(batches) == 1
        assert result.batch_canceled == set(batches[0].canceled)
        assert len(result.batch_canceled) == 300
        assert sum(fake.state(uuid) == "wait" for uuid in uuids) == 700


async def test_a_second_cancel_refused_because_the_batch_lane_was_first_is_a_success(
    session_for: SessionFor,
) -> None:
    """Round one's list cancels fail unprocessed; round two cancels the orders again, slowly,
    and the batch lane cancels them meanwhile. The refusal of the second cancel does not undo
    the batch lane's success."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(700)
        fake.set_faults(Faults(error_rate=1.0), endpoint=LIST)

        def slow_down(progress: object) -> None:
            if any(record.path == "/v1/orders/uuids" for record in fake.records):
                fake.set_faults(Faults(latency_in=2.5), endpoint=LIST)

        async with session_for(fake) as session:
            result = await BatchCanceller(session, on_progress=slow_down).cancel_open()
        by_batch = canceled_by(fake, "DELETE", "/v1/orders/open")
        assert by_batch <= result.batch_canceled
        assert result.batch_canceled <= {order.uuid for order in result.success}
        assert sorted(placed(result)) == sorted(uuids)
        assert result.failed.count == 0
        assert fake.state_counts()["wait"] == 0


async def test_a_listing_made_while_cancels_take_effect_proves_nothing(
    session_for: SessionFor,
) -> None:
    """Cancels take 0.3 s to take effect: the listing right after them still shows the orders
    (its pages may shift as they close). cancel_open lists again once they have closed before
    it says that nothing is left."""
    async with FakeUpbit(cancel_delay=0.3) as fake:
        uuids = fake.add_orders(250) + fake.add_orders(20, state="watch")
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel_open(batch_cancel=False)
        assert sorted(placed(result)) == sorted(uuids)
        assert result.listing_complete is True
        last_listing = [record for record in fake.records if record.method == "GET"][-1]
        closed_at = max(record.arrival for record in fake.records if record.canceled) + 0.3
        assert last_listing.arrival >= closed_at
