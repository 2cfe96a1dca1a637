"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
