"""Confirmation: the final state of every order, second cancels, and cancelling all open orders."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SessionFor
from tests.helpers import placed, until
from upbit_cancel import (
    BatchCanceller,
    BatchResult,
    InvalidIdError,
    OutOfScopeError,
    ServerError,
    SlidingWindowLimiter,
)
from upbit_cancel.testing import FakeUpbit, Faults

GATEWAY = "<html><body><h1>502 Bad Gateway</h1></body></html>"
UNKNOWN = [f"{n:08x}-0000-4000-8000-00000000abcd" for n in range(5)]


# -- the fake exchange's order queries ----------------------------------------------------------


async def test_the_fake_answers_order_queries_by_uuid_and_by_identifier(
    fake: FakeUpbit,
    session_for: SessionFor,
) -> None:
    """GET /v1/orders/uuids lists the known ones, oldest first on request, unknown ones absent."""
    first = fake.add_order(identifier="a", side="ask")
    second = fake.add_order(state="done", identifier="b")
    async with session_for(fake) as session:
        orders = await session.orders(uuids=[second, first, UNKNOWN[0]])
        by_identifier = await session.orders(identifiers=["a", "b", "nobody"])
        too_many = [f"{n:08x}-0000-4000-8000-000000000000" for n in range(101)]
        with pytest.raises(ValueError, match="at most 100"):
            await session.orders(uuids=too_many)
    assert [(order.uuid, order.state, order.side) for order in orders] == [
        (second, "done", "bid"),
        (first, "wait", "ask"),
    ]
    assert sorted(order.identifier or "" for order in by_identifier) == ["a", "b"]
    assert all(record.admitted for record in fake.records)


async def test_the_fake_lists_open_orders_by_market_and_state_page_by_page(
    fake: FakeUpbit,
    session_for: SessionFor,
) -> None:
    """GET /v1/orders/open: wait and watch orders of a market, pages of up to 100."""
    waiting = fake.add_orders(150, market="SGD-BTC")
    watching = fake.add_orders(3, market="SGD-BTC", state="watch")
    fake.add_orders(5, market="SGD-ETH")
    fake.add_orders(5, market="SGD-BTC", state="done")
    async with session_for(fake) as session:
        first = await session.open_orders(market="SGD-BTC")
        second = await session.open_orders(market="SGD-BTC", page=2)
    assert len(first) == 100
    assert [order.uuid for order in first + second] == waiting + watching


async def test_a_cancel_may_take_effect_late_or_lose_the_race_to_a_fill(
    session_for: SessionFor,
) -> None:
    """With cancel_delay an accepted order stays open a while; a second cancel is refused."""
    async with FakeUpbit(cancel_delay=0.2, fill_rate=0.5, seed=4) as fake:
        uuids = fake.add_orders(40)
        async with session_for(fake) as session:
            first = await session.cancel_orders(uuids=uuids[:20])
            again = await session.cancel_orders(uuids=uuids[:20])
            assert first.success.count == 20
            assert again.failed.count == 20
            pending = await session.orders(uuids=uuids[:20])
            await until(lambda: all(fake.state(uuid) != "wait" for uuid in uuids[:20]))
            settled = await session.orders(uuids=uuids[:20])
        # Open until the delay has passed, unless filled meanwhile; then canceled or filled.
        pending_states = {order.state for order in pending}
        assert "wait" in pending_states
        assert pending_states <= {"wait", "done"}
        assert {order.state for order in settled} == {"cancel", "done"}
        assert all(fake.state(uuid) == "wait" for uuid in uuids[20:])


# -- confirmation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["uuids", "identifiers"])
async def test_every_id_ends_with_the_exchanges_own_final_state(
    by: Literal["uuids", "identifiers"],
    session_for: SessionFor,
) -> None:
    """Cancel delay, fills in the race, dropped answers and 5xx: states equal the fake's."""
    faults = Faults(drop_rate=0.10, error_rate=0.05, jitter_in=0.005)
    async with FakeUpbit(cancel_delay=0.3, fill_rate=0.1, faults=faults, seed=11) as fake:
        open_orders = fake.add_orders(400, identifiers=True)
        closed = fake.add_orders(20, state="done", identifiers=True)
        canceled = fake.add_orders(20, state="cancel", identifiers=True)
        every = open_orders + closed + canceled
        names = {uuid: fake.order(uuid).identifier or "" for uuid in every}
        unknown = UNKNOWN if by == "uuids" else ["nobody-1", "nobody-2"]
        given = [*(every if by == "uuids" else [names[uuid] for uuid in every]), *unknown]
        async with session_for(fake) as session:
            batch = BatchCanceller(session, confirm_timeout=10.0)
            if by == "uuids":
                result = await batch.cancel(uuids=[*given, "not-a-uuid"], confirm=True)
            else:
                result = await batch.cancel(identifiers=[*given, ""], confirm=True)
        assert result.confirmed
        assert sorted(placed(result)) == sorted({*given, "not-a-uuid" if by == "uuids" else ""})
        assert sorted(result.states) == sorted(set(given))
        for uuid in every:
            key = uuid if by == "uuids" else names[uuid]
            assert result.states[key] == fake.state(uuid), key
        assert all(result.states[value] == "not_found" for value in unknown)
        assert result.still_open == ()
        assert result.unknown_states == ()
        assert {fake.state(uuid) for uuid in open_orders} <= {"cancel", "done"}
        # An order whose first cancel failed before it was processed was canceled again.
        first_cancel: dict[str, int] = {}
        for record in fake.records:
            if record.method == "DELETE":
                for value in record.ids:
                    first_cancel.setdefault(value, record.status)
        unprocessed = {value for value, status in first_cancel.items() if status >= 500}
        assert unprocessed <= result.recanceled
        stats = fake.stats()
        assert stats["rejected_429"] == 0
        assert stats["max_in_window"] <= 30
        invalid = [entry for entry in result.unresolved if isinstance(entry.error, InvalidIdError)]
        assert len(invalid) == 1


