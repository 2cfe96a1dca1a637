"""The fake exchange's rate limiting, 429 answers and 418 blocks, over loopback HTTP."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from tests._signer import Reply, signed
from upbit_cancel.testing import FakeUpbit, PolicyName

LIST = "/v1/orders/uuids"


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sec_of(reply: Reply) -> int:
    match = re.fullmatch(r"group=default; min=1800; sec=(\d+)", reply.headers["Remaining-Req"])
    assert match, reply.headers["Remaining-Req"]
    return int(match.group(1))


async def cancel_each(
    session: aiohttp.ClientSession, fake: FakeUpbit, uuids: list[str]
) -> list[Reply]:
    return list(
        await asyncio.gather(
            *(signed(session, fake, "DELETE", LIST, [("uuids[]", uuid)]) for uuid in uuids)
        )
    )


@pytest.mark.parametrize("plain_text_429", [False, True], ids=["json-429", "text-429"])
async def test_burst_of_45_admits_30(
    fake_http: aiohttp.ClientSession, plain_text_429: bool
) -> None:
    """45 concurrent requests against sliding 30/s: 30 processed, 15 answered 429 untouched."""
    # A clock that stands still puts all 45 arrivals in one window however slow the machine.
    clock = ManualClock()
    async with FakeUpbit(limit=30, window=1.0, plain_text_429=plain_text_429, clock=clock) as fake:
        uuids = fake.add_orders(45)
        replies = await cancel_each(fake_http, fake, uuids)
    statuses = [reply.status for reply in replies]
    assert statuses.count(200) == 30
    assert statuses.count(429) == 15
    refused = [reply for reply in replies if reply.status == 429]
    if plain_text_429:
        assert {reply.text for reply in refused} == {"Too many API requests."}
    else:
        assert {reply.error_name for reply in refused} == {"too_many_requests"}
        assert {reply.body["error"]["message"] for reply in refused} == {"Too many API requests."}
    assert {sec_of(reply) for reply in refused} == {0}
    cancelled = [uuid for uuid, reply in zip(uuids, replies, strict=True) if reply.status == 200]
    assert sorted(uuid for uuid in uuids if fake.state(uuid) == "cancel") == sorted(cancelled)
    assert fake.max_in_window() == 30
    stats = fake.stats()
    assert (stats["admitted"], stats["rejected_429"]) == (30, 15)
    assert stats["status_counts"] == {"200": 30, "429": 15}


async def test_remaining_and_budget_follow_the_clock(fake_http: aiohttp.ClientSession) -> None:
    """With a manual clock, admits free their slot exactly one window later."""
    clock = ManualClock()
    async with FakeUpbit(limit=3, window=1.0, clock=clock) as fake:
        uuids = fake.add_orders(6)
        replies = [await signed(fake_http, fake, "GET", "/v1/orders/open") for _ in range(4)]
        assert [(r.status, sec_of(r)) for r in replies] == [(200, 2), (200, 1), (200, 0), (429, 0)]
        clock.advance(0.75)
        assert (await signed(fake_http, fake, "GET", "/v1/orders/open")).status == 429
        clock.advance(0.25)
        reply = await signed(fake_http, fake, "DELETE", LIST, [("uuids[]", uuids[0])])
        assert (reply.status, sec_of(reply)) == (200, 2)
        assert fake.max_in_window() == 3
        assert fake.max_in_window(2.0) == 4


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # Sliding and fixed admit 2 at t=0, then nothing until t=1.
        ("sliding", [200, 200, 429, 429, 200]),
        ("fixed", [200, 200, 429, 429, 200]),
        # The bucket earns a token every 0.5 s, so t=0.5 is admitted.
        ("bucket", [200, 200, 429, 200, 200]),
    ],
)
async def test_policies_over_http(
    fake_http: aiohttp.ClientSession, policy: PolicyName, expected: list[int]
) -> None:
    """Each policy decides over HTTP exactly as its arithmetic says."""
    clock = ManualClock(0.0)
    statuses = []
    async with FakeUpbit(policy=policy, limit=2, window=1.0, clock=clock) as fake:
        for at in (0.0, 0.0, 0.0, 0.5, 1.0):
            clock.now = at
            statuses.append((await signed(fake_http, fake, "GET", "/v1/orders/open")).status)
    assert statuses == expected


async def test_unauthenticated_requests_count(fake_http: aiohttp.ClientSession) -> None:
    """Requests that fail authentication still use up the account's budget."""
    clock = ManualClock()
    async with FakeUpbit(limit=2, clock=clock) as fake:
        bad = [
            await signed(fake_http, fake, "GET", "/v1/orders/open", secret_key="y" * 40)
            for _ in range(2)
        ]
        assert [r.status for r in bad] == [401, 401]
        assert all(record.admitted for record in fake.records)
        good = await signed(fake_http, fake, "GET", "/v1/orders/open")
        assert good.status == 429


