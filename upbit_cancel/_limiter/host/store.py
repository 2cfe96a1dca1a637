"""The host's store: one SQLite file that every process of the host shares.

Each transaction is one short ``BEGIN IMMEDIATE`` … ``COMMIT`` in the calling thread, never
waiting for a lock: a file another process holds is tried again after a short sleep, so the event
loop is held only for the transaction itself, the rules included (a few hundred microseconds with
a full line of waiting requests; the benchmarks measure it). The file is made and opened in a
thread the first time. A file locked for more than a few seconds (a process stopped inside a
transaction) counts as out of reach.
The file is in WAL mode without ``fsync``: the budget needs no durability beyond the host's
uptime, and a state that does not survive a crash is a lost state, which the rules handle.

The clock is ``time.monotonic()``, the one every process of the host reads (and the event loop
too); a state written before the host last booted is ignored, since its times mean nothing now.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from ..shared.store import Change, Keep, StoreRefusedError, StoreUnavailableError, Transacted

__all__ = ["STATE_DIR_VARIABLE", "SqliteStore", "state_dir"]

R = TypeVar("R")
T = TypeVar("T")

#: The environment variable that names the directory of the host's budgets.
STATE_DIR_VARIABLE: Final = "UPBIT_CANCEL_STATE_DIR"
#: The file's name in that directory.
_FILE: Final = "budgets.sqlite3"
#: Budgets nobody touched for this long (wall clock, seconds) are deleted.
_FORGET_AFTER: Final = 86_400.0
#: How long to keep trying a file another process has locked before saying it is unavailable.
_LOCKED_FOR_AT_MOST: Final = 5.0
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS budgets (key TEXT PRIMARY KEY, state TEXT NOT NULL, "
    "boot TEXT NOT NULL, touched REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS names (name TEXT PRIMARY KEY, owner TEXT NOT NULL, "
    "expires REAL NOT NULL)",
)


def state_dir() -> Path:
    """Where the host's budgets live: ``$UPBIT_CANCEL_STATE_DIR``, else the user's cache
    directory (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
    ``%LOCALAPPDATA%`` on Windows), in ``upbit_cancel``."""
    named = os.environ.get(STATE_DIR_VARIABLE)
    if named:
        return Path(named).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "upbit_cancel"


def _boot() -> str:
    """What tells this boot of the host from the previous ones."""
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    # Elsewhere: when the monotonic clock started, to the minute (it starts at boot).
    return f"~{round((time.time() - time.monotonic()) / 60)}"


class SqliteStore:
    """Budgets in one SQLite file of the host (see the module's docstring).

    Every store of one directory in a process shares one connection, used by one thread at a
    time (a transaction never awaits), so that a process holds one file open however many keys
    and loops it serves.
    """

    __slots__ = ("_boot", "_directory", "fresh_pause", "label")

    @property
    def kind(self) -> Literal["host"]:
        return "host"

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self.label = str(directory / _FILE)
        self.fresh_pause = 0.0
        self._boot = _boot()

    def _connect(self) -> tuple[sqlite3.Connection, threading.Lock]:
        path = self._directory / _FILE
        with _connecting:
            shared = _connections.get(self._directory)
            if shared is not None and _replaced(shared[2]):
                # The file was deleted or replaced: every process must use the one at the path
                # now (the state this process knew is lost; the rules handle that).
                shared[0].close()
                os.close(shared[2])
                shared = None
            if shared is None:
                connection = self._open()
                try:
                    # The file as opened, held to tell when the path no longer names it (an
                    # inode number may come back for a new file; a link count of 0 does not).
                    held = os.open(path, os.O_RDONLY)
                except OSError as error:
                    connection.close()
                    raise self._refused(error) from None
                shared = (connection, threading.Lock(), held)
                _connections[self._directory] = shared
        return shared[0], shared[1]

    def _open(self) -> sqlite3.Connection:
        try:
            self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self._directory / _FILE, timeout=0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as error:
            raise self._refused(error) from None
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=OFF")
            for statement in _SCHEMA:
                connection.execute(statement)
        except sqlite3.OperationalError as error:
            connection.close()
            if _locked(error):
                raise _LockedError from None
            raise self._refused(error) from None
        except sqlite3.Error as error:
            connection.close()
            raise self._refused(error) from None
        return connection

    def _refused(self, error: BaseException) -> StoreRefusedError:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        return StoreRefusedError(
            f"cannot keep the host's rate-limit budget in {self._directory} ({reason}); make "
            f"that directory writable, or name another one in {STATE_DIR_VARIABLE}"
        )

    def key(self, account: str, group: str) -> str:
        return f"{account}:{group}"

    async def open(self) -> None:
        """Make and open the file now, in a thread, if this process has not yet."""
        await self._opened()

    async def transact(self, key: str, change: Change[R]) -> Transacted[R]:
        """Apply ``change`` in one ``BEGIN IMMEDIATE`` transaction, trying again while another
        process holds the file."""
        await self._opened()
        return await self._retried(self._transact, key, change)

    async def _opened(self) -> None:
        """Open the file in a thread the first time: creating it, its directory and its tables
        takes milliseconds that the event loop is not held for (each transaction then takes a
        fraction of one)."""
        if self._directory not in _connections:
            # Then the first transaction opens it: the file was locked, or no new thread may
            # start (RuntimeError: the interpreter shuts down, an exit hook cancelling orders).
            with contextlib.suppress(_LockedError, RuntimeError):
                await asyncio.to_thread(self._connect)

    async def _retried(self, call: Callable[..., T], *arguments: Any) -> T:
        """``call(*arguments)``, again after a short sleep while another process holds the
        file, for at most a few seconds (then the store is out of reach)."""
        pause = 0.0005
        started = time.monotonic()
        while True:
            try:
                return call(*arguments)
            except _LockedError:
                if time.monotonic() - started > _LOCKED_FOR_AT_MOST:
                    raise StoreUnavailableError(
                        f"{self.label} stayed locked by another process for "
                        f"{_LOCKED_FOR_AT_MOST:g} s"
                    ) from None
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.01)

    def _transact(self, key: str, change: Change[R]) -> Transacted[R]:
        connection, lock = self._connect()
        with lock:
            sent_at = time.monotonic()
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                if _locked(error):
                    raise _LockedError from None
                raise self._refused(error) from None
            try:
                row = connection.execute(
                    "SELECT state, boot FROM budgets WHERE key = ?", (key,)
                ).fetchone()
                now = time.monotonic()
                text = row[0] if row is not None and row[1] == self._boot else None
                written, result = change(text, now)
                wall = time.time()
                if written is None:
                    connection.execute("DELETE FROM budgets WHERE key = ?", (key,))
                elif written is not Keep.KEEP:
                    connection.execute(
                        "INSERT OR REPLACE INTO budgets (key, state, boot, touched) "
                        "VALUES (?, ?, ?, ?)",
                        (key, written, self._boot, wall),
                    )
                if random.random() < 0.002:
                    connection.execute(
                        "DELETE FROM budgets WHERE touched < ?", (wall - _FORGET_AFTER,)
                    )
                connection.execute("COMMIT")
            except BaseException as error:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                if isinstance(error, sqlite3.OperationalError) and _locked(error):
                    raise _LockedError from None
                if isinstance(error, sqlite3.Error):
                    raise self._refused(error) from None
                raise
        return Transacted(result, sent_at, now)

    async def claim(self, name: str, owner: str, seconds: float) -> str | None:
        """Mark ``name`` as kept under ``owner`` (wall clock expiry); the other owner if one
        holds it."""
        await self._opened()
        return await self._retried(self._claim, name, owner, seconds)

    def _claim(self, name: str, owner: str, seconds: float) -> str | None:
        connection, lock = self._connect()
        with lock:
            try:
                connection.execute("BEGIN IMMEDIATE")
                row = connection.execute(
                    "SELECT owner, expires FROM names WHERE name = ?", (name,)
                ).fetchone()
                wall = time.time()
                if row is not None and row[0] != owner and row[1] > wall:
                    connection.execute("COMMIT")
                    return str(row[0])
                connection.execute(
                    "INSERT OR REPLACE INTO names (name, owner, expires) VALUES (?, ?, ?)",
                    (name, owner, wall + seconds),
                )
                connection.execute("COMMIT")
            except sqlite3.Error as error:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                if isinstance(error, sqlite3.OperationalError) and _locked(error):
                    raise _LockedError from None
                raise self._refused(error) from None
        return None

    async def aclose(self) -> None:
        """Nothing to do: the process keeps the file open for its other budgets."""


# One connection a directory, for the whole process, and what serialises its use.
_connections: dict[Path, tuple[sqlite3.Connection, threading.Lock, int]] = {}


def _replaced(held: int) -> bool:
    """Whether the file held open as ``held`` is no longer at its path (deleted, or renamed
    over)."""
    try:
        return os.fstat(held).st_nlink == 0
    except OSError:
        return True


_connecting = threading.Lock()


@atexit.register
def _close_all() -> None:
    """At exit, close the process's connections (a connection left to the garbage collector
    is a ResourceWarning since Python 3.13); only those no thread is using now, never waiting
    (a thread still inside a transaction keeps its connection, which is then only left to the
    collector)."""
    if not _connecting.acquire(blocking=False):
        return
    try:
        for directory, (connection, lock, held) in list(_connections.items()):
            if not lock.acquire(blocking=False):
                continue
            try:
                connection.close()
                os.close(held)
                del _connections[directory]
            finally:
                lock.release()
    finally:
        _connecting.release()


def _forget_in_child() -> None:
    """In a child made by ``fork``: a lock of its own, and none of the parent's connections
    (SQLite's must not cross a fork: they are kept, unused and never closed, in case one
    holds the parent's file locks)."""
    global _connecting
    _connecting = threading.Lock()
    _inherited.extend(_connections.values())
    _connections.clear()


# The parent's connections a forked child holds without using.
_inherited: list[tuple[sqlite3.Connection, threading.Lock, int]] = []
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


class _LockedError(Exception):
    """Another process holds the file's lock right now."""


def _locked(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text