async def test_without_the_order_query_permission_states_are_unknown_and_cancels_stand(
    session_for: SessionFor,
) -> None:
    """A key that may cancel but not query: every state None with OutOfScopeError."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(30)
        keys = fake.add_credentials(can_query=False)
        async with session_for(fake, keys=keys) as session:
            result = await BatchCanceller(session).cancel(uuids=uuids, confirm=True)
    assert result.success.count == 30
    assert result.unknown_states == tuple(uuids)
    assert all(isinstance(error, OutOfScopeError) for error in result.state_errors.values())
    assert all(fake.state(uuid) == "cancel" for uuid in uuids)


async def test_a_key_that_may_not_cancel_gets_one_look_and_no_second_cancel(
    session_for: SessionFor,
) -> None:
    """Cancels refused for the key: asked about once, never cancelled again, all still open."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(30)
        keys = fake.add_credentials(can_order=False)
        async with session_for(fake, keys=keys) as session:
            result = await BatchCanceller(session).cancel(uuids=uuids, confirm=True)
    assert sorted(result.still_open) == sorted(uuids)
    assert result.recanceled == frozenset()
    methods = [record.method for record in fake.records]
    assert methods.count("GET") == 1
    assert methods[-1] == "GET"
    assert all(fake.state(uuid) == "wait" for uuid in uuids)


async def test_confirm_works_on_an_earlier_result(session_for: SessionFor) -> None:
    """confirm(result) asks later about a result kept from before."""
    async with FakeUpbit(cancel_delay=0.1) as fake:
        uuids = fake.add_orders(25)
        async with session_for(fake) as session:
            batch = BatchCanceller(session)
            result = await batch.cancel(uuids=uuids)
            assert result.states == {}
            confirmed = await batch.confirm(result)
        assert dict(confirmed.states) == dict.fromkeys(uuids, "cancel")
        assert batch.last_result == confirmed
        assert confirmed.requests == len(fake.records) - result.requests  # its own queries


# -- cancelling everything open -------------------------------------------------------------------


async def test_cancel_open_in_one_market_touches_no_other(session_for: SessionFor) -> None:
    """cancel_open(market=...) finds every open order of that market, pages included."""
    async with FakeUpbit(cancel_delay=0.1) as fake:
        target = fake.add_orders(230, market="SGD-BTC") + fake.add_orders(4, "SGD-BTC", "watch")
        others = fake.add_orders(50, market="SGD-ETH")
        fake.add_orders(10, market="SGD-BTC", state="done")
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel_open(market="SGD-BTC", confirm=True)
        assert sorted(placed(result)) == sorted(target)
        assert result.success.count == len(target)
        assert all(fake.state(uuid) == "cancel" for uuid in target)
        assert all(fake.state(uuid) == "wait" for uuid in others)
        assert result.still_open == ()


async def test_cancel_open_lists_again_for_orders_it_did_not_see(session_for: SessionFor) -> None:
    """Orders that show up after the first listing are found on the next one."""
    async with FakeUpbit() as fake:
        early = fake.add_orders(30)
        placed_later: list[str] = []

        def place_more(progress: object) -> None:
            if not placed_later:
                placed_later.extend(fake.add_orders(5))

        async with session_for(fake) as session:
            canceller = BatchCanceller(session, on_progress=place_more)
            result = await canceller.cancel_open(batch_cancel=False)
        assert sorted(placed(result)) == sorted(early + placed_later)
        assert fake.state_counts()["wait"] == 0


