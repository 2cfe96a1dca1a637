"""cancel_open and confirmation against an exchange that departs from its docs: trust nothing
it did not promise."""

from __future__ import annotations

import asyncio
import json

from tests.conftest import SessionFor
from upbit_cancel import BatchCanceller
from upbit_cancel.testing import FakeUpbit, Quirks


def listings(fake: FakeUpbit) -> int:
    """Requests the fake recorded for the open orders' listing."""
    return sum(
        record.method == "GET" and record.path == "/v1/orders/open" for record in fake.records
    )


async def test_cancel_open_of_a_market_touches_no_order_of_another(
    session_for: SessionFor,
) -> None:
    """A listing that answers every market's orders: only the asked market's are canceled."""
    async with FakeUpbit(quirks=Quirks(open_market_ignored=True)) as fake:
        wanted = fake.add_orders(5, market="SGD-BTC")
        others = fake.add_orders(5, market="SGD-ETH")
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel_open(market="SGD-BTC")
        assert sorted(order.uuid for order in result.success) == sorted(wanted)
        assert all(fake.state(uuid) == "wait" for uuid in others)
        assert result.unresolved.count == result.failed.count == 0


async def test_a_listing_that_never_ends_ends_the_run_and_says_so(
    session_for: SessionFor,
) -> None:
    """Every page the same: the run ends in a few requests, cancels what it found, and says
    that the listing did not end."""
    async with FakeUpbit(quirks=Quirks(open_pages_ignored=True)) as fake:
        uuids = fake.add_orders(250)
        async with session_for(fake) as session, asyncio.timeout(30):
            result = await BatchCanceller(session).cancel_open(batch_cancel=False)
        assert result.listing_complete is False
        # Three listings of two pages each, and a page asked ahead in each.
        assert listings(fake) <= 9
        assert {order.uuid for order in result.success} <= set(uuids)
        assert result.success.count >= 100
        assert all(fake.state(order.uuid) == "cancel" for order in result.success)


async def test_pages_shorter_than_asked_do_not_end_the_listing(session_for: SessionFor) -> None:
    """An exchange that answers pages of 50: every open order is still found and canceled."""
    async with FakeUpbit(quirks=Quirks(open_page_size=50)) as fake:
        uuids = fake.add_orders(500)
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel_open(confirm=True)
        assert fake.state_counts()["wait"] == 0
        assert sorted(order.uuid for order in result.success) == sorted(uuids)
        assert result.still_open == ()
        assert result.listing_complete is True


async def test_nothing_left_open_is_said_only_when_a_listing_showed_it(
    session_for: SessionFor,
) -> None:
    """One listing, its orders canceled, no listing after: nobody knows what is left."""
    async with FakeUpbit() as fake:
        fake.add_orders(30)
        async with session_for(fake) as session:
            canceller = BatchCanceller(session)
            once = await canceller.cancel_open(rounds=1, batch_cancel=False)
            again = await canceller.cancel_open()
        assert once.success.count == 30
        assert once.listing_complete is False
        assert again.listing_complete is True
        assert again.success.count == 0


async def test_confirming_by_identifiers_matches_answers_without_them_by_uuid(
    session_for: SessionFor,
) -> None:
    """Queries that leave out the identifier: each order is still found, by its uuid."""
    async with FakeUpbit(quirks=Quirks(identifiers_omitted=True)) as fake:
        uuids = fake.add_orders(10, identifiers=True)
        names = [fake.order(uuid).identifier or "" for uuid in uuids]
        async with session_for(fake) as session:
            result = await BatchCanceller(session).cancel(identifiers=names, confirm=True)
        assert dict(result.states) == dict.fromkeys(names, "cancel")


async def test_a_state_nobody_knows_is_not_a_closed_one(session_for: SessionFor) -> None:
    """An order in a state the library does not know (``trigger_wait``) may still be open."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(3)
        async with session_for(fake) as session:
            canceller = BatchCanceller(session, confirm_timeout=0)
            result = await canceller.cancel(uuids=uuids)
            orders = [
                {"uuid": uuid, "market": "SGD-BTC", "state": "trigger_wait"} for uuid in uuids
            ]
            fake.queue_response(200, json.dumps(orders))
            confirmed = await canceller.confirm(result)
        assert sorted(confirmed.still_open) == sorted(uuids)
        assert all(confirmed.states[uuid] == "trigger_wait" for uuid in uuids)
