"""Redis as a store of shared budgets: one key a budget, read and written by two tiny scripts.

``read`` returns the server's clock and the key's text in one round trip; ``write`` replaces the
text only if it is still the version that was read (compare-and-set), so the rules run in Python
(``shared.rules``) and the scripts decide nothing. One key a budget means a budget is lost whole
or not at all (an eviction, ``FLUSHDB``, a restart without persistence) and never half, and that
it lives on one slot of a Redis Cluster. The clock is the server's (``TIME``): hosts' clocks
differ, so only durations cross the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, TypeVar

from ..._log import budget_log as _log
from ..shared.store import Change, Keep, StoreRefusedError, StoreUnavailableError, Transacted

__all__ = ["RedisStore"]

R = TypeVar("R")

#: The server's clock and the key's text.
_READ: Final = """
local t = redis.call('TIME')
return {t[1], t[2], redis.call('GET', KEYS[1])}
"""
#: Write ARGV[2] (delete if empty) with a lifetime of ARGV[3] seconds if the key's version is
#: still ARGV[1] ('' for no key); 1 if written.
_WRITE: Final = """
local current = redis.call('GET', KEYS[1])
local version = ''
if current then version = string.match(current, '^([^|]*)|') or '' end
if version ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
end
return 1
"""
#: Hold KEYS[1] for ARGV[1] for ARGV[2] seconds unless another holds it; the other, or ''.
_CLAIM: Final = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return ''
"""
#: A budget nobody wrote for this long is deleted by Redis, in seconds.
_LIFETIME: Final = 86_400


class RedisStore:
    """Budgets in one Redis (or Redis Cluster), reached through ``client``."""

    __slots__ = (
        "_checked_policy",
        "_claim",
        "_client",
        "_owns_client",
        "_prefix",
        "_read",
        "_refusals",
        "_timeout",
        "_unavailable",
        "_write",
        "fresh_pause",
        "label",
    )

    @property
    def kind(self) -> Literal["redis"]:
        return "redis"

    def __init__(
        self, client: Any, *, label: str, prefix: str, timeout: float, owns_client: bool
    ) -> None:
        import redis.exceptions as errors

        self._client = client
        self._prefix = prefix
        self._owns_client = owns_client
        self._timeout = timeout
        self.label = label
        # A budget Redis holds none of may have been lost a moment ago by a restart: processes
        # that knew it come back within their retry period; give them time to say so.
        self.fresh_pause = 1.0
        self._read = client.register_script(_READ)
        self._write = client.register_script(_WRITE)
        self._claim = client.register_script(_CLAIM)
        self._checked_policy = False
        # Errors that trying again will not mend: the URL's credentials, a missing permission.
        self._refusals: tuple[type[BaseException], ...] = tuple(
            error
            for error in (
                errors.AuthenticationError,
                getattr(errors, "AuthenticationWrongNumberOfArgsError", None),
                getattr(errors, "NoPermissionError", None),
                getattr(errors, "AuthorizationError", None),
            )
            if isinstance(error, type)
        )
        self._unavailable: tuple[type[BaseException], ...] = (
            errors.RedisError,
            OSError,
            TimeoutError,
        )

    def key(self, account: str, group: str) -> str:
        """``{prefix}:{<account>}:<group>``: the braces put every key of an account on one slot
        of a Redis Cluster."""
        return f"{self._prefix}:{{{account}}}:{group}"

    async def open(self) -> None:
        """A connection of the client's pool opened, the eviction policy checked, and the
        scripts Redis does not know loaded into it (a restart forgets them): the first
        transaction then runs them at once, rather than being told they are unknown and
        loading them first."""
        if not self._checked_policy:
            await self._check_policy()
        scripts = (self._read, self._write, self._claim)
        known = await self._guarded(
            functools.partial(self._client.script_exists, *(script.sha for script in scripts))
        )
        if not isinstance(known, list) or len(known) != len(scripts):
            known = [False] * len(scripts)
        for script, loaded in zip(scripts, known, strict=True):
            if not loaded:
                await self._guarded(functools.partial(self._client.script_load, script.script))

    async def transact(self, key: str, change: Change[R]) -> Transacted[R]:
        """Read, apply ``change``, write if nobody wrote in between; again if somebody did."""
        loop = asyncio.get_running_loop()
        if not self._checked_policy:
            await self._check_policy()
        while True:
            sent_at = loop.time()
            seconds, micros, value = await self._call(self._read, [key], [])
            read_at = loop.time()
            now = int(seconds) + int(micros) / 1_000_000
            version, text = "", None
            if value is not None:
                stored = value.decode() if isinstance(value, bytes) else str(value)
                version, _, text = stored.partition("|")
            written, result = change(text, now)
            if written is Keep.KEEP:
                return Transacted(result, sent_at, read_at)
            replacement = "" if written is None else f"{uuid.uuid4().hex[:12]}|{written}"
            try:
                written_now = await self._call(
                    self._write, [key], [version, replacement, _LIFETIME]
                )
            except StoreUnavailableError as error:
                error.read_at = read_at  # it may have been written all the same
                raise
            if written_now:
                return Transacted(result, sent_at, read_at)

    async def claim(self, name: str, owner: str, seconds: float) -> str | None:
        """The claim lives under ``upbit_cancel:key:{<name>}`` whatever the prefix: two
        prefixes for one key are what it catches."""
        key = f"upbit_cancel:key:{{{name}}}"
        other = await self._call(self._claim, [key], [owner, max(1, round(seconds))])
        text = other.decode() if isinstance(other, bytes) else str(other)
        return text or None

    async def _call(self, script: Any, keys: list[str], args: list[object]) -> Any:
        return await self._guarded(lambda: script(keys=keys, args=args))

    async def _guarded(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """``call()`` within the timeout, its failures told as the store's."""
        try:
            async with asyncio.timeout(self._timeout):
                return await call()
        except self._refusals as error:
            raise StoreRefusedError(
                f"Redis at {self.label} refused this process ({type(error).__name__}: "
                f"{_first_line(error)}); check the user, password and permissions in its URL"
            ) from None
        except self._unavailable as error:
            raise StoreUnavailableError(
                f"Redis at {self.label} did not answer ({type(error).__name__})"
            ) from None

    async def _check_policy(self) -> None:
        """Warn, once, if Redis may evict the budgets' keys under memory pressure."""
        self._checked_policy = True
        try:
            async with asyncio.timeout(self._timeout):
                answer = await self._client.config_get("maxmemory-policy")
        except asyncio.CancelledError:
            self._checked_policy = False  # not checked: the next transaction does
            raise
        except Exception:  # a managed Redis may not allow CONFIG: nothing to tell then
            return
        if isinstance(answer, dict):
            policy = answer.get("maxmemory-policy") or answer.get(b"maxmemory-policy")
            if isinstance(policy, bytes):
                policy = policy.decode()
            if policy and policy != "noeviction":
                _log.warning(
                    "Redis at %s evicts keys under memory pressure (maxmemory-policy %s): a "
                    "budget it evicts is noticed and costs a pause of several seconds; "
                    "set maxmemory-policy noeviction to keep it",
                    self.label,
                    policy,
                )

    async def aclose(self) -> None:
        """Close the client this store made; a Redis that does not answer (stopped, its
        connections stuck) is given ``timeout`` and then left behind."""
        if self._owns_client:
            with contextlib.suppress(TimeoutError, *self._unavailable):
                async with asyncio.timeout(self._timeout):
                    await self._client.aclose()


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [""])[0][:120]
