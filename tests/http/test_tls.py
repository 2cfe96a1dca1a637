"""The core paths over HTTPS: a fake exchange with a throwaway certificate authority, trusted
by the session's own SSL context (or, for a process, by SSL_CERT_FILE), and verified."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from upbit_cancel import BatchCanceller, ConnectError, SlidingWindowLimiter, UpbitSession
from upbit_cancel.testing import FakeUpbit


@pytest.fixture
async def tls_fake() -> AsyncIterator[FakeUpbit]:
    async with FakeUpbit(tls=True) as fake:
        yield fake


def session_of(fake: FakeUpbit, **options: object) -> UpbitSession:
    options.setdefault("limiter", SlidingWindowLimiter())
    return UpbitSession(fake.access_key, fake.secret_key, base_url=fake.base_url, **options)  # type: ignore[arg-type]


async def test_cancels_and_confirms_by_push_over_https(tls_fake: FakeUpbit) -> None:
    """Cancel by list over HTTPS, confirmed by the order stream over wss://."""
    assert tls_fake.base_url.startswith("https://")
    uuids = tls_fake.add_orders(250)
    async with session_of(tls_fake, ssl=tls_fake.client_ssl_context()) as session:
        result = await BatchCanceller(session).cancel(uuids=uuids, confirm=True)
    assert result.success.count == 250
    assert result.confirmed
    assert result.still_open == ()
    assert tls_fake.stream_events_sent >= 250
    assert tls_fake.max_in_window() <= 30


async def test_cancel_open_uses_both_lanes_over_https(tls_fake: FakeUpbit) -> None:
    """Listing, list cancels and batch cancels over HTTPS close every open order."""
    uuids = tls_fake.add_orders(700)
    async with session_of(tls_fake, ssl=tls_fake.client_ssl_context()) as session:
        result = await BatchCanceller(session).cancel_open(market="SGD-BTC")
    assert result.listing_complete
    assert result.batch_canceled
    assert {tls_fake.state(uuid) for uuid in uuids} == {"cancel"}


async def test_a_certificate_of_an_unknown_authority_is_a_clear_error(
    tls_fake: FakeUpbit,
) -> None:
    """Without the fake's authority the certificate is refused: a ConnectError that says what
    to check, chained to no ssl exception, and nothing sent."""
    uuids = tls_fake.add_orders(3)
    async with session_of(tls_fake) as session:
        result = await BatchCanceller(session).cancel(uuids=uuids)
    (entry, *_) = result.unresolved
    assert isinstance(entry.error, ConnectError)
    message = str(entry.error)
    assert "TLS certificate was refused" in message
    assert "ssl=" in message
    assert entry.error.__cause__ is None
    assert entry.error.__context__ is None
    assert tls_fake.received == 0


async def test_an_other_authority_is_not_trusted(tls_fake: FakeUpbit) -> None:
    """Trusting another fake's authority does not make this fake's certificate good."""
    other = FakeUpbit(tls=True)
    uuids = tls_fake.add_orders(3)
    async with session_of(tls_fake, ssl=other.client_ssl_context()) as session:
        result = await BatchCanceller(session).cancel(uuids=uuids)
    assert {type(entry.error) for entry in result.unresolved} == {ConnectError}
    assert tls_fake.received == 0


async def test_plain_http_to_an_https_server_is_a_clear_error(tls_fake: FakeUpbit) -> None:
    """The wrong scheme for the server is an error saying nothing arrived, not a hang."""
    plain = tls_fake.base_url.replace("https://", "http://")
    uuids = tls_fake.add_orders(3)
    async with UpbitSession(
        tls_fake.access_key,
        tls_fake.secret_key,
        base_url=plain,
        limiter=SlidingWindowLimiter(),
        read_timeout=2.0,
    ) as session:
        result = await BatchCanceller(session).cancel(uuids=uuids)
    assert result.unresolved
    assert tls_fake.records == []


async def test_ssl_is_checked() -> None:
    """ssl must be an SSLContext, and does not go with a caller's http_session."""
    with pytest.raises(TypeError, match=r"ssl\.SSLContext"):
        UpbitSession("a" * 40, "b" * 40, ssl=True)  # type: ignore[arg-type]
    async with aiohttp.ClientSession() as http:
        with pytest.raises(ValueError, match="connector"):
            UpbitSession("a" * 40, "b" * 40, ssl=ssl.create_default_context(), http_session=http)


def test_a_fake_without_tls_has_no_authority() -> None:
    """A plain fake has no authority to trust."""
    fake = FakeUpbit()
    assert fake.ca_pem is None
    with pytest.raises(RuntimeError, match="tls=True"):
        fake.client_ssl_context()


async def test_the_command_line_trusts_the_authority_of_ssl_cert_file(
    tls_fake: FakeUpbit, tmp_path: Path
) -> None:
    """A process trusts the fake through SSL_CERT_FILE, as it would a corporate authority."""
    uuids = tls_fake.add_orders(60)
    authority = tmp_path / "ca.pem"
    assert tls_fake.ca_pem is not None
    authority.write_bytes(tls_fake.ca_pem)
    env = {name: value for name, value in os.environ.items() if not name.startswith("UPBIT_")}
    env |= {
        "UPBIT_ACCESS_KEY": tls_fake.access_key,
        "UPBIT_SECRET_KEY": tls_fake.secret_key,
        "UPBIT_CANCEL_STATE_DIR": str(tmp_path),
        "SSL_CERT_FILE": str(authority),
        "PYTHONWARNINGS": "error",
    }
    script = Path(sys.executable).with_name("upbit-cancel")
    process = await asyncio.create_subprocess_exec(
        str(script),
        "cancel",
        "--all-open",
        "--confirm",
        "--base-url",
        tls_fake.base_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert {tls_fake.state(uuid) for uuid in uuids} == {"cancel"}
