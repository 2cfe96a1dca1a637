"""A worker process for the multi-process tests: cancel the uuids of a file within a shared budget.

``python -m tests.limiter._worker SETTINGS`` with SETTINGS a JSON object:

- ``base_url``: the fake exchange; ``uuids_file``: one uuid per line;
- ``limiter``: ``"default"`` (the session's own, the host's budget), ``"host"`` (a HostLimiter)
  or ``"redis"`` (a RedisLimiter of ``redis_url``); ``account`` and ``fallback_limit`` go to it;
- ``wait``: whether to wait for a line on standard input before starting, so that several
  workers start together.

The key pair comes from ``UPBIT_ACCESS_KEY`` and ``UPBIT_SECRET_KEY``. Prints "ready" once its
limiter is set up, then one JSON line with what its batch reported. The library's warnings go
to standard error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from upbit_cancel import BatchCanceller, HostLimiter, Limiter, RedisLimiter, UpbitSession


def _limiter(settings: dict[str, Any]) -> Limiter | None:
    kind = settings["limiter"]
    if kind == "default":
        return None
    if kind == "host":
        return HostLimiter(account=settings.get("account"))
    return RedisLimiter(
        settings["redis_url"],
        account=settings.get("account"),
        fallback_limit=settings.get("fallback_limit"),
        timeout=0.2,
    )


async def main(settings: dict[str, Any], uuids: list[str]) -> None:
    access_key, secret_key = os.environ["UPBIT_ACCESS_KEY"], os.environ["UPBIT_SECRET_KEY"]
    limiter = _limiter(settings)
    async with contextlib.AsyncExitStack() as stack:
        if isinstance(limiter, HostLimiter | RedisLimiter):
            await stack.enter_async_context(limiter)
        session = await stack.enter_async_context(
            UpbitSession(access_key, secret_key, base_url=settings["base_url"], limiter=limiter)
        )
        print("ready", flush=True)
        if settings.get("wait"):
            await asyncio.to_thread(sys.stdin.readline)
        result = await BatchCanceller(session).cancel(uuids=uuids)
    placed = [order.uuid for order in (*result.success.orders, *result.failed.orders)]
    placed += [entry.id for entry in result.unresolved]
    errors = collections.Counter(type(entry.error).__name__ for entry in result.unresolved)
    print(
        json.dumps(
            {
                "success": result.success.count,
                "unresolved": len(result.unresolved),
                "errors": dict(errors),
                "messages": sorted({str(entry.error) for entry in result.unresolved})[:3],
                # Every id settled exactly once: listed once, and nothing else listed.
                "placed": sorted(placed) == sorted(set(uuids)),
                "rate_limited": result.rate_limited,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    given = json.loads(sys.argv[1])
    asyncio.run(main(given, Path(given["uuids_file"]).read_text(encoding="utf-8").split()))
