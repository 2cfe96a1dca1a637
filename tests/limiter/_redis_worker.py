"""A worker process for the multi-process tests: cancel the uuids of a file through RedisLimiter.

``python -m tests.limiter._redis_worker BASE_URL REDIS_URL ACCOUNT UUIDS_FILE`` with the key pair in
``UPBIT_ACCESS_KEY`` and ``UPBIT_SECRET_KEY``. Prints "ready" once its limiter is set up, then
one JSON line with what its batch reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from upbit_cancel import BatchCanceller, RedisLimiter, UpbitSession


async def main(base_url: str, redis_url: str, account: str, uuids: list[str]) -> None:
    access_key, secret_key = os.environ["UPBIT_ACCESS_KEY"], os.environ["UPBIT_SECRET_KEY"]
    async with (
        RedisLimiter(redis_url, account=account) as limiter,
        UpbitSession(access_key, secret_key, base_url=base_url, limiter=limiter) as session,
    ):
        print("ready", flush=True)
        result = await BatchCanceller(session).cancel(uuids=uuids)
    placed = [order.uuid for order in (*result.success.orders, *result.failed.orders)]
    placed += [entry.id for entry in result.unresolved]
    print(
        json.dumps(
            {
                "success": result.success.count,
                "placed": sorted(placed) == sorted(set(uuids)),
                "rate_limited": result.rate_limited,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    base_url, redis_url, account, uuids_file = sys.argv[1:5]
    uuids = Path(uuids_file).read_text(encoding="utf-8").split()
    asyncio.run(main(base_url, redis_url, account, uuids))
