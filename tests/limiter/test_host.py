"""HostLimiter's store: a SQLite file of the host, keyed by a hash, that a stopped process, a
deleted directory or a long line of waiting requests never turns into a hang, a private budget
or a slow event loop."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import SessionFor
from upbit_cancel import BudgetUnavailableError, HostLimiter, RedisLimiter
from upbit_cancel._limiter.host.store import SqliteStore, state_dir
from upbit_cancel._limiter.shared.rules import decode
from upbit_cancel._redact import redact_url
from upbit_cancel.testing import FakeUpbit


def states(directory: Path) -> list[tuple[str, str]]:
    """Every budget's key and state text in the directory's file."""
    # closing(): a connection's own "with" ends a transaction, it does not close it.
    with contextlib.closing(sqlite3.connect(directory / "budgets.sqlite3")) as connection:
        rows = connection.execute("SELECT key, state FROM budgets").fetchall()
    return [(str(key), str(state)) for key, state in rows]


async def test_the_budget_is_kept_under_a_hash_never_the_key(
    tmp_path: Path, session_for: SessionFor
) -> None:
    """The file names the budget by a hash of the access key."""
    async with FakeUpbit() as fake:
        async with (
            HostLimiter(state_dir=tmp_path) as limiter,
            session_for(fake, limiter=limiter) as session,
        ):
            await session.cancel_orders(uuids=fake.add_orders(1))
        [(key, text)] = states(tmp_path)
        assert fake.access_key not in key
        assert fake.access_key not in text
        assert key.endswith(":default")


def test_a_script_that_cancels_in_two_event_loops_shares_one_limiter(
    tmp_path: Path, session_for: SessionFor
) -> None:
    """Two ``asyncio.run`` calls in turn, one limiter: the first loop tells the store its last
    answer before its session has closed, so the second finds the limiter idle and free to
    serve it (one limiter belongs to one event loop at a time), and the store holds no lease of
    the first as still in flight."""
    limiter = HostLimiter(state_dir=tmp_path)

    async def cancel_one() -> int:
        async with FakeUpbit() as fake:
            async with session_for(fake, limiter=limiter) as session:
                result = await session.cancel_orders(uuids=fake.add_orders(1))
            [(_, text)] = states(tmp_path)
            state = decode(text)
            assert state is not None
            assert not state.active
            return result.success.count

    try:
        assert [asyncio.run(cancel_one()) for _ in range(2)] == [1, 1]
    finally:
        asyncio.run(limiter.aclose())


def test_the_directory_is_named_by_the_variable_else_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``UPBIT_CANCEL_STATE_DIR`` first; empty, it is as if unset."""
    monkeypatch.setenv("UPBIT_CANCEL_STATE_DIR", str(tmp_path))
    assert state_dir() == tmp_path
    monkeypatch.setenv("UPBIT_CANCEL_STATE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if sys.platform.startswith("linux"):
        assert state_dir() == tmp_path / "cache" / "upbit_cancel"


@pytest.mark.processes
async def test_a_file_locked_by_a_stopped_process_is_out_of_reach_not_a_hang(
    tmp_path: Path,
) -> None:
    """Another process holds the file's write lock and never lets go (stopped inside a
    transaction): a new limiter's requests are refused as not sent within seconds."""
    limiter = HostLimiter(state_dir=tmp_path)
    limiter.bind("a" * 40)
    (await limiter.acquire()).release()  # the file exists
    await limiter.aclose()
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n",
        str(tmp_path / "budgets.sqlite3"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert await holder.stdout.readline() == b"locked\n"
        async with HostLimiter(state_dir=tmp_path) as second:
            second.bind("b" * 40)
            with pytest.raises(BudgetUnavailableError, match="locked"):
                await asyncio.wait_for(second.acquire(), timeout=30)
    finally:
        holder.kill()
        await holder.communicate()


async def test_a_deleted_state_directory_is_made_again_and_used_by_every_process(
    tmp_path: Path,
) -> None:
    """Somebody deletes the directory under a running limiter: its next visit uses a file at
    the path again (never the deleted one, a budget nobody else sees), and knows its state was
    lost."""
    directory = tmp_path / "state"
    limiter = HostLimiter(state_dir=directory)
    limiter.bind("a" * 40)
    try:
        (await limiter.acquire()).release()
        await limiter.flush()
        shutil.rmtree(directory)
        (await limiter.acquire()).release()
        await limiter.flush()
        [(_, text)] = states(directory)
        state = decode(text)
        assert state is not None
        assert state.recovered  # the loss was noticed: nothing granted while old slots count
    finally:
        await limiter.aclose()


async def test_the_file_is_made_and_opened_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Creating the directory, the file and its tables takes milliseconds: done in a thread,
    not in the event loop's."""
    opened_in: list[threading.Thread] = []
    open_file = SqliteStore._open

    def recorded(store: SqliteStore) -> sqlite3.Connection:
        opened_in.append(threading.current_thread())
        return open_file(store)

    monkeypatch.setattr(SqliteStore, "_open", recorded)
    async with HostLimiter(state_dir=tmp_path / "new") as limiter:
        limiter.bind("a" * 40)
        (await limiter.acquire()).release()
    assert len(opened_in) == 1
    assert opened_in[0] is not threading.main_thread()


async def test_a_long_line_of_waiting_requests_keeps_the_state_short(tmp_path: Path) -> None:
    """A thousand requests waiting in one process: the store's line holds a window's worth of
    them, so that each visit stays small, and every one is served in turn."""
    async with HostLimiter(state_dir=tmp_path, limit=30, window=0.05) as limiter:
        limiter.bind("a" * 40)
        lines: list[int] = []

        async def take() -> None:
            lease = await limiter.acquire()
            [(_, text)] = states(tmp_path)
            state = decode(text)
            assert state is not None
            lines.append(sum(run[2] for run in state.queue))
            lease.release()

        await asyncio.wait_for(asyncio.gather(*(take() for _ in range(1_000))), timeout=60)
    assert max(lines) <= 30


def test_a_password_in_a_urls_query_is_never_shown() -> None:
    """redis-py reads ``?password=``: it is redacted like ``user:password@``."""
    url = "redis://127.0.0.1:1/0?db=1&password=Secret77&ssl=0"
    assert "Secret77" not in redact_url(url)
    assert "db=1" in redact_url(url)
    limiter = RedisLimiter(url)
    assert "Secret77" not in repr(limiter)
    assert "Secret77" not in limiter._store.label
