"""Faults the fake exchange injects, as a client sees them."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests._signer import signed
from tests.helpers import until
from upbit_cancel import UpbitSession
from upbit_cancel.testing import FakeUpbit, Faults

LIST = "/v1/orders/uuids"


async def test_drop_processes_then_disconnects(fake_http: aiohttp.ClientSession) -> None:
    """A dropped request cancels its orders, yet the client sees only a disconnect."""
    async with FakeUpbit(faults=Faults(drop_rate=1.0)) as fake:
        uuids = fake.add_orders(2)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await signed(fake_http, fake, "DELETE", LIST, [("uuids[]", u) for u in uuids])
        assert [fake.state(u) for u in uuids] == ["cancel", "cancel"]
        first = fake.records[0]
        assert (first.status, first.fault, first.canceled) == (200, "drop", tuple(uuids))
        # aiohttp silently resends an idempotent request once after a disconnect; the replayed
        # token is refused because its nonce was used.
        assert all(record.error_name == "nonce_used" for record in fake.records[1:])


async def test_malformed_body(fake_http: aiohttp.ClientSession) -> None:
    """A malformed answer is a 200 whose JSON body is cut short, after the orders were cancelled."""
    async with FakeUpbit(faults=Faults(malformed_rate=1.0)) as fake:
        order = fake.add_order()
        reply = await signed(fake_http, fake, "DELETE", LIST, [("uuids[]", order)])
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("application/json")
        assert isinstance(reply.body, str)
        with pytest.raises(json.JSONDecodeError):
            json.loads(reply.text)
        assert fake.state(order) == "cancel"
        assert fake.records[0].fault == "malformed"


async def test_gateway_error_is_html_and_not_processed(fake_http: aiohttp.ClientSession) -> None:
    """An error fault is an HTML 5xx page; the request is neither processed nor counted."""
    async with FakeUpbit(faults=Faults(error_rate=1.0)) as fake:
        order = fake.add_order()
        reply = await signed(fake_http, fake, "DELETE", LIST, [("uuids[]", order)])
        assert reply.status in {500, 502, 503}
        assert reply.headers["Content-Type"].startswith("text/html")
        assert "<html>" in reply.text
        assert "Remaining-Req" not in reply.headers
        assert fake.state(order) == "wait"
        record = fake.records[0]
        assert (record.fault, record.admitted, record.canceled) == ("error", False, ())
        assert fake.max_in_window() == 0


async def test_slow_answer_times_out_client(fake_http: aiohttp.ClientSession) -> None:
    """A slow answer outlasts a client timeout although the cancel already happened."""
    async with FakeUpbit(faults=Faults(slow_rate=1.0, slow_seconds=2.0)) as fake:
        order = fake.add_order()
        with pytest.raises(asyncio.TimeoutError):
            await signed(fake_http, fake, "DELETE", LIST, [("uuids[]", order)], client_timeout=0.1)
        await until(lambda: bool(fake.records))
        assert fake.state(order) == "cancel"
        assert fake.records[0].fault == "slow"
    # Closing did not wait for the slow answer: the server ended it.


async def test_latency_delays_but_changes_nothing(fake_http: aiohttp.ClientSession) -> None:
    """Latency and jitter alone leave every answer intact."""
    faults = Faults(latency_in=0.001, jitter_in=0.002, latency_out=0.001, jitter_out=0.002)
    async with FakeUpbit(faults=faults) as fake:
        uuids = fake.add_orders(5)
        replies = [await signed(fake_http, fake, "DELETE", LIST, [("uuids[]", u)]) for u in uuids]
        assert {reply.status for reply in replies} == {200}
        assert {record.fault for record in fake.records} == {None}


async def fault_sequence(session: aiohttp.ClientSession, seed: int) -> list[tuple[int, str | None]]:
    faults = Faults(error_rate=0.3, malformed_rate=0.2, slow_rate=0.1, slow_seconds=0.001)
    async with FakeUpbit(limit=1000, faults=faults, seed=seed) as fake:
        for _ in range(40):
            await signed(session, fake, "GET", "/v1/orders/open")
        return [(record.status, record.fault) for record in fake.records]


async def test_seeded_fault_rates_are_reproducible(fake_http: aiohttp.ClientSession) -> None:
    """With a seed, the same faults hit the same requests, at roughly the configured rates."""
    first = await fault_sequence(fake_http, seed=7)
    assert first == await fault_sequence(fake_http, seed=7)
    assert first != await fault_sequence(fake_http, seed=8)
    kinds = [fault for _, fault in first]
    assert 4 <= kinds.count("error") <= 20
    assert 1 <= kinds.count("malformed") <= 16
    assert None in kinds
    assert all(status in {500, 502, 503} for status, fault in first if fault == "error")
    assert all(status == 200 for status, fault in first if fault != "error")


def test_faults_validate_their_values() -> None:
    """Negative delays, rates outside [0, 1] and rates adding up past 1 are refused."""
    with pytest.raises(ValueError, match="latency_in"):
        Faults(latency_in=-1.0)
    with pytest.raises(ValueError, match="drop_rate"):
        Faults(drop_rate=1.5)
    with pytest.raises(ValueError, match="<= 1"):
        Faults(error_rate=0.6, drop_rate=0.6)


async def test_a_key_of_its_own_takes_its_own_path() -> None:
    """Faults set for one key apply to requests signed with it; the others keep the fake's."""
    async with FakeUpbit() as fake:
        slow_key, slow_secret = fake.add_credentials()
        fake.set_faults(Faults(latency_in=0.2), access_key=slow_key)
        with pytest.raises(KeyError):
            fake.set_faults(Faults(), access_key="nobody")
        uuids = fake.add_orders(2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with (
            UpbitSession(fake.access_key, fake.secret_key, base_url=fake.base_url) as fast,
            UpbitSession(slow_key, slow_secret, base_url=fake.base_url) as slow,
        ):
            await asyncio.gather(
                fast.cancel_orders(uuids=[uuids[0]]), slow.cancel_orders(uuids=[uuids[1]])
            )
        arrivals = {record.access_key: record.arrival - started for record in fake.records}
        assert arrivals[slow_key] >= 0.2
        assert fake.faults == Faults()
