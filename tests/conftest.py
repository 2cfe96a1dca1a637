"""Shared fixtures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from upbit_cancel.testing import FakeUpbit


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpbit]:
    """A running fake exchange with default settings (sliding window, 30 per second)."""
    async with FakeUpbit() as exchange:
        yield exchange


@pytest.fixture
async def fake_http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session for talking to the fake exchange directly."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def fake_in_thread() -> Iterator[FakeUpbit]:
    """A running fake exchange served by its own event loop in a background thread.

    For synchronous tests of code that runs its own loop, such as ``main([...])``. Seed orders
    and read states while no request is in flight (before and after the call under test).
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-upbit", daemon=True)
    thread.start()
    exchange = FakeUpbit()
    try:
        asyncio.run_coroutine_threadsafe(exchange.start(), loop).result(timeout=10)
        yield exchange
    finally:
        asyncio.run_coroutine_threadsafe(exchange.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
