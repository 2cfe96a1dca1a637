"""Where a heartbeat lives: a file of the host, or a key of a Redis shared by several hosts.

Both keep the same contract, :class:`Place`: write the heartbeat's bytes whole, read them whole
(``None`` when there are none). A file is replaced in one step (a temporary file renamed over
it), so a reader sees the old beat or the new one, never half of one. A Redis key is written
with an expiry, so that a writer gone for good leaves nothing behind for long.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any, Final, Protocol

from .._errors import HeartbeatError
from .._redact import redact_url

__all__ = ["FilePlace", "Place", "RedisPlace", "place_of"]

_REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://")
#: The name after ``#`` in a Redis target: which heartbeat of that Redis this is.
_NAME: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
#: The most of a heartbeat file read: a beat is about 150 bytes.
_MOST_BYTES: Final = 4096
#: Seconds a Redis call may take before the heartbeat counts as out of reach.
_REDIS_TIMEOUT: Final = 0.5


class Place(Protocol):
    """Where one heartbeat is kept."""

    #: Where it is, fit to show (a path, or a URL with any password redacted).
    label: str

    async def write(self, raw: bytes, *, keep: float) -> None:
        """Replace the heartbeat with ``raw``, kept for at least ``keep`` seconds. Raises
        :class:`HeartbeatError`."""

    async def read(self) -> bytes | None:
        """The heartbeat's bytes, or ``None`` if there is none. Raises :class:`HeartbeatError`."""

    async def aclose(self) -> None:
        """Release what the place holds (a connection)."""

    @property
    def directory_missing(self) -> bool:
        """Whether the place cannot be written yet for want of a directory."""


def place_of(target: str | os.PathLike[str]) -> Place:
    """The place a heartbeat target names: ``redis://host:port/db#name`` (or ``rediss://``,
    ``unix://``; ``name`` defaults to ``default``) or a file's path. Raises ``ValueError`` or
    ``TypeError`` for a target that is neither, ``ImportError`` for a Redis target without
    redis-py."""
    if isinstance(target, str) and target.lower().startswith(_REDIS_SCHEMES):
        return RedisPlace(target)
    if isinstance(target, str | os.PathLike):
        text = os.fspath(target)
        if not isinstance(text, str) or not text.strip() or "\0" in text:
            raise ValueError("the heartbeat needs a file's path or a redis:// URL")
        path = Path(text).expanduser()
        if path.name in ("", ".", ".."):
            raise ValueError(f"the heartbeat needs a file's path, not the directory {text!r}")
        return FilePlace(path)
    raise TypeError(
        f"the heartbeat must be a file's path or a redis:// URL, not {type(target).__name__}"
    )


class FilePlace:
    """A heartbeat in a file of this host (its directory must exist)."""

    __slots__ = ("_path", "label")

    def __init__(self, path: Path) -> None:
        self._path = path
        self.label = str(path)

    async def write(self, raw: bytes, *, keep: float) -> None:
        # Written and renamed in the caller's thread: a few microseconds on a local disk, and a
        # heartbeat must stop when its writer's event loop stops, which a thread would hide.
        temporary = self._path.with_name(f".{self._path.name}.{secrets.token_hex(6)}.tmp")
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(descriptor, raw)
            finally:
                os.close(descriptor)
            os.replace(temporary, self._path)
        except OSError as error:
            with contextlib.suppress(Exception):
                temporary.unlink(missing_ok=True)
            raise HeartbeatError(
                f"cannot write the heartbeat {self.label}: {error.strerror or error}; check "
                "that its directory exists and is writable"
            ) from None

    async def read(self) -> bytes | None:
        # Opened without blocking and read only if it is a regular file: a FIFO or a device at
        # the path must not hang the watchdog, nor a huge file be read twenty times a second.
        try:
            descriptor = os.open(self._path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise HeartbeatError(
                f"cannot read the heartbeat {self.label}: {error.strerror or error}"
            ) from None
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise HeartbeatError(
                    f"the heartbeat {self.label} is not a regular file; give the path of the "
                    "file the bot's Heartbeat writes"
                )
            return os.read(descriptor, _MOST_BYTES)
        except OSError as error:
            raise HeartbeatError(
                f"cannot read the heartbeat {self.label}: {error.strerror or error}"
            ) from None
        finally:
            os.close(descriptor)

    @property
    def directory_missing(self) -> bool:
        """Whether the heartbeat's directory does not exist (yet)."""
        return not self._path.parent.is_dir()

    async def aclose(self) -> None:
        return None


class RedisPlace:
    """A heartbeat in a Redis key, ``upbit_cancel:heartbeat:<name>``."""

    __slots__ = ("_client", "_errors", "_key", "label")

    def __init__(self, url: str) -> None:
        try:
            import redis.asyncio
            import redis.exceptions
        except ImportError:
            raise ImportError(
                "a heartbeat in Redis needs redis-py: install the 'redis' extra, "
                "such as pip install 'upbit_cancel[redis]'"
            ) from None
        scheme, _, rest = url.partition("://")
        address, _, name = f"{scheme.lower()}://{rest}".partition("#")
        name = name or "default"
        if not _NAME.fullmatch(name):
            raise ValueError(
                "the heartbeat's name (after '#' in the redis:// URL) must be 1 to 64 letters, "
                "digits or '_.:-'"
            )
        self._client: Any = redis.asyncio.Redis.from_url(
            address, socket_timeout=_REDIS_TIMEOUT, socket_connect_timeout=_REDIS_TIMEOUT
        )
        self._errors = (redis.exceptions.RedisError, OSError, TimeoutError)
        self._key = f"upbit_cancel:heartbeat:{name}"
        self.label = f"{redact_url(address)}#{name}"

    async def write(self, raw: bytes, *, keep: float) -> None:
        try:
            await self._client.set(self._key, raw, px=max(1, round(keep * 1000)))
        except self._errors as error:
            raise self._failure("write", error) from None

    async def read(self) -> bytes | None:
        try:
            value = await self._client.get(self._key)
        except self._errors as error:
            raise self._failure("read", error) from None
        return None if value is None else bytes(value)

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.aclose()

    @property
    def directory_missing(self) -> bool:
        return False

    def _failure(self, what: str, error: BaseException) -> HeartbeatError:
        # redis-py's messages may quote the URL; the type's name says enough.
        return HeartbeatError(
            f"cannot {what} the heartbeat {self.label}: {type(error).__name__}; check that "
            "Redis is up and the URL's credentials"
        )
