"""The fake's batch cancel (``DELETE /v1/orders/open``) and the session's call of it.

The fake serves it as Upbit documents it: ``wait`` orders only, chosen by side, market and
quote currency, ``count`` 20 when left out and at most 300, newest first by default, in a
rate-limit group of its own (1 call per 2 s) with its own records and 429s.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import SessionFor
from upbit_cancel import (
    InvalidRequestError,
    OutcomeUnknownError,
    RateLimitError,
    SlidingWindowLimiter,
    UpbitSession,
)
from upbit_cancel.testing import FakeUpbit, Faults


def fast_fake(**options: Any) -> FakeUpbit:
    """A fake whose batch-cancel group lets 100 calls through a second: the filters' tests
    need not wait 2 s between calls (its own pace is tested apart)."""
    return FakeUpbit(cancel_all_limit=100, cancel_all_window=1.0, **options)


def fast_session(fake: FakeUpbit, session_for: SessionFor) -> UpbitSession:
    limiter = SlidingWindowLimiter(100, 1.0, group="order-cancel-all")
    return session_for(fake, group_limiters={"order-cancel-all": limiter})


def canceled(result: Any) -> set[str]:
    return {order.uuid for order in result.success}


async def test_without_count_upbit_cancels_only_twenty(session_for: SessionFor) -> None:
    """The trap the session never falls in: a bare call cancels the 20 newest only; the
    session's call cancels up to 300."""
    async with fast_fake() as fake:
        uuids = fake.add_orders(50)
        async with fast_session(fake, session_for) as session:
            bare = await session.request("DELETE", "/v1/orders/open")
            assert [order["uuid"] for order in bare["success"]["orders"]] == uuids[::-1][:20]
            result = await session.cancel_open_orders()
        assert canceled(result) == set(uuids[:30])
        assert fake.state_counts()["wait"] == 0


async def test_count_and_order_are_what_was_asked(session_for: SessionFor) -> None:
    async with fast_fake() as fake:
        uuids = fake.add_orders(3)
        async with fast_session(fake, session_for) as session:
            result = await session.cancel_open_orders(count=2, order_by="asc")
        assert [order.uuid for order in result.success] == uuids[:2]
        (record,) = fake.records
        assert (record.group, record.path, record.method) == (
            "order-cancel-all",
            "/v1/orders/open",
            "DELETE",
        )


async def test_filters_choose_side_market_and_currency(session_for: SessionFor) -> None:
    async with fast_fake() as fake:
        btc_bids = fake.add_orders(3, "SGD-BTC", side="bid")
        btc_asks = fake.add_orders(3, "SGD-BTC", side="ask")
        eth = fake.add_orders(3, "SGD-ETH")
        krw = fake.add_orders(3, "KRW-BTC")
        async with fast_session(fake, session_for) as session:
            asks = await session.cancel_open_orders(side="ask", pairs=["SGD-BTC", "SGD-ETH"])
            assert canceled(asks) == set(btc_asks)
            not_eth = await session.cancel_open_orders(
                quote_currencies=["SGD"], excluded_pairs=["SGD-ETH"]
            )
            assert canceled(not_eth) == set(btc_bids)
            excluded_wins = await session.cancel_open_orders(
                pairs=["SGD-ETH"], excluded_pairs=["SGD-ETH"]
            )
            assert excluded_wins.success.count == 0
            rest = await session.cancel_open_orders(pairs=["KRW-BTC"])
            assert canceled(rest) == set(krw)
        assert all(fake.state(uuid) == "wait" for uuid in eth)


async def test_only_wait_orders_newest_first(session_for: SessionFor) -> None:
    """``watch`` orders and closed ones are never touched; ``count`` takes the newest."""
    async with fast_fake() as fake:
        old = fake.add_orders(5)
        watch = fake.add_orders(5, state="watch")
        new = fake.add_orders(5)
        fake.add_orders(5, state="done")
        async with fast_session(fake, session_for) as session:
            newest = await session.cancel_open_orders(count=5)
            oldest = await session.cancel_open_orders(count=300, order_by="asc")
        assert canceled(newest) == set(new)
        assert [order.uuid for order in oldest.success] == old
        assert all(fake.state(uuid) == "watch" for uuid in watch)
        assert oldest.failed.count == 0


