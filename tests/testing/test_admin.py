"""The fake exchange's Python API, lifecycle and admin HTTP API."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import attrs
import pytest

import upbit_cancel.testing
from tests._signer import signed
from upbit_cancel.testing import FakeUpbit, Faults

UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def test_public_names_sorted_and_documented() -> None:
    """The testing package exports a sorted __all__, every name documented."""
    names = upbit_cancel.testing.__all__
    assert names == sorted(names)
    assert {"FakeUpbit", "Faults", "RequestRecord"} <= set(names)
    for name in names:
        assert hasattr(upbit_cancel.testing, name)
    for name in ("FakeUpbit", "Faults", "RequestRecord", "FakeOrder", "SlidingWindowPolicy"):
        assert getattr(upbit_cancel.testing, name).__doc__


def test_orders_seeded_before_start() -> None:
    """Orders can be added before the server starts; uuids are lowercase uuid4 strings."""
    fake = FakeUpbit()
    uuid = fake.add_order(market="SGD-ETH", state="done", identifier="abc")
    assert fake.order(uuid) == upbit_cancel.testing.FakeOrder(
        uuid, "SGD-ETH", "done", "abc", fake.order(uuid).created_at
    )
    assert fake.state(uuid) == "done"
    with pytest.raises(KeyError):
        fake.state("00000000-0000-4000-8000-000000000000")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        fake.order(uuid).state = "wait"  # type: ignore[misc]
    with pytest.raises(RuntimeError, match="not started"):
        _ = fake.base_url


def test_bulk_seeding() -> None:
    """add_orders creates many distinct orders, optionally with unique identifiers."""
    fake = FakeUpbit()
    uuids = fake.add_orders(60_000, identifiers=True)
    assert len(set(uuids)) == 60_000
    identifiers = {fake.order(uuid).identifier for uuid in uuids[:100]}
    assert len(identifiers) == 100
    assert None not in identifiers
    assert fake.state_counts() == {
        "wait": 60_000,
        "watch": 0,
        "done": 0,
        "cancel": 0,
        "prevented": 0,
    }
    assert all(re.fullmatch(UUID_PATTERN, uuid) for uuid in uuids[:1000])


def test_seed_makes_the_orders_reproducible_and_never_the_keys() -> None:
    """Two fakes with the same seed generate the same uuids; every fake has keys of its own, so
    that no two fakes (of one test run, or of two runs) share an account's budget on the host."""
    one, two = FakeUpbit(seed=3), FakeUpbit(seed=3)
    assert one.add_orders(5) == two.add_orders(5)
    assert one.access_key != two.access_key
    assert one.secret_key != two.secret_key
    assert len(one.access_key) == len(one.secret_key) == 40


def test_given_credentials_are_used() -> None:
    """access_key and secret_key given to the constructor are the ones accepted."""
    fake = FakeUpbit(access_key="a" * 40, secret_key="s" * 40)
    assert (fake.access_key, fake.secret_key) == ("a" * 40, "s" * 40)


def test_identifiers_are_unique() -> None:
    """An identifier already used by an order is refused."""
    fake = FakeUpbit()
    fake.add_order(identifier="dup")
    with pytest.raises(ValueError, match="already used"):
        fake.add_order(identifier="dup")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"policy": "leaky"},
        {"limit": 0},
        {"window": 0.0},
        {"unknown_ids": "ignore"},
        {"block_after": 0},
        {"block_seconds": 0.0},
    ],
)
def test_constructor_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    """Invalid constructor arguments raise ValueError."""
    with pytest.raises(ValueError, match=r"."):
        FakeUpbit(**kwargs)


async def test_start_and_close_are_idempotent() -> None:
    """start() and close() may be called twice; a closed fake cannot restart."""
    fake = FakeUpbit(faults=Faults())
    await fake.start()
    url = fake.base_url
    await fake.start()
    assert fake.base_url == url
    assert url.startswith("http://127.0.0.1:")
    await fake.close()
    await fake.close()
    with pytest.raises(RuntimeError, match="closed"):
        await fake.start()


