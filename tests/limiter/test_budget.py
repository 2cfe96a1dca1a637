"""The account's budget under real load: many concurrent calls, strict fakes, other clients."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests._signer import signed
from upbit_cancel import UpbitSession
from upbit_cancel.testing import FakeUpbit, Faults, PolicyName


@pytest.mark.parametrize("policy", ["sliding", "fixed", "bucket"])
async def test_concurrent_calls_from_two_sessions_never_trip_the_limiter(
    policy: PolicyName,
) -> None:
    """120 concurrent 20-id cancels from two sessions of one key: all canceled, no 429.

    The first 30 go out at once (an idle budget bursts) and no second-long window of arrivals
    holds more than 30, with 20 ms of arrival jitter.
    """
    async with FakeUpbit(policy=policy, faults=Faults(jitter_in=0.02), seed=7) as fake:
        orders = fake.add_orders(120 * 20)
        chunks = [orders[start : start + 20] for start in range(0, len(orders), 20)]
        async with (
            UpbitSession(fake.access_key, fake.secret_key, base_url=fake.base_url) as first,
            UpbitSession(fake.access_key, fake.secret_key, base_url=fake.base_url) as second,
        ):
            results = await asyncio.gather(
                *(
                    (first if index % 2 else second).cancel_orders(uuids=chunk)
                    for index, chunk in enumerate(chunks)
                )
            )
        assert sum(result.success.count for result in results) == len(orders)
        assert fake.state_counts()["wait"] == 0
        statuses = [record.status for record in fake.records]
        assert statuses == [200] * 120
        assert fake.max_in_window(1.0) <= 30
        arrivals = sorted(record.arrival for record in fake.records)
        # Not paced: the first 30 all arrive before a paced 31st could have been sent.
        assert arrivals[29] - arrivals[0] < 0.5
        assert arrivals[30] - arrivals[0] >= 1.0


async def test_another_client_spending_the_budget_costs_a_few_429s_and_no_failures() -> None:
    """With another key of the account spending ~12 calls/s, 60 cancels all still succeed."""
    async with FakeUpbit(policy="sliding", seed=3) as fake:
        other_access, other_secret = fake.add_credentials()
        orders = fake.add_orders(60 * 20)
        chunks = [orders[start : start + 20] for start in range(0, len(orders), 20)]
        stop = asyncio.Event()

        async def other_client(http: aiohttp.ClientSession) -> None:
            while not stop.is_set():
                await signed(
                    http,
                    fake,
                    "GET",
                    "/v1/orders/open",
                    [("market", "SGD-ETH")],
                    access_key=other_access,
                    secret_key=other_secret,
                )
                await asyncio.sleep(1 / 12)

        async with aiohttp.ClientSession() as http:
            background = asyncio.create_task(other_client(http))
            # The other client has spent part of the budget before this one starts.
            await fake.wait_for(lambda exchange: exchange.received >= 6)
            async with UpbitSession(
                fake.access_key, fake.secret_key, base_url=fake.base_url
            ) as session:
                results = await asyncio.gather(
                    *(session.cancel_orders(uuids=chunk) for chunk in chunks)
                )
                rate_limited = session.rate_limited
            stop.set()
            await background

        assert sum(result.success.count for result in results) == len(orders)
        assert fake.state_counts()["wait"] == 0
        ours = [record for record in fake.records if record.access_key == fake.access_key]
        ours_429 = sum(1 for record in ours if record.status == 429)
        assert ours_429 == rate_limited
        # Each 429 pauses the whole account, so they stay a small fraction of the 60 calls.
        assert ours_429 <= 20
        assert sum(1 for record in ours if record.status == 200) == 60