async def test_cancel_open_asks_again_after_a_gateway_error(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """A 502 on the listing is no reason to give up: a listing changes nothing."""
    uuids = fake.add_orders(40)
    fake.queue_response(502, GATEWAY, content_type="text/html", count=2)
    async with session_for(fake) as session:
        result = await BatchCanceller(session).cancel_open(confirm=True)
    assert sorted(placed(result)) == sorted(uuids)
    assert all(fake.state(uuid) == "cancel" for uuid in uuids)


async def test_cancel_open_raises_when_the_listing_keeps_failing(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """Three failed attempts at a page: the error is raised, and nothing was canceled."""
    uuids = fake.add_orders(40)
    fake.queue_response(503, GATEWAY, content_type="text/html", count=3)
    async with session_for(fake) as session:
        with pytest.raises(ServerError):
            await BatchCanceller(session).cancel_open(batch_cancel=False)
    assert all(fake.state(uuid) == "wait" for uuid in uuids)
    assert len(fake.records) == 3


# -- interrupted -----------------------------------------------------------------------------------


async def test_cancelled_during_a_second_cancel_every_id_is_in_last_result(
    session_for: SessionFor,
) -> None:
    """Cancelled while confirmation cancels again: last_result still places every id."""
    async with FakeUpbit(faults=Faults(error_rate=0.4), seed=5) as fake:
        uuids = fake.add_orders(400)
        async with session_for(fake) as session:
            task: asyncio.Task[BatchResult] | None = None

            def cancel_in_the_second_round(progress: object) -> None:
                # A chunk completed after the first query: a second cancel.
                if task is not None and any(record.method == "GET" for record in fake.records):
                    task.cancel()

            canceller = BatchCanceller(session, on_progress=cancel_in_the_second_round)
            task = asyncio.create_task(canceller.cancel(uuids=uuids, confirm=True))
            with pytest.raises(asyncio.CancelledError):
                await task
        result = canceller.last_result
        assert result is not None
        assert sorted(placed(result)) == sorted(uuids)
        canceled = {record_id for record in fake.records for record_id in record.canceled}
        assert {order.uuid for order in result.success.orders} <= canceled


async def test_cancel_open_cancelled_in_its_second_round_keeps_the_first(
    session_for: SessionFor,
) -> None:
    """Cancelled during the second listing's cancels: both rounds' ids are in last_result."""
    async with FakeUpbit() as fake:
        first = fake.add_orders(100)
        later: list[str] = []
        task: asyncio.Task[BatchResult] | None = None
        calls = 0

        def step(progress: object) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                later.extend(fake.add_orders(100))
            elif calls == 6 and task is not None:  # the first chunk of the second round
                task.cancel()

        async with session_for(fake) as session:
            canceller = BatchCanceller(session, on_progress=step, max_in_flight=1)
            task = asyncio.create_task(canceller.cancel_open(batch_cancel=False))
            with pytest.raises(asyncio.CancelledError):
                await task
        result = canceller.last_result
        assert result is not None
        assert sorted(placed(result)) == sorted(first + later)
        assert result.success.count >= 120


# -- a property ----------------------------------------------------------------------------------

STATES = st.sampled_from(["wait", "wait", "wait", "watch", "done", "cancel", "prevented"])


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    states=st.lists(STATES, min_size=1, max_size=60),
    unknown=st.integers(0, 3),
    delay=st.sampled_from([0.0, 0.05, 0.15]),
    fills=st.sampled_from([0.0, 0.3]),
    drops=st.sampled_from([0.0, 0.15]),
    errors=st.sampled_from([0.0, 0.1]),
    seed=st.integers(0, 1000),
)
def test_states_never_contradict_the_exchange(
    states: list[str],
    unknown: int,
    delay: float,
    fills: float,
    drops: float,
    errors: float,
    seed: int,
    session_for: SessionFor,
) -> None:
    """For random orders, delays and faults: each state is the exchange's, or says unknown."""

    async def main() -> None:
        faults = Faults(drop_rate=drops, error_rate=errors)
        fill_rate = fills if delay else 0.0
        async with FakeUpbit(
            limit=10_000, cancel_delay=delay, fill_rate=fill_rate, faults=faults, seed=seed
        ) as fake:
            uuids = [fake.add_order(state=state) for state in states]  # type: ignore[arg-type]
            given = uuids + UNKNOWN[:unknown]
            limiter = SlidingWindowLimiter(10_000, 1.0)
            async with session_for(fake, limiter=limiter) as session:
                batch = BatchCanceller(session, confirm_timeout=5.0)
                result = await batch.cancel(uuids=given, confirm=True)
            assert sorted(placed(result)) == sorted(set(given))
            for uuid, state in result.states.items():
                if state is None:
                    assert uuid in result.state_errors
                elif uuid in UNKNOWN:
                    assert state == "not_found"
                else:
                    assert state == fake.state(uuid)
            for uuid in result.still_open:
                assert fake.state(uuid) in ("wait", "watch")

    asyncio.run(main())