async def test_admin_seeds_and_inspects_orders(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """POST /_fake/orders seeds orders; GET /_fake/orders/{uuid} and /_fake/states read them."""
    async with fake_http.post(
        f"{fake.base_url}/_fake/orders",
        json={"count": 3, "market": "KRW-BTC", "state": "wait", "identifiers": True},
    ) as response:
        assert response.status == 200
        created = await response.json()
    assert len(created["uuids"]) == len(created["identifiers"]) == 3
    uuid = created["uuids"][0]
    assert fake.order(uuid).identifier == created["identifiers"][0]

    async with fake_http.post(f"{fake.base_url}/_fake/orders", json={"count": 2}) as response:
        assert (await response.json())["identifiers"] is None

    await signed(fake_http, fake, "DELETE", "/v1/orders/uuids", [("uuids[]", uuid)])
    async with fake_http.get(f"{fake.base_url}/_fake/orders/{uuid}") as response:
        order = await response.json()
    assert order["state"] == "cancel"
    assert order["market"] == "KRW-BTC"
    async with fake_http.get(f"{fake.base_url}/_fake/orders/nope") as response:
        assert response.status == 404
    async with fake_http.get(f"{fake.base_url}/_fake/states") as response:
        assert await response.json() == {
            "wait": 4,
            "watch": 0,
            "done": 0,
            "cancel": 1,
            "prevented": 0,
        }


@pytest.mark.parametrize(
    "payload", [{"count": -1}, {"count": "3"}, {"state": "open"}, {"identifiers": 1}, [1]]
)
async def test_admin_refuses_bad_seed_requests(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession, payload: object
) -> None:
    """POST /_fake/orders with a bad payload is a 400 and seeds nothing."""
    async with fake_http.post(f"{fake.base_url}/_fake/orders", json=payload) as response:
        assert response.status == 400
    assert fake.state_counts()["wait"] == 0


async def test_admin_records_stats_and_reset(fake_http: aiohttp.ClientSession) -> None:
    """Records and stats are served as JSON; the admin API itself is never recorded or limited."""
    async with FakeUpbit(limit=1, faults=Faults(error_rate=0.0)) as fake:
        order = fake.add_order()
        for _ in range(2):
            await signed(fake_http, fake, "DELETE", "/v1/orders/uuids", [("uuids[]", order)])
        for _ in range(5):
            async with fake_http.get(f"{fake.base_url}/_fake/stats") as response:
                stats = await response.json()
        assert stats == {
            "admitted": 1,
            "rejected_429": 1,
            "status_counts": {"200": 1, "429": 1},
            "max_in_window": 1,
            "groups": {
                "default": {"requests": 2, "admitted": 1, "rejected_429": 1, "max_in_window": 1},
                "order-cancel-all": {
                    "requests": 0,
                    "admitted": 0,
                    "rejected_429": 0,
                    "max_in_window": 0,
                },
            },
        }
        async with fake_http.get(f"{fake.base_url}/_fake/records") as response:
            records = await response.json()
        assert [record["status"] for record in records] == [200, 429]
        assert records[0]["ids"] == [order]
        assert records[0]["canceled"] == [order]
        assert records[0]["path"] == "/v1/orders/uuids"
        assert records[0]["access_key"] == fake.access_key
        assert set(records[0]) == {field.name for field in attrs.fields(type(fake.records[0]))}
        async with fake_http.post(f"{fake.base_url}/_fake/reset-records") as response:
            assert response.status == 200
        assert fake.records == []


async def test_admin_sets_faults(fake: FakeUpbit, fake_http: aiohttp.ClientSession) -> None:
    """POST /_fake/faults replaces the faults in force; missing fields take their defaults."""
    fake.faults = Faults(error_rate=1.0)
    async with fake_http.post(
        f"{fake.base_url}/_fake/faults", json={"latency_in": 0.05, "jitter_in": 0.01}
    ) as response:
        assert response.status == 200
        answer = await response.json()
    expected = Faults(latency_in=0.05, jitter_in=0.01)
    assert fake.faults == expected
    assert answer == attrs.asdict(expected)
    # The error rate is gone: the next signed request is processed (after its 50 ms delay).
    order = fake.add_order()
    reply = await signed(fake_http, fake, "DELETE", "/v1/orders/uuids", [("uuids[]", order)])
    assert reply.status == 200
    assert fake.state(order) == "cancel"
    async with fake_http.post(f"{fake.base_url}/_fake/faults", json={}) as response:
        assert response.status == 200
    assert fake.faults == Faults()
    # For the batch cancel only: the list cancel is untouched.
    async with fake_http.post(
        f"{fake.base_url}/_fake/faults",
        json={"endpoint": "DELETE /v1/orders/open", "error_rate": 1},
    ) as response:
        assert response.status == 200
    assert fake.faults == Faults()
    batch = await signed(fake_http, fake, "DELETE", "/v1/orders/open", [("count", "1")])
    assert batch.status in (500, 502, 503)
    listed = fake.add_order()
    reply = await signed(fake_http, fake, "DELETE", "/v1/orders/uuids", [("uuids[]", listed)])
    assert reply.status == 200
    # For one key only: the others keep the fake's faults.
    other, _ = fake.add_credentials()
    async with fake_http.post(
        f"{fake.base_url}/_fake/faults", json={"access_key": other, "latency_in": 0.08}
    ) as response:
        assert response.status == 200
    assert fake.faults == Faults()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([0.1], "JSON object"),
        ({"latency": 0.1}, "Unknown Faults field(s): latency"),
        ({"latency_in": "0.1"}, "latency_in must be a number"),
        ({"jitter_in": True}, "jitter_in must be a number"),
        ({"latency_out": -1}, "latency_out must be a finite number >= 0"),
        ({"drop_rate": 1.5}, "drop_rate must be between 0 and 1"),
        ({"error_rate": 0.6, "drop_rate": 0.6}, "must be <= 1"),
        ({"access_key": "nobody", "latency_in": 0.1}, "access_key must be a key of this fake"),
        ({"endpoint": "DELETE /v1/nowhere"}, "unknown endpoint"),
        ({"endpoint": 3}, "endpoint must be such as"),
    ],
)
async def test_admin_refuses_bad_faults(
    fake_http: aiohttp.ClientSession, payload: object, message: str
) -> None:
    """POST /_fake/faults with a bad payload is a 400 validation_error and changes nothing."""
    before = Faults(latency_out=0.001)
    async with FakeUpbit(faults=before) as fake:
        async with fake_http.post(f"{fake.base_url}/_fake/faults", json=payload) as response:
            assert response.status == 400
            error = (await response.json())["error"]
        assert error["name"] == "validation_error"
        assert message in error["message"]
        assert fake.faults == before


