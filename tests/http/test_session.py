"""UpbitSession against the fake exchange over loopback HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import aiohttp
import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import SessionFor
from upbit_cancel import (
    REGIONS,
    APIError,
    AuthenticationError,
    BlockedError,
    ConnectError,
    ConnectionLostError,
    InvalidRequestError,
    Lease,
    MalformedResponseError,
    MarketOfflineError,
    OrderNotFoundError,
    OutcomeUnknownError,
    OutOfScopeError,
    RateLimitError,
    ResponseTimeoutError,
    ServerError,
    SessionClosedError,
    SlidingWindowLimiter,
    UpbitSession,
)
from upbit_cancel._http.answers import parse_remaining_req
from upbit_cancel._http.signing import Signer, encode_query
from upbit_cancel.testing import FakeUpbit, Faults

UNKNOWN = "0000abcd-0000-4000-8000-000000000000"


def fast_limiter() -> SlidingWindowLimiter:
    """A limiter whose pauses last milliseconds, for tests that provoke 429s."""
    return SlidingWindowLimiter(30, 0.02, margin=0.0)


async def test_cancels_open_orders_and_reports_closed_ones_as_failed(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """Open orders land in success, filled and canceled ones in failed, with their markets."""
    open_order = fake.add_order(market="SGD-ETH", identifier="bot-1")
    filled = fake.add_order(market="SGD-BTC", state="done")
    canceled = fake.add_order(market="SGD-BTC", state="cancel")
    async with session_for(fake) as session:
        result = await session.cancel_orders(uuids=[open_order, filled, canceled])
    assert [(o.uuid, o.market, o.identifier) for o in result.success.orders] == [
        (open_order, "SGD-ETH", "bot-1")
    ]
    assert result.success.count == 1
    assert sorted(o.uuid for o in result.failed.orders) == sorted([filled, canceled])
    assert all(o.identifier is None for o in result.failed.orders)
    assert fake.state(open_order) == "cancel"
    assert fake.state(filled) == "done"


@pytest.mark.parametrize("identifier", ["plain", "a:b", "x&y=z", "with space", "plus+sign", "ü/%"])
async def test_identifiers_with_reserved_characters_are_signed_correctly(
    fake: FakeUpbit, identifier: str, session_for: SessionFor
) -> None:
    """Identifiers survive the trip: percent-encoded on the wire, hashed decoded."""
    uuid = fake.add_order(identifier=identifier)
    async with session_for(fake) as session:
        result = await session.cancel_orders(identifiers=[identifier])
    assert [(o.uuid, o.identifier) for o in result.success.orders] == [(uuid, identifier)]
    assert fake.state(uuid) == "cancel"


@given(st.lists(st.text(min_size=1), min_size=1, max_size=5))
def test_wire_query_decodes_to_the_hashed_text(values: list[str]) -> None:
    """Whatever the values, the server's decoding of the wire text equals what was hashed."""
    params = [("identifiers[]", value) for value in values]
    query = encode_query(params)
    assert unquote(query.wire) == query.hashed
    assert parse_qsl(query.wire, keep_blank_values=True) == params
    # Every value percent-encoded in full, the brackets of the name kept literal.
    assert query.wire == "&".join(f"identifiers[]={quote(value, safe='')}" for value in values)


_PRINTABLE_ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


