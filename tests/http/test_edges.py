"""An exchange that departs from its docs, as the session meets it: header spellings, and what
it echoes back."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.conftest import SessionFor
from upbit_cancel import BatchCanceller, SlidingWindowLimiter
from upbit_cancel._http.answers import parse_remaining_req
from upbit_cancel.testing import FakeUpbit

UNKNOWN = "0000abcd-0000-4000-8000-000000000000"
EMPTY = {"success": {"count": 0, "orders": []}, "failed": {"count": 0, "orders": []}}
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJhY2Nlc3Nfa2V5IjoiYSJ9.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("header", "group"),
    [
        ("group=exchange.default; min=1800; sec=0", "default"),
        ("group=exchange.order-cancel-all; sec=0", "order-cancel-all"),
        ("group=default; sec=0", "default"),
    ],
)
def test_both_spellings_of_a_group_are_one_group(header: str, group: str) -> None:
    """Upbit's newer pages write ``exchange.default``: the same group as ``default``."""
    parsed = parse_remaining_req(header)
    assert parsed is not None
    assert parsed.group == group


async def test_the_newer_spelling_of_the_default_group_pauses_the_account(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """``group=exchange.default; sec=0`` is honoured as ``group=default; sec=0`` is."""
    fake.queue_response(
        200, EMPTY, headers={"Remaining-Req": "group=exchange.default; min=1800; sec=0"}
    )
    async with session_for(fake, limiter=SlidingWindowLimiter()) as session:
        await session.cancel_orders(uuids=[UNKNOWN])
        limiter = session.limiter
        assert isinstance(limiter, SlidingWindowLimiter)
        assert limiter.paused_until > asyncio.get_running_loop().time()


async def test_a_token_echoed_in_a_malformed_header_never_reaches_a_log_record(
    fake: FakeUpbit, session_for: SessionFor, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing the exchange sends back reaches a log record unredacted, at any level."""
    fake.queue_response(
        200, EMPTY, headers={"Remaining-Req": f"group=default; sec=oops; Bearer {TOKEN}"}
    )
    caplog.set_level(logging.DEBUG, logger="upbit_cancel")
    async with session_for(fake) as session:
        await session.cancel_orders(uuids=[UNKNOWN])
    assert "Remaining-Req" in caplog.text  # the header was logged, redacted
    assert TOKEN not in caplog.text
    assert "eyJ" not in caplog.text


@pytest.mark.parametrize("status", [400, 429, 418])
async def test_a_token_or_secret_echoed_in_an_error_never_reaches_the_caller(
    status: int, fake: FakeUpbit, session_for: SessionFor, caplog: pytest.LogCaptureFixture
) -> None:
    """An error answer that quotes the token as its name and the secret key in its message:
    neither is in the error (its text, name or attributes) nor in any log record."""
    body = {"error": {"name": TOKEN, "message": f"bad key {fake.secret_key}"}}
    fake.queue_response(status, body, count=10)
    caplog.set_level(logging.DEBUG, logger="upbit_cancel")
    async with session_for(fake, rate_limit_retries=1) as session:
        result = await BatchCanceller(session).cancel(uuids=[UNKNOWN])
    [entry] = result.unresolved
    error = entry.error
    assert error is not None
    shown = " ".join([str(error), repr(error), str(vars(error)), caplog.text])
    for secret in (TOKEN, "eyJ", fake.secret_key):
        assert secret not in shown
    assert "[redacted]" in str(error)
