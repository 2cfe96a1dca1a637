"""RedisLimiter: one budget for every process and host of an account, kept in Redis."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from ..._check import seconds, whole_number
from ..._redact import redact_url
from ..core import HoldRule, Settings
from ..shared.limiter import SharedLimiter, account_hash
from .store import RedisStore

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["RedisLimiter"]

_SCHEMES = ("redis://", "rediss://", "unix://")


def _redis_module() -> Any:
    try:
        import redis.asyncio
    except ImportError:
        raise ImportError(
            "RedisLimiter needs redis-py: install the 'redis' extra, "
            "such as pip install -e '.[redis]' from a clone of upbit_cancel"
        ) from None
    return redis


class RedisLimiter(SharedLimiter):
    """One budget for every process and host of an account, kept in Redis: at most ``limit``
    requests reach the exchange in any window, whatever process sends them, through every fault
    of Redis (see :doc:`the protocol </shared-budget>`).

    Example::

        async with (
            RedisLimiter("redis://127.0.0.1:6379/0") as limiter,
            UpbitSession(access_key, secret_key, region="sg", limiter=limiter) as session,
        ):
            await BatchCanceller(session).cancel(uuids=ids)

    The budget is keyed by the account: by default a hash of the access key of the first session
    that uses the limiter. Processes that use different API keys of one account share a budget
    only when given the same ``account=`` name; one key under two names (another ``account=``
    or ``prefix=``) is refused before anything is sent. Holds follow the rule of
    :class:`SlidingWindowLimiter`; a process subtracts its own path's floor from its own holds
    only. Close it (``async with``, or :meth:`aclose`): it keeps its membership alive meanwhile.

    While Redis is out of reach, the process sends on its own *fallback share*
    (``fallback_limit`` requests per window, given when it joins, never more in total than
    ``limit``), once the others can no longer count on its slots, for as long as they keep it
    reserved (about 26 s); a process without a share waits for Redis, and its requests are
    refused (:class:`BudgetUnavailableError`, not sent) after 5 s.

    Args:
        redis: A ``redis://`` (or ``rediss://``, ``unix://``) URL, or a
            ``redis.asyncio.Redis`` or ``RedisCluster`` client (the caller closes it).
        account: A name for the account's budget, shared by every process that gives it.
        limit, window, margin, max_transit, hold: As for :class:`SlidingWindowLimiter`.
        prefix: The first part of every key.
        timeout: Seconds a Redis call may take before Redis counts as out of reach.
        fallback_limit: Requests per window this process asks for as its fallback share
            (default: a sixth of ``limit``, 5 of 30).
    """

    __slots__ = ()

    def __init__(
        self,
        redis: str | redis.asyncio.Redis | redis.asyncio.RedisCluster,
        *,
        account: str | None = None,
        limit: int = 30,
        window: float = 1.0,
        margin: float = 0.01,
        max_transit: float = 2.0,
        hold: HoldRule = "arrival",
        prefix: str = "upbit_cancel",
        timeout: float = 0.5,
        fallback_limit: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        module = _redis_module()
        timeout = seconds("timeout", timeout)
        if isinstance(redis, str):
            scheme, separator, rest = redis.partition("://")
            url = f"{scheme.lower()}{separator}{rest}"
            if not separator or not url.startswith(_SCHEMES):
                raise ValueError(
                    "redis must be a redis://, rediss:// or unix:// URL, or a "
                    "redis.asyncio.Redis client"
                )
            client = module.asyncio.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            label, owns = redact_url(url), True
        elif isinstance(redis, module.asyncio.Redis | module.asyncio.RedisCluster):
            client, label, owns = redis, _describe(redis), False
        else:
            raise TypeError(
                "redis must be a redis:// URL or a redis.asyncio.Redis or RedisCluster client, "
                f"not {type(redis).__name__}"
            )
        if account is not None and (not isinstance(account, str) or not account):
            raise TypeError("account must be a non-empty string naming the account's budget")
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise ValueError("prefix must be a non-empty string without braces")
        settings = Settings.checked(
            limit, window, margin=margin, max_transit=max_transit, hold=hold
        )
        if fallback_limit is None:
            fallback_limit = max(1, settings.limit // 6)
        fallback_limit = whole_number(
            "fallback_limit", fallback_limit, least=0, most=settings.limit
        )
        store = RedisStore(client, label=label, prefix=prefix, timeout=timeout, owns_client=owns)
        super().__init__(
            store,
            account=None if account is None else account_hash(account),
            settings=settings,
            fallback_limit=fallback_limit,
            heartbeat=True,
            rng=rng,
        )


def _describe(client: Any) -> str:
    """Where a client given by the caller connects, for messages (never its password)."""
    try:
        kwargs = client.connection_pool.connection_kwargs
        host, port, db = kwargs.get("host"), kwargs.get("port"), kwargs.get("db", 0)
        if host is not None:
            return f"redis://{host}:{port}/{db}"
        path = kwargs.get("path")
        if path is not None:
            return f"unix://{path}"
    except AttributeError:
        pass
    return f"the {type(client).__name__} given"