@given(
    st.text(_PRINTABLE_ASCII, min_size=1, max_size=60),
    st.text(_PRINTABLE_ASCII, min_size=32, max_size=64).filter(
        lambda key: "-----BEGIN" not in key and not key.startswith(("ssh-", "ecdsa-"))
    ),
    st.none() | st.text(),
)
def test_a_token_is_the_one_pyjwt_makes_of_its_payload(
    access_key: str, secret_key: str, hashed: str | None
) -> None:
    """The session's own JWT verifies with PyJWT, carries the documented claims, and is byte for
    byte what ``jwt.encode`` makes of them (for every key PyJWT takes: it refuses a secret that
    looks like an SSH public key); every token has a nonce of its own."""
    signer = Signer(access_key, secret_key)
    token = signer.token(hashed)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(token, secret_key, algorithms=["HS256"])
    expected: dict[str, str] = {"access_key": access_key, "nonce": claims["nonce"]}
    if hashed:  # a request without a query (None, or nothing to hash) carries no hash
        expected["query_hash"] = hashlib.sha512(hashed.encode()).hexdigest()
        expected["query_hash_alg"] = "SHA512"
    assert claims == expected
    assert uuid.UUID(claims["nonce"]).version == 4
    assert jwt.encode(expected, secret_key, algorithm="HS256") == token
    again = jwt.decode(signer.token(hashed), secret_key, algorithms=["HS256"])
    assert again["nonce"] != claims["nonce"]


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({}, TypeError, "exactly one of"),
        ({"uuids": [UNKNOWN], "identifiers": ["a"]}, TypeError, "exactly one of"),
        ({"uuids": []}, ValueError, "empty"),
        (
            {"uuids": [f"00000000-0000-4000-8000-{n:012d}" for n in range(21)]},
            ValueError,
            "BatchCanceller",
        ),
        ({"uuids": [UNKNOWN, 7]}, TypeError, "must be strings"),
        ({"uuids": ["not-a-uuid"]}, ValueError, "malformed uuid"),
        ({"uuids": [UNKNOWN.upper()]}, ValueError, "lowercase"),
        ({"uuids": [UNKNOWN, UNKNOWN]}, ValueError, "duplicate"),
        ({"uuids": UNKNOWN}, TypeError, "not one string"),
        ({"uuids": 5}, TypeError, "list of ids"),
        ({"identifiers": [""]}, ValueError, "empty identifier"),
        ({"identifiers": ["\ud800"]}, ValueError, "lone surrogate"),
    ],
)
async def test_bad_ids_are_refused_before_sending(
    fake: FakeUpbit,
    arguments: dict[str, Any],
    error: type[Exception],
    message: str,
    session_for: SessionFor,
) -> None:
    """Ids that cannot be sent raise TypeError or ValueError saying what to do; nothing sent."""
    async with session_for(fake) as session:
        with pytest.raises(error, match=message):
            await session.cancel_orders(**arguments)
    assert fake.records == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"base_url": "http://example.com"}, "loopback"),
        ({"base_url": "ftp://127.0.0.1"}, "https://host"),
        ({"base_url": "https://api.upbit.com/v1"}, "only scheme and host"),
        ({"region": "jp"}, "unknown region 'jp'"),
        ({"read_timeout": 0}, "positive"),
        ({"rate_limit_retries": -1}, "zero or more"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(
    arguments: dict[str, Any], message: str
) -> None:
    """Settings that cannot work raise ValueError at construction."""
    with pytest.raises(ValueError, match=message):
        UpbitSession("a" * 40, "s" * 40, **arguments)


def test_regions_map_to_their_base_urls() -> None:
    """sg, id and th use {region}-api.upbit.com; kr uses api.upbit.com."""
    assert UpbitSession("a" * 40, "s" * 40, region="th").base_url == "https://th-api.upbit.com"
    assert UpbitSession("a" * 40, "s" * 40, region="kr").base_url == "https://api.upbit.com"
    assert set(REGIONS) == {"sg", "id", "th", "kr"}
    assert UpbitSession("a" * 40, "s" * 40, base_url="http://localhost:8080/").base_url == (
        "http://localhost:8080"
    )


def test_a_truncated_secret_is_refused() -> None:
    """A secret shorter than Upbit's 40 characters is a copy-paste accident."""
    with pytest.raises(ValueError, match="40"):
        UpbitSession("a" * 40, "short-secret")


async def test_secrets_never_appear_in_repr_errors_or_logs(
    fake: FakeUpbit, caplog: pytest.LogCaptureFixture, session_for: SessionFor
) -> None:
    """Neither the secret key nor a token shows up in repr, error text or debug logs."""
    caplog.set_level(logging.DEBUG, logger="upbit_cancel")
    fake.queue_response(429, {"error": {"name": "too_many_requests", "message": "slow down"}})
    fake.queue_response(401, {"error": {"name": "jwt_verification", "message": "bad token"}})
    async with session_for(fake, limiter=fast_limiter()) as session:
        with pytest.raises(AuthenticationError) as caught:
            await session.cancel_orders(uuids=[UNKNOWN])
        texts = [repr(session), str(caught.value), repr(caught.value), caplog.text]
    for text in texts:
        assert fake.secret_key not in text
        assert "Bearer" not in text
    assert fake.access_key not in repr(session)


async def test_request_signs_any_call_within_the_same_budget(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """`request` returns the decoded JSON of any signed call, params hashed in order."""
    wanted = fake.add_order(market="SGD-ETH")
    fake.add_order(market="SGD-BTC")
    async with session_for(fake) as session:
        orders = await session.request("GET", "/v1/orders/open", params={"market": "SGD-ETH"})
        assert session.requests_sent == 1
    assert [order["uuid"] for order in orders] == [wanted]


async def test_sessions_of_one_key_share_a_limiter_and_other_keys_do_not(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """Same access key, same budget; another key gets its own unless one is passed."""
    other_access, other_secret = fake.add_credentials()
    shared = SlidingWindowLimiter()
    async with (
        session_for(fake) as first,
        session_for(fake) as second,
        UpbitSession(other_access, other_secret, base_url=fake.base_url, limiter=shared) as third,
        UpbitSession(other_access, other_secret, base_url=fake.base_url) as fourth,
    ):
        assert first.limiter is second.limiter
        assert third.limiter is fourth.limiter is shared
        assert first.limiter is not shared


async def test_an_idle_limiter_of_closed_sessions_may_be_replaced(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """Sessions opened one after another may each bring a limiter once the last one is idle."""
    async with session_for(fake, limiter=SlidingWindowLimiter(30, 1.0)):
        pass
    replacement = SlidingWindowLimiter(30, 1.0)
    async with session_for(fake, limiter=replacement) as second:
        assert second.limiter is replacement


async def test_close_is_idempotent_and_a_closed_session_refuses_work(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """aclose() twice is fine; any call afterwards raises SessionClosedError."""
    session = session_for(fake)
    await session.aclose()
    await session.aclose()
    assert session.closed
    with pytest.raises(SessionClosedError, match="create a new one"):
        await session.cancel_orders(uuids=[UNKNOWN])
    with pytest.raises(SessionClosedError):
        async with session:
            pass


async def test_a_given_http_session_is_used_and_left_open(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """The caller's aiohttp session carries the requests and stays open after aclose()."""
    order = fake.add_order()
    async with aiohttp.ClientSession() as http:
        async with session_for(fake, http_session=http) as session:
            await session.cancel_orders(uuids=[order])
        assert not http.closed
    assert fake.state(order) == "cancel"


DOCUMENTED_NAMES = [
    (401, "jwt_verification", AuthenticationError),
    (401, "invalid_query_payload", AuthenticationError),
    (401, "expired_access_key", AuthenticationError),
    (401, "nonce_used", AuthenticationError),
    (401, "no_authorization_ip", AuthenticationError),
    (401, "no_authorization_i_p", AuthenticationError),
    (401, "no_authorization_token", AuthenticationError),
    (401, "invalid_access_key", AuthenticationError),
    (403, "out_of_scope", OutOfScopeError),
    (401, "out_of_scope", OutOfScopeError),
    (403, "market_offline", MarketOfflineError),
    (400, "validation_error", InvalidRequestError),
    (400, "invalid_parameter", InvalidRequestError),
    (400, "bad_request", InvalidRequestError),
    (400, "QUERY_PARAMETER_NOT_SUPPORTED", InvalidRequestError),
    (404, "order_not_found", OrderNotFoundError),
    (400, "some_future_name", APIError),
]


@pytest.mark.parametrize(("status", "name", "error_class"), DOCUMENTED_NAMES)
async def test_each_error_name_maps_to_its_class(
    fake: FakeUpbit, status: int, name: str, error_class: type[APIError], session_for: SessionFor
) -> None:
    """The class follows Upbit's error name; status, name, message and ids are kept."""
    fake.queue_response(status, {"error": {"name": name, "message": "메시지 text"}})
    async with session_for(fake) as session:
        with pytest.raises(APIError) as caught:
            await session.cancel_orders(uuids=[UNKNOWN])
    error = caught.value
    assert type(error) is error_class
    assert (error.status, error.name, error.ids) == (status, name, (UNKNOWN,))
    assert "메시지 text" in str(error)
    assert len(fake.records) == 1


async def test_an_html_server_error_is_a_clear_outcome_unknown_error(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """A 5xx with an HTML page says so and is flagged as possibly processed."""
    fake.queue_response(502, "<html><body>Bad Gateway</body></html>", content_type="text/html")
    async with session_for(fake) as session:
        with pytest.raises(ServerError) as caught:
            await session.cancel_orders(uuids=[UNKNOWN])
    assert isinstance(caught.value, OutcomeUnknownError)
    assert caught.value.status == 502
    assert caught.value.name is None
    assert "HTML" in str(caught.value)
    assert "may or may not" in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [b'{"success": {"count": 1, "orders": [', b"[]", b'{"success": {"count": 0}}', b"null"],
)
async def test_a_malformed_success_body_is_a_clear_error(
    fake: FakeUpbit, body: bytes, session_for: SessionFor
) -> None:
    """A 200 that is not the documented JSON raises MalformedResponseError, outcome unknown."""
    fake.queue_response(200, body)
    async with session_for(fake) as session:
        with pytest.raises(MalformedResponseError, match="may or may not") as caught:
            await session.cancel_orders(uuids=[UNKNOWN])
    assert caught.value.ids == (UNKNOWN,)


async def test_a_429_pauses_and_retries_with_a_fresh_token(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """After a 429 the request is retried (a reused nonce would be refused) and succeeds."""
    order = fake.add_order()
    fake.queue_response(429, {"error": {"name": "too_many_requests", "message": "slow down"}})
    limiter = fast_limiter()
    async with session_for(fake, limiter=limiter) as session:
        result = await session.cancel_orders(uuids=[order])
        assert (session.requests_sent, session.rate_limited) == (2, 1)
    assert result.success.count == 1
    assert [record.status for record in fake.records] == [429, 200]
    assert fake.records[1].arrival >= fake.records[0].arrival + limiter.window


async def test_a_plain_text_429_is_retried_too(session_for: SessionFor) -> None:
    """The plain-text variant of 429 is recognised like the JSON one."""
    async with FakeUpbit(limit=1, window=0.05, plain_text_429=True) as fake:
        orders = [fake.add_order() for _ in range(3)]
        limiter = SlidingWindowLimiter(3, 0.02, margin=0.0)
        async with session_for(fake, limiter=limiter, rate_limit_retries=10) as session:
            results = await asyncio.gather(
                *(session.cancel_orders(uuids=[order]) for order in orders)
            )
            assert session.rate_limited >= 1
    assert [result.success.count for result in results] == [1, 1, 1]
    assert all(fake.state(order) == "cancel" for order in orders)


async def test_429_retries_are_bounded(fake: FakeUpbit, session_for: SessionFor) -> None:
    """Refused every time, the request gives up after the retries with RateLimitError."""
    fake.queue_response(429, "Too many API requests.", content_type="text/plain", count=10)
    async with session_for(fake, limiter=fast_limiter(), rate_limit_retries=2) as session:
        with pytest.raises(RateLimitError) as caught:
            await session.cancel_orders(uuids=[UNKNOWN])
    assert type(caught.value) is RateLimitError
    assert "3 times" in str(caught.value)
    assert len(fake.records) == 3


async def test_a_418_blocks_the_account_without_sending_anything(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """418 raises BlockedError with the stated duration; later calls fail before sending."""
    order = fake.add_order()
    fake.queue_response(
        418, {"error": {"name": "blocked", "message": "Your access is blocked for 30 seconds."}}
    )
    shared = SlidingWindowLimiter()
    async with (
        session_for(fake, limiter=shared) as session,
        session_for(fake, limiter=shared) as sibling,
    ):
        with pytest.raises(BlockedError) as first:
            await session.cancel_orders(uuids=[order])
        loop_time = asyncio.get_running_loop().time()
        assert first.value.retry_after == 30.0
        limiter = session.limiter
        assert isinstance(limiter, SlidingWindowLimiter)
        assert limiter.blocked_until == pytest.approx(loop_time + 30.0, abs=1.0)
        for caller in (session, sibling):
            with pytest.raises(BlockedError) as later:
                await caller.cancel_orders(uuids=[order])
            assert later.value.ids == (order,)
            assert 29.0 < later.value.retry_after <= 30.0
    assert len(fake.records) == 1
    assert fake.state(order) == "wait"


async def test_a_418_without_a_duration_blocks_for_a_minute(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """When the message states no duration, the block lasts a conservative 60 seconds."""
    fake.queue_response(418, "I'm a teapot", content_type="text/plain")
    async with session_for(fake) as session:
        with pytest.raises(BlockedError, match="no duration stated") as caught:
            await session.cancel_orders(uuids=[UNKNOWN])
    assert caught.value.retry_after == 60.0


async def test_repeated_429s_turn_into_a_418_block_that_is_never_retried(
    session_for: SessionFor,
) -> None:
    """The fake escalates to 418 after 429s; the session stops at the first 418."""
    async with FakeUpbit(limit=1, block_after=2, block_seconds=45) as fake:
        orders = [fake.add_order() for _ in range(4)]
        limiter = SlidingWindowLimiter(10, 0.02, margin=0.0)
        async with session_for(fake, limiter=limiter, rate_limit_retries=10) as session:
            outcomes = await asyncio.gather(
                *(session.cancel_orders(uuids=[order]) for order in orders),
                return_exceptions=True,
            )
        blocked = [outcome for outcome in outcomes if isinstance(outcome, BlockedError)]
        assert blocked
        assert all(0 < error.retry_after <= 45 for error in blocked)
        statuses = [record.status for record in fake.records]
        assert statuses.count(418) == 1
        assert statuses[-1] == 418


async def test_a_dropped_connection_is_never_resent(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """The exchange processed it, the answer never came: outcome unknown, sent exactly once."""
    order = fake.add_order()
    async with FakeUpbit(faults=Faults(drop_rate=1.0)) as dropping:
        order = dropping.add_order()
        async with session_for(dropping) as session:
            # A first request opens a kept-alive connection that aiohttp would retry on.
            with pytest.raises(ConnectionLostError, match="may or may not"):
                await session.cancel_orders(uuids=[order])
            with pytest.raises(ConnectionLostError):
                await session.request("GET", "/v1/orders/open")
        assert dropping.state(order) == "cancel"
        assert len(dropping.records) == 2
        assert all(record.error_name is None for record in dropping.records)


async def test_a_slow_answer_times_out_as_outcome_unknown(session_for: SessionFor) -> None:
    """No answer within read_timeout raises ResponseTimeoutError."""
    async with FakeUpbit(faults=Faults(slow_rate=1.0, slow_seconds=2.0)) as fake:
        order = fake.add_order()
        async with session_for(fake, read_timeout=0.2) as session:
            with pytest.raises(ResponseTimeoutError, match="may or may not"):
                await session.cancel_orders(uuids=[order])
        assert fake.state(order) == "cancel"


async def test_an_unreachable_exchange_is_a_connect_error() -> None:
    """Nothing listening: ConnectError, which says that nothing was sent."""
    async with FakeUpbit() as fake:
        base_url = fake.base_url
        access_key, secret_key = fake.access_key, fake.secret_key
    async with UpbitSession(access_key, secret_key, base_url=base_url) as session:
        with pytest.raises(ConnectError, match="nothing was sent"):
            await session.cancel_orders(uuids=[UNKNOWN])


async def test_remaining_req_is_exposed(fake: FakeUpbit, session_for: SessionFor) -> None:
    """The last Remaining-Req header is parsed and available on the session."""
    async with session_for(fake) as session:
        assert session.remaining_req is None
        await session.request("GET", "/v1/orders/open")
        assert session.remaining_req is not None
        assert (session.remaining_req.group, session.remaining_req.sec) == ("default", 29)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("group=default; min=1800; sec=29", ("default", 29, 1800)),
        ("GROUP=default;SEC=0", ("default", 0, None)),
        ("  sec=3 ; group = order ", ("order", 3, None)),
        ("group=default; sec=many", None),
        ("group=default", None),
        ("sec=-1; group=default", None),
        ("", None),
        (None, None),
    ],
)
def test_remaining_req_is_parsed_tolerantly(
    header: str | None, expected: tuple[str, int, int | None] | None
) -> None:
    """Odd spacing and case are fine; anything unusable is ignored rather than raised."""
    parsed = parse_remaining_req(header)
    assert (None if parsed is None else (parsed.group, parsed.sec, parsed.min)) == expected


async def test_a_lowercase_remaining_req_header_is_read(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """Over HTTP/2 the header name may arrive lowercase; sec=0 pauses the account."""
    fake.queue_response(
        200,
        {"success": {"count": 0, "orders": []}, "failed": {"count": 0, "orders": []}},
        headers={"remaining-req": "group=default; min=1800; sec=0"},
    )
    async with session_for(fake, limiter=SlidingWindowLimiter()) as session:
        await session.cancel_orders(uuids=[UNKNOWN])
        assert session.remaining_req is not None
        assert session.remaining_req.sec == 0
        limiter = session.limiter
        assert isinstance(limiter, SlidingWindowLimiter)
        assert limiter.paused_until > asyncio.get_running_loop().time()


async def test_a_callers_raise_for_status_does_not_change_error_handling(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """A caller's aiohttp session with raise_for_status=True still gets retries and typed errors."""
    order = fake.add_order()
    fake.queue_response(429, {"error": {"name": "too_many_requests", "message": "slow down"}})
    fake.queue_response(401, {"error": {"name": "invalid_access_key", "message": "who?"}})
    async with (
        aiohttp.ClientSession(raise_for_status=True) as http,
        session_for(fake, http_session=http, limiter=fast_limiter()) as session,
    ):
        with pytest.raises(AuthenticationError):
            await session.cancel_orders(uuids=[order])
        assert session.rate_limited == 1
        result = await session.cancel_orders(uuids=[order])
    assert result.success.count == 1


async def test_a_closed_http_session_is_a_clear_error(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """Given an aiohttp session that is already closed: SessionClosedError, not RuntimeError."""
    http = aiohttp.ClientSession()
    await http.close()
    with pytest.raises(SessionClosedError, match="http_session is closed"):
        async with session_for(fake, http_session=http):
            pass
    session = session_for(fake, http_session=http)
    with pytest.raises(SessionClosedError, match="http_session is closed"):
        await session.cancel_orders(uuids=[UNKNOWN])


async def test_a_deeply_nested_body_is_malformed_not_a_crash(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """JSON too deep to decode is a MalformedResponseError (200) or a plain APIError (400)."""
    fake.queue_response(200, "[" * 100_000)
    fake.queue_response(400, "[" * 100_000)
    async with session_for(fake) as session:
        with pytest.raises(MalformedResponseError):
            await session.cancel_orders(uuids=[UNKNOWN])
        with pytest.raises(APIError) as caught:
            await session.cancel_orders(uuids=[UNKNOWN])
    assert caught.value.status == 400


async def test_one_missing_list_is_read_as_empty(fake: FakeUpbit, session_for: SessionFor) -> None:
    """An answer with only `success` keeps its orders; `failed` is empty."""
    fake.queue_response(200, {"success": {"count": 1, "orders": [{"uuid": UNKNOWN}]}})
    async with session_for(fake) as session:
        result = await session.cancel_orders(uuids=[UNKNOWN])
    assert [(o.uuid, o.market) for o in result.success.orders] == [(UNKNOWN, "")]
    assert result.failed.count == 0


class _BlockedAfterGrant:
    """A limiter whose account gets blocked right after each grant (another session's 418)."""

    def __init__(self, inner: SlidingWindowLimiter) -> None:
        self.inner = inner

    @property
    def capacity(self) -> int:
        return self.inner.capacity

    @property
    def idle(self) -> bool:
        return self.inner.idle

    async def acquire(self) -> Lease:
        lease = await self.inner.acquire()
        self.inner.block(30.0, "HTTP 418: blocked for 30 seconds")
        return lease

    def try_acquire(self) -> Lease | None:
        return None

    def departing(self, lease: Lease) -> None:
        self.inner.departing(lease)

    def release(self, lease: Lease) -> None:
        self.inner.release(lease)


async def test_a_block_that_starts_after_the_grant_still_stops_the_request(
    fake: FakeUpbit,
    session_for: SessionFor,
) -> None:
    """A 418 arriving between a request's grant and its sending keeps it from being sent."""
    inner = SlidingWindowLimiter()
    async with session_for(fake, limiter=_BlockedAfterGrant(inner)) as session:
        with pytest.raises(BlockedError, match="was not sent"):
            await session.cancel_orders(uuids=[UNKNOWN])
        assert inner.in_flight == 0
        assert session.requests_sent == 0
    assert fake.records == []


@pytest.mark.parametrize(
    ("message", "seconds"),
    [
        ("Your access is blocked for 30 seconds.", 30.0),
        ("blocked: 1 minute 30 seconds", 90.0),
        ("차단되었습니다. 10분 후 다시 시도하세요", 600.0),
        ("blocked for 1.5 min", 90.0),
    ],
)
async def test_the_block_lasts_as_long_as_the_message_says(
    fake: FakeUpbit, message: str, seconds: float, session_for: SessionFor
) -> None:
    """Durations are read from the 418 message, in English or Korean, all parts added up."""
    fake.queue_response(418, {"error": {"name": "blocked", "message": message}})
    async with session_for(fake) as session:
        with pytest.raises(BlockedError) as caught:
            await session.cancel_orders(uuids=[UNKNOWN])
    assert caught.value.retry_after == seconds
