"""The fake exchange's JWT authentication, with tokens from an independent signer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import aiohttp
import jwt
import pytest

from tests._signer import Algorithm, encode_query, make_token, send, signed
from upbit_cancel.testing import FakeUpbit

LIST = "/v1/orders/uuids"


@pytest.mark.parametrize("algorithm", ["HS256", "HS512"])
async def test_hs256_and_hs512_accepted(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession, algorithm: Algorithm
) -> None:
    """Tokens signed with HS256 or HS512 are both accepted, without warnings."""
    order = fake.add_order()
    reply = await signed(fake_http, fake, "DELETE", LIST, [("uuids[]", order)], algorithm=algorithm)
    assert reply.status == 200
    assert fake.state(order) == "cancel"


async def test_missing_token(fake: FakeUpbit, fake_http: aiohttp.ClientSession) -> None:
    """No Authorization header: 401 no_authorization_token."""
    order = fake.add_order()
    reply = await send(fake_http, fake.base_url, "DELETE", LIST, [("uuids[]", order)])
    assert (reply.status, reply.error_name) == (401, "no_authorization_token")
    assert fake.state(order) == "wait"


@pytest.mark.parametrize(
    "token", ["not-a-jwt", "a.b.c", "", "eyJhbGciOiJub25lIn0.eyJhIjoxfQ."], ids=repr
)
async def test_malformed_token(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession, token: str
) -> None:
    """A token that is not a valid HS256/HS512 JWT: 401 jwt_verification."""
    order = fake.add_order()
    reply = await send(fake_http, fake.base_url, "DELETE", LIST, [("uuids[]", order)], token=token)
    assert (reply.status, reply.error_name) == (401, "jwt_verification")
    assert fake.state(order) == "wait"


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _with_header(token: str, header: object, secret_key: str) -> str:
    """``token`` with this header instead (JSON), signed again (HS256): PyJWT makes no token
    with a header it would refuse to read."""
    signed = _segment(json.dumps(header).encode()) + "." + token.split(".")[1]
    signature = hmac.new(secret_key.encode(), signed.encode(), hashlib.sha256).digest()
    return signed + "." + _segment(signature)


@pytest.mark.parametrize("kid", [123, None, ["k"]], ids=repr)
async def test_a_key_id_that_is_not_text_is_refused(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession, kid: object
) -> None:
    """A signed token whose ``kid`` header is not a string: 401 jwt_verification, as PyJWT reads
    such a header, whichever release of it the fake runs with."""
    params = [("uuids[]", fake.add_order())]
    token = _with_header(
        make_token(fake.access_key, fake.secret_key, params),
        {"alg": "HS256", "typ": "JWT", "kid": kid},
        fake.secret_key,
    )
    reply = await send(fake_http, fake.base_url, "DELETE", LIST, params, token=token)
    assert (reply.status, reply.error_name) == (401, "jwt_verification")
    assert fake.state(params[0][1]) == "wait"


async def test_a_header_nested_too_deep_is_refused_not_a_crash(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """A token whose header nests deeper than a JSON reader goes: 401, and the request is
    recorded like any other."""
    params = [("uuids[]", fake.add_order())]
    header = base64.urlsafe_b64encode(("[" * 2_500 + "]" * 2_500).encode()).rstrip(b"=")
    token = (
        header.decode()
        + "."
        + make_token(fake.access_key, fake.secret_key, params).split(".", 1)[1]
    )
    reply = await send(fake_http, fake.base_url, "DELETE", LIST, params, token=token)
    assert (reply.status, reply.error_name) == (401, "jwt_verification")
    assert [record.status for record in fake.records] == [401]


async def test_wrong_scheme(fake: FakeUpbit, fake_http: aiohttp.ClientSession) -> None:
    """An Authorization header that is not "Bearer <jwt>": 401 jwt_verification."""
    params = [("uuids[]", fake.add_order())]
    token = make_token(fake.access_key, fake.secret_key, params)
    async with fake_http.delete(
        f"{fake.base_url}{LIST}?{encode_query(params)}", headers={"Authorization": f"Token {token}"}
    ) as response:
        body = await response.json()
    assert (response.status, body["error"]["name"]) == (401, "jwt_verification")


async def test_wrong_secret(fake: FakeUpbit, fake_http: aiohttp.ClientSession) -> None:
    """A token signed with another secret: 401 jwt_verification."""
    order = fake.add_order()
    reply = await signed(fake_http, fake, "DELETE", LIST, [("uuids[]", order)], secret_key="x" * 40)
    assert (reply.status, reply.error_name) == (401, "jwt_verification")
    assert fake.state(order) == "wait"


async def test_unknown_access_key(fake: FakeUpbit, fake_http: aiohttp.ClientSession) -> None:
    """A token for an access key the exchange does not know: 401 invalid_access_key."""
    order = fake.add_order()
    reply = await signed(
        fake_http, fake, "DELETE", LIST, [("uuids[]", order)], access_key="unknown" * 5
    )
    assert (reply.status, reply.error_name) == (401, "invalid_access_key")
    assert fake.records[-1].access_key == "unknown" * 5


async def test_reused_nonce(fake: FakeUpbit, fake_http: aiohttp.ClientSession) -> None:
    """The second use of a nonce by the same key: 401 nonce_used, and no order changes."""
    first, second = fake.add_order(), fake.add_order()
    nonce = "fixed-nonce"
    token = make_token(fake.access_key, fake.secret_key, [("uuids[]", first)], nonce=nonce)
    reply = await send(fake_http, fake.base_url, "DELETE", LIST, [("uuids[]", first)], token=token)
    assert reply.status == 200
    token = make_token(fake.access_key, fake.secret_key, [("uuids[]", second)], nonce=nonce)
    reply = await send(fake_http, fake.base_url, "DELETE", LIST, [("uuids[]", second)], token=token)
    assert (reply.status, reply.error_name) == (401, "nonce_used")
    assert fake.state(second) == "wait"


async def test_replayed_token(fake: FakeUpbit, fake_http: aiohttp.ClientSession) -> None:
    """Resending the very same signed request: 401 nonce_used."""
    params = [("uuids[]", fake.add_order())]
    token = make_token(fake.access_key, fake.secret_key, params)
    first = await send(fake_http, fake.base_url, "DELETE", LIST, params, token=token)
    again = await send(fake_http, fake.base_url, "DELETE", LIST, params, token=token)
    assert (first.status, again.status, again.error_name) == (200, 401, "nonce_used")


async def test_tampered_hash(fake: FakeUpbit, fake_http: aiohttp.ClientSession) -> None:
    """A query_hash that does not match the query: 401 invalid_query_payload."""
    order = fake.add_order()
    token = make_token(
        fake.access_key, fake.secret_key, [("uuids[]", order)], extra={"query_hash": "0" * 128}
    )
    reply = await send(fake_http, fake.base_url, "DELETE", LIST, [("uuids[]", order)], token=token)
    assert (reply.status, reply.error_name) == (401, "invalid_query_payload")
    assert fake.state(order) == "wait"


async def test_query_without_hash(fake: FakeUpbit, fake_http: aiohttp.ClientSession) -> None:
    """A request with a query but a token without query_hash: 401 invalid_query_payload."""
    order = fake.add_order()
    token = make_token(fake.access_key, fake.secret_key)
    reply = await send(fake_http, fake.base_url, "DELETE", LIST, [("uuids[]", order)], token=token)
    assert (reply.status, reply.error_name) == (401, "invalid_query_payload")
    assert fake.state(order) == "wait"


async def test_hash_of_encoded_query_refused(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """Hashing the percent-encoded query instead of the decoded one is refused."""
    params = [("uuids[]", fake.add_order())]
    wrong = hashlib.sha512(encode_query(params).encode()).hexdigest()
    token = make_token(fake.access_key, fake.secret_key, params, extra={"query_hash": wrong})
    reply = await send(fake_http, fake.base_url, "DELETE", LIST, params, token=token)
    assert (reply.status, reply.error_name) == (401, "invalid_query_payload")


async def test_literal_brackets_on_wire_accepted(
    fake: FakeUpbit, fake_http: aiohttp.ClientSession
) -> None:
    """Brackets sent literally or as %5B%5D decode to the same hashed text."""
    order = fake.add_order()
    params = [("uuids[]", order)]
    token = make_token(fake.access_key, fake.secret_key, params)
    reply = await send(
        fake_http, fake.base_url, "DELETE", LIST, token=token, raw_query=f"uuids[]={order}"
    )
    assert reply.status == 200


async def test_parameter_order_matters(fake: FakeUpbit, fake_http: aiohttp.ClientSession) -> None:
    """The hash covers parameters in the order sent, so reordering them is refused."""
    a, b = fake.add_order(), fake.add_order()
    token = make_token(fake.access_key, fake.secret_key, [("uuids[]", a), ("uuids[]", b)])
    reply = await send(
        fake_http, fake.base_url, "DELETE", LIST, [("uuids[]", b), ("uuids[]", a)], token=token
    )
    assert (reply.status, reply.error_name) == (401, "invalid_query_payload")


async def test_unsupported_algorithm(fake: FakeUpbit, fake_http: aiohttp.ClientSession) -> None:
    """A token signed with HS384 is refused: 401 jwt_verification."""
    params = [("uuids[]", fake.add_order())]
    payload = {"access_key": fake.access_key, "nonce": "n-384"}
    token = jwt.encode(payload, fake.secret_key + "x" * 10, algorithm="HS384")
    reply = await send(fake_http, fake.base_url, "DELETE", LIST, params, token=token)
    assert (reply.status, reply.error_name) == (401, "jwt_verification")


async def test_records_hold_no_secrets(fake: FakeUpbit, fake_http: aiohttp.ClientSession) -> None:
    """Neither records nor reprs reveal the secret key or the token."""
    params = [("uuids[]", fake.add_order())]
    token = make_token(fake.access_key, fake.secret_key, params)
    await send(fake_http, fake.base_url, "DELETE", LIST, params, token=token)
    shown = repr(fake) + repr(fake.records) + str([r.to_dict() for r in fake.records])
    assert fake.secret_key not in shown
    assert token not in shown
    assert fake.access_key in shown