@pytest.mark.parametrize(
    "params",
    [
        {"count": 301},
        {"count": 0},
        {"count": "many"},
        {"cancel_side": "both"},
        {"pairs": "SGD-BTC", "quote_currencies": "SGD"},
        {"pairs": ",".join(f"SGD-C{n}" for n in range(21))},
        {"pairs": ""},
        {"order_by": "newest"},
        {"market": "SGD-BTC"},
        [("count", "5"), ("count", "300")],
        [("order_by", "asc"), ("order_by", "desc")],
        {"count": "1_0"},
        {"count": "+3"},
        {"count": " 2"},
    ],
)
async def test_the_fake_refuses_what_upbit_refuses(session_for: SessionFor, params: object) -> None:
    async with fast_fake() as fake:
        uuids = fake.add_orders(3)
        async with fast_session(fake, session_for) as session:
            with pytest.raises(InvalidRequestError):
                await session.request("DELETE", "/v1/orders/open", params=params)  # type: ignore[arg-type]
        assert all(fake.state(uuid) == "wait" for uuid in uuids)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"count": 0}, ValueError),
        ({"count": 301}, ValueError),
        ({"count": True}, TypeError),
        ({"side": "both"}, ValueError),
        ({"order_by": "newest"}, ValueError),
        ({"pairs": "SGD-BTC"}, TypeError),
        ({"pairs": []}, ValueError),
        ({"pairs": ["SGD-BTC,SGD-ETH"]}, ValueError),
        ({"pairs": [f"SGD-C{n}" for n in range(21)]}, ValueError),
        ({"pairs": ["SGD-BTC"], "quote_currencies": ["SGD"]}, ValueError),
        ({"excluded_pairs": [None]}, TypeError),
        ({"pairs": [["SGD-BTC"]]}, TypeError),
        ({"pairs": ["sgd-btc"]}, ValueError),
        ({"pairs": ["SGD-BTC&count=1"]}, ValueError),
        ({"quote_currencies": ["sgd"]}, ValueError),
        ({"quote_currencies": "SGD"}, TypeError),
        ({"stop": object()}, TypeError),
    ],
)
async def test_the_session_refuses_before_sending(
    session_for: SessionFor, options: dict[str, Any], error: type[Exception]
) -> None:
    async with fast_fake() as fake:
        async with fast_session(fake, session_for) as session:
            with pytest.raises(error):
                await session.cancel_open_orders(**options)
        assert fake.records == []


async def test_its_group_allows_one_call_in_two_seconds_at_the_fake(
    session_for: SessionFor,
) -> None:
    """Upbit's budget by default, read at the fake: three calls in at least 4 s, no 429, and
    the default group's 30 calls meanwhile all at once."""
    async with FakeUpbit() as fake:
        fake.add_orders(700)
        async with session_for(fake) as session:
            loop = asyncio.get_running_loop()
            started = loop.time()
            batches = [asyncio.ensure_future(session.cancel_open_orders()) for _ in range(3)]
            await asyncio.gather(*(session.open_orders(page=n + 1) for n in range(30)))
            results = await asyncio.gather(*batches)
            elapsed = loop.time() - started
        assert sum(result.success.count for result in results) == 700
        stats = fake.stats()["groups"]
        assert stats["order-cancel-all"] == {
            "requests": 3,
            "admitted": 3,
            "rejected_429": 0,
            "max_in_window": 1,
        }
        assert stats["default"]["rejected_429"] == 0
        assert elapsed >= 4.0
        assert fake.max_in_window(2.0, group="order-cancel-all") == 1


async def test_over_its_limit_the_fake_answers_429_in_that_group_only(
    fake_http: Any, session_for: SessionFor
) -> None:
    """A client that ignores the group's limit: the second call is refused, the default
    group's budget untouched, and the answer names the group."""
    async with FakeUpbit() as fake:
        fake.add_orders(10)
        limiter = SlidingWindowLimiter(5, 1.0, group="order-cancel-all")
        async with session_for(
            fake, group_limiters={"order-cancel-all": limiter}, rate_limit_retries=0
        ) as session:
            await session.cancel_open_orders()
            with pytest.raises(RateLimitError):
                await session.cancel_open_orders()
            assert session.remaining_req is not None
            assert session.remaining_req.group == "order-cancel-all"
            await session.open_orders()
        groups = fake.stats()["groups"]
        assert groups["order-cancel-all"]["rejected_429"] == 1
        assert groups["default"] == {
            "requests": 1,
            "admitted": 1,
            "rejected_429": 0,
            "max_in_window": 1,
        }


async def test_a_lost_answer_is_an_unknown_outcome(session_for: SessionFor) -> None:
    """A dropped answer after the cancels were made: the session says the orders may be
    canceled, and never sends it again."""
    async with fast_fake(faults=Faults(drop_rate=1.0)) as fake:
        uuids = fake.add_orders(10)
        async with fast_session(fake, session_for) as session:
            with pytest.raises(OutcomeUnknownError, match="may or may not"):
                await session.cancel_open_orders()
        assert len(fake.records) == 1
        assert all(fake.state(uuid) == "cancel" for uuid in uuids)


async def test_a_group_limiter_must_be_made_for_its_group(session_for: SessionFor) -> None:
    async with FakeUpbit() as fake:
        with pytest.raises(ValueError, match="group='order-cancel-all'"):
            session_for(fake, group_limiters={"order-cancel-all": SlidingWindowLimiter(1, 2.0)})
        with pytest.raises(ValueError, match="limiter="):
            session_for(fake, group_limiters={"default": SlidingWindowLimiter(1, 2.0)})
        with pytest.raises(ValueError, match="unknown rate-limit group"):
            session_for(fake, group_limiters={"order": SlidingWindowLimiter(1, 2.0)})
        with pytest.raises(TypeError, match="mapping"):
            session_for(fake, group_limiters=[SlidingWindowLimiter(1, 2.0)])