async def test_all_keys_share_the_budget(fake_http: aiohttp.ClientSession) -> None:
    """Keys of the same account draw on one budget."""
    clock = ManualClock()
    async with FakeUpbit(limit=2, clock=clock) as fake:
        access_key, secret_key = fake.add_credentials()
        first = await signed(fake_http, fake, "GET", "/v1/orders/open")
        other = await signed(
            fake_http, fake, "GET", "/v1/orders/open", access_key=access_key, secret_key=secret_key
        )
        third = await signed(fake_http, fake, "GET", "/v1/orders/open")
    assert [first.status, other.status, third.status] == [200, 200, 429]


async def test_block_after_repeated_429s(fake_http: aiohttp.ClientSession) -> None:
    """After block_after 429s, every request gets 418 with the block's length, then it lifts."""
    clock = ManualClock()
    async with FakeUpbit(
        limit=1, block_after=3, block_period=10.0, block_seconds=30.0, clock=clock
    ) as fake:
        uuids = fake.add_orders(3)

        async def cancel(uuid: str) -> Reply:
            return await signed(fake_http, fake, "DELETE", LIST, [("uuids[]", uuid)])

        assert (await cancel(uuids[0])).status == 200
        assert [(await cancel(uuids[1])).status for _ in range(3)] == [429, 429, 429]
        blocked = await cancel(uuids[1])
        assert (blocked.status, blocked.error_name) == (418, "blocked")
        assert "30 seconds" in blocked.body["error"]["message"]
        assert sec_of(blocked) == 0

        clock.advance(12.5)
        later = await cancel(uuids[1])
        assert later.status == 418
        assert "18 seconds" in later.body["error"]["message"]
        assert fake.state(uuids[1]) == "wait"
        assert not fake.records[-1].admitted

        clock.advance(17.5)
        assert (await cancel(uuids[1])).status == 200
        assert fake.state(uuids[1]) == "cancel"


async def test_429s_spread_out_do_not_block(fake_http: aiohttp.ClientSession) -> None:
    """429s further apart than block_period never add up to a block."""
    clock = ManualClock()
    async with FakeUpbit(limit=1, block_after=2, block_period=5.0, clock=clock) as fake:
        for _ in range(4):
            assert (await signed(fake_http, fake, "GET", "/v1/orders/open")).status == 200
            assert (await signed(fake_http, fake, "GET", "/v1/orders/open")).status == 429
            clock.advance(5.0)


async def test_reset_records_keeps_budget(fake_http: aiohttp.ClientSession) -> None:
    """reset_records forgets the records but not the rate budget."""
    clock = ManualClock()
    async with FakeUpbit(limit=1, clock=clock) as fake:
        await signed(fake_http, fake, "GET", "/v1/orders/open")
        fake.reset_records()
        assert fake.records == []
        assert fake.max_in_window() == 0
        assert (await signed(fake_http, fake, "GET", "/v1/orders/open")).status == 429
