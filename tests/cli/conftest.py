"""The command line's fixtures: the fake's key in the environment, a fake-server process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli.processes import Server, serve, use_key
from upbit_cancel.testing import FakeUpbit


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch, fake_in_thread: FakeUpbit) -> FakeUpbit:
    """The fake's key pair in the environment, as ``cancel`` reads it."""
    use_key(monkeypatch, fake_in_thread.access_key, fake_in_thread.secret_key)
    return fake_in_thread


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """``upbit-cancel fake-server`` with 50 open orders."""
    async for running in serve(tmp_path, "--orders", "50"):
        yield running
