"""The fake exchange's cancel endpoints, answers and validation, over loopback HTTP."""

from __future__ import annotations

import uuid as uuid_module

import aiohttp
import pytest

from tests._signer import Params, make_token, send, signed
from upbit_cancel.testing import FakeUpbit

LIST = "/v1/orders/uuids"


def uuid_params(uuids: list[str]) -> Params:
    return [("uuids[]", value) for value in uuids]


def identifier_params(identifiers: list[str]) -> Params:
    return [("identifiers[]", value) for value in identifiers]


def listed(section: dict[str, object]) -> list[str]:
    orders = section["orders"]
    assert isinstance(orders, list)
    assert section["count"] == len(orders)
    return [entry["uuid"] for entry in orders]


async def test_batch_cancels_exactly_the_open_orders(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """Open orders are cancelled and listed in success; done and cancelled ones in failed."""
    open_ids = fake.add_orders(3, market="SGD-ETH")
    done = fake.add_order(state="done")
    gone = fake.add_order(state="cancel")
    reply = await signed(fake_http, fake, "DELETE", LIST, uuid_params([*open_ids, done, gone]))
    assert reply.status == 200
    assert listed(reply.body["success"]) == open_ids
    assert listed(reply.body["failed"]) == [done, gone]
    assert reply.body["success"]["orders"][0] == {"uuid": open_ids[0], "market": "SGD-ETH"}
    assert [fake.state(u) for u in open_ids] == ["cancel"] * 3
    assert (fake.state(done), fake.state(gone)) == ("done", "cancel")
    assert fake.records[-1].canceled == tuple(open_ids)


async def test_second_cancel_of_same_orders_fails(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """Cancelling already cancelled orders lists them in failed."""
    uuids = fake.add_orders(2)
    await signed(fake_http, fake, "DELETE", LIST, uuid_params(uuids))
    reply = await signed(fake_http, fake, "DELETE", LIST, uuid_params(uuids))
    assert reply.body["success"] == {"count": 0, "orders": []}
    assert listed(reply.body["failed"]) == uuids


async def test_unknown_ids_omitted_by_default(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """With unknown_ids="omit", an unknown uuid is in neither list."""
    known = fake.add_order()
    unknown = str(uuid_module.uuid4())
    reply = await signed(fake_http, fake, "DELETE", LIST, uuid_params([unknown, known]))
    assert listed(reply.body["success"]) == [known]
    assert reply.body["failed"] == {"count": 0, "orders": []}


async def test_unknown_ids_listed_as_failed_when_asked(
    fake_http: aiohttp.ClientSession,
) -> None:
    """With unknown_ids="failed", unknown uuids and identifiers are failed with market UNKNOWN."""
    async with FakeUpbit(unknown_ids="failed") as fake:
        unknown = str(uuid_module.uuid4())
        reply = await signed(fake_http, fake, "DELETE", LIST, uuid_params([unknown]))
        assert reply.body["failed"]["orders"] == [{"uuid": unknown, "market": "UNKNOWN"}]
        reply = await signed(fake_http, fake, "DELETE", LIST, identifier_params(["nope"]))
        assert reply.body["failed"]["orders"] == [
            {"uuid": "", "market": "UNKNOWN", "identifier": "nope"}
        ]


async def test_identifiers_cancel_by_client_id(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """identifiers[] finds orders by identifier, and entries carry the identifier."""
    uuids = fake.add_orders(2, identifiers=True)
    identifiers = [fake.order(u).identifier or "" for u in uuids]
    reply = await signed(fake_http, fake, "DELETE", LIST, identifier_params(identifiers))
    assert reply.status == 200
    assert reply.body["success"]["orders"] == [
        {"uuid": u, "market": "SGD-BTC", "identifier": i}
        for u, i in zip(uuids, identifiers, strict=True)
    ]
    assert all(fake.state(u) == "cancel" for u in uuids)


@pytest.mark.parametrize("identifier", ["a:b", "x&y=z", "with space", "plus+sign", "퍼센트%41"])
async def test_identifier_with_reserved_characters(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession, identifier: str
) -> None:
    """An identifier with :, &, =, space or % is accepted percent-encoded and hashed decoded."""
    order = fake.add_order(identifier=identifier)
    reply = await signed(fake_http, fake, "DELETE", LIST, identifier_params([identifier]))
    assert reply.status == 200, reply.body
    assert reply.body["success"]["orders"][0]["identifier"] == identifier
    assert fake.state(order) == "cancel"


async def test_identifier_only_in_entries_that_have_one(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """The identifier key appears only for orders created with an identifier."""
    plain = fake.add_order()
    tagged = fake.add_order(identifier="mine-1")
    reply = await signed(fake_http, fake, "DELETE", LIST, uuid_params([plain, tagged]))
    assert reply.body["success"]["orders"] == [
        {"uuid": plain, "market": "SGD-BTC"},
        {"uuid": tagged, "market": "SGD-BTC", "identifier": "mine-1"},
    ]


async def test_repeated_uuid_is_cancelled_then_failed(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """Ids are handled in order, so a repeated open uuid is in success and then in failed."""
    order = fake.add_order()
    reply = await signed(fake_http, fake, "DELETE", LIST, uuid_params([order, order]))
    assert listed(reply.body["success"]) == [order]
    assert listed(reply.body["failed"]) == [order]


async def test_twenty_ids_accepted(fake: FakeUpbit, fake_http: aiohttp.ClientSession) -> None:
    """Twenty ids, the documented maximum, are accepted in one call."""
    uuids = fake.add_orders(20)
    reply = await signed(fake_http, fake, "DELETE", LIST, uuid_params(uuids))
    assert reply.body["success"]["count"] == 20


@pytest.mark.parametrize(
    ("params", "status", "name"),
    [
        pytest.param("both", 400, "validation_error", id="both-lists"),
        pytest.param([("market", "SGD-BTC")], 400, "validation_error", id="neither-list"),
        pytest.param("twenty-one", 400, "validation_error", id="21-ids"),
        pytest.param("upper", 400, "validation_error", id="uppercase-uuid"),
        pytest.param([("uuids[]", "not-a-uuid")], 400, "validation_error", id="malformed-uuid"),
        pytest.param([("uuids", "x")], 400, "validation_error", id="no-brackets"),
        pytest.param([("identifiers[]", "")], 400, "validation_error", id="empty-identifier"),
    ],
)
async def test_invalid_batches_refused_without_change(
    fake: FakeUpbit,
    fake_http: aiohttp.ClientSession,
    params: Params | str,
    status: int,
    name: str,
) -> None:
    """Malformed batches are refused with validation_error and change no order."""
    uuids = fake.add_orders(21, identifiers=True)
    if params == "both":
        params = [("uuids[]", uuids[0]), ("identifiers[]", fake.order(uuids[1]).identifier or "")]
    elif params == "twenty-one":
        params = uuid_params(uuids)
    elif params == "upper":
        params = uuid_params([uuids[0].upper()])
    assert not isinstance(params, str)
    reply = await signed(fake_http, fake, "DELETE", LIST, params)
    assert (reply.status, reply.error_name) == (status, name)
    assert set(reply.body["error"]) == {"name", "message"}
    assert fake.state_counts()["wait"] == 21


async def test_body_refused(fake: FakeUpbit, fake_http: aiohttp.ClientSession) -> None:
    """Parameters in a body are refused with QUERY_PARAMETER_NOT_SUPPORTED."""
    order = fake.add_order()
    reply = await signed(
        fake_http, fake, "DELETE", LIST, uuid_params([order]), data=b'{"uuids": []}'
    )
    assert (reply.status, reply.error_name) == (400, "QUERY_PARAMETER_NOT_SUPPORTED")
    assert fake.state(order) == "wait"


async def test_key_without_order_permission_is_out_of_scope(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """A key lacking "Make Orders" gets 403 out_of_scope for cancels but may list orders."""
    order = fake.add_order()
    access_key, secret_key = fake.add_credentials(can_order=False)
    reply = await signed(
        fake_http,
        fake,
        "DELETE",
        LIST,
        uuid_params([order]),
        access_key=access_key,
        secret_key=secret_key,
    )
    assert (reply.status, reply.error_name) == (403, "out_of_scope")
    assert fake.state(order) == "wait"
    reply = await signed(
        fake_http, fake, "GET", "/v1/orders/open", access_key=access_key, secret_key=secret_key
    )
    assert reply.status == 200


async def test_second_key_of_account_can_cancel(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """Another key pair of the account cancels like the first one."""
    order = fake.add_order()
    access_key, secret_key = fake.add_credentials()
    reply = await signed(
        fake_http,
        fake,
        "DELETE",
        LIST,
        uuid_params([order]),
        access_key=access_key,
        secret_key=secret_key,
    )
    assert listed(reply.body["success"]) == [order]
    assert fake.records[-1].access_key == access_key


async def test_remaining_req_counts_down(fake: FakeUpbit, fake_http: aiohttp.ClientSession) -> None:
    """Remaining-Req reports the default group and the calls left after this one."""
    uuids = fake.add_orders(2)
    first = await signed(fake_http, fake, "DELETE", LIST, uuid_params(uuids[:1]))
    second = await signed(fake_http, fake, "DELETE", LIST, uuid_params(uuids[1:]))
    assert first.headers["Remaining-Req"] == "group=default; min=1800; sec=29"
    assert second.headers["Remaining-Req"] == "group=default; min=1800; sec=28"


async def test_queued_response_replaces_processing(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """Queued answers are served to the next requests as given, and change no order."""
    order = fake.add_order()
    fake.queue_response(400, {"error": {"name": "market_offline", "message": "x"}}, count=2)
    fake.queue_response(503, "<html>down</html>", content_type="text/html")
    replies = [
        await signed(fake_http, fake, "DELETE", LIST, uuid_params([order])) for _ in range(4)
    ]
    assert [r.status for r in replies] == [400, 400, 503, 200]
    assert replies[0].error_name == "market_offline"
    assert replies[2].text == "<html>down</html>"
    assert "Remaining-Req" in replies[0].headers
    assert [r.error_name for r in fake.records] == ["market_offline"] * 2 + [None, None]
    assert fake.records[-1].canceled == (order,)


async def test_queued_response_custom_headers(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """Headers given to queue_response replace the default Remaining-Req."""
    fake.queue_response(200, b"[]", headers={"X-Test": "1"})
    reply = await signed(fake_http, fake, "GET", "/v1/orders/open")
    assert reply.headers.get("X-Test") == "1"
    assert "Remaining-Req" not in reply.headers


async def test_single_cancel_returns_order_before_cancel(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """DELETE /v1/order cancels one open order and answers it in its pre-cancel state."""
    order = fake.add_order(market="KRW-ETH", identifier="solo")
    reply = await signed(fake_http, fake, "DELETE", "/v1/order", [("uuid", order)])
    assert reply.status == 200
    assert reply.body["uuid"] == order
    assert reply.body["state"] == "wait"
    assert reply.body["market"] == "KRW-ETH"
    assert reply.body["identifier"] == "solo"
    assert {"side", "ord_type", "price", "created_at"} <= set(reply.body)
    assert fake.state(order) == "cancel"
    assert reply.headers["Remaining-Req"].startswith("group=default;")


async def test_single_cancel_by_identifier_and_not_found(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """A single cancel finds orders by identifier; closed or unknown ones are 404."""
    order = fake.add_order(identifier="one")
    reply = await signed(fake_http, fake, "DELETE", "/v1/order", [("identifier", "one")])
    assert reply.status == 200
    assert fake.state(order) == "cancel"
    again = await signed(fake_http, fake, "DELETE", "/v1/order", [("uuid", order)])
    assert (again.status, again.error_name) == (404, "order_not_found")
    unknown = await signed(fake_http, fake, "DELETE", "/v1/order", [("identifier", "two")])
    assert (unknown.status, unknown.error_name) == (404, "order_not_found")


async def test_single_cancel_needs_exactly_one_id(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """A single cancel with neither or both of uuid and identifier is a validation_error."""
    order = fake.add_order(identifier="x")
    for params in ([], [("uuid", order), ("identifier", "x")]):
        reply = await signed(fake_http, fake, "DELETE", "/v1/order", params)
        assert (reply.status, reply.error_name) == (400, "validation_error")
    assert fake.state(order) == "wait"


async def test_open_orders_lists_open_ones(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """GET /v1/orders/open lists open orders, newest first, filtered by market and paged."""
    btc = fake.add_orders(3, market="SGD-BTC")
    eth = fake.add_order(market="SGD-ETH")
    fake.add_order(state="done")
    reply = await signed(fake_http, fake, "GET", "/v1/orders/open")
    assert [o["uuid"] for o in reply.body] == [eth, *reversed(btc)]
    assert {o["state"] for o in reply.body} == {"wait"}
    reply = await signed(
        fake_http,
        fake,
        "GET",
        "/v1/orders/open",
        [("market", "SGD-BTC"), ("limit", "2"), ("page", "2"), ("order_by", "asc")],
    )
    assert [o["uuid"] for o in reply.body] == btc[2:]


async def test_market_all_is_public_and_lists_order_markets(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """GET /v1/market/all needs no token, lists fixed and order markets, and is not limited."""
    fake.add_order(market="SGD-XRP")
    replies = [await send(fake_http, fake.base_url, "GET", "/v1/market/all") for _ in range(40)]
    assert {r.status for r in replies} == {200}
    markets = {entry["market"] for entry in replies[0].body}
    assert {"SGD-BTC", "SGD-ETH", "KRW-BTC", "KRW-ETH", "IDR-BTC", "THB-BTC", "SGD-XRP"} <= markets
    assert set(replies[0].body[0]) == {"market", "korean_name", "english_name"}
    assert replies[0].headers["Remaining-Req"].startswith("group=market;")
    assert fake.records == []


async def test_signed_token_reused_query_params_cannot_cancel_other_orders(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """A token signed for one batch is refused for another (invalid_query_payload)."""
    signed_for, sent = fake.add_order(), fake.add_order()
    token = make_token(fake.access_key, fake.secret_key, uuid_params([signed_for]))
    reply = await send(fake_http, fake.base_url, "DELETE", LIST, uuid_params([sent]), token=token)
    assert (reply.status, reply.error_name) == (401, "invalid_query_payload")
    assert fake.state(sent) == "wait"