async def test_admin_refuses_faults_that_are_not_json(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """A body that is not JSON, or a number that is not finite, is a 400 too."""
    for body in (b"latency_in=1", b'{"latency_in": NaN}', b'{"slow_seconds": Infinity}'):
        async with fake_http.post(f"{fake.base_url}/_fake/faults", data=body) as response:
            assert response.status == 400
            assert (await response.json())["error"]["name"] == "validation_error"
    assert fake.faults == Faults()


async def test_admin_adds_credentials(fake: FakeUpbit, fake_http: aiohttp.ClientSession) -> None:
    """POST /_fake/credentials creates another key pair of the account, sharing its budget."""
    async with fake_http.post(f"{fake.base_url}/_fake/credentials") as response:
        assert response.status == 200
        created = await response.json()
    assert set(created) == {"access_key", "secret_key"}
    assert created["access_key"] != fake.access_key
    order = fake.add_order()
    reply = await signed(
        fake_http,
        fake,
        "DELETE",
        "/v1/orders/uuids",
        [("uuids[]", order)],
        access_key=created["access_key"],
        secret_key=created["secret_key"],
    )
    assert reply.status == 200
    assert fake.state(order) == "cancel"
    # Without "Make Orders": its cancels are refused.
    async with fake_http.post(
        f"{fake.base_url}/_fake/credentials", json={"can_order": False}
    ) as response:
        assert response.status == 200
        limited = await response.json()
    order = fake.add_order()
    reply = await signed(
        fake_http,
        fake,
        "DELETE",
        "/v1/orders/uuids",
        [("uuids[]", order)],
        access_key=limited["access_key"],
        secret_key=limited["secret_key"],
    )
    assert reply.status == 403
    assert fake.state(order) == "wait"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1]", "JSON object"),
        (b"can_order", "JSON object"),
        (b'{"scope": "all"}', "Unknown field(s): scope"),
        (b'{"can_order": 1}', "can_order and can_query must be true or false"),
    ],
)
async def test_admin_refuses_bad_credentials_requests(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession, body: bytes, message: str
) -> None:
    """POST /_fake/credentials with a bad body is a 400 validation_error."""
    async with fake_http.post(f"{fake.base_url}/_fake/credentials", data=body) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["name"] == "validation_error"
    assert message in error["message"]
