"""One of several processes cancelling orders of one account within one shared budget.

``python several_processes.py ids.txt``, with REDIS_URL (every process the same), the key in
UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY and, optionally, UPBIT_BASE_URL.
"""

import asyncio
import logging
import os
import sys
from pathlib import Path

from upbit_cancel import BatchCanceller, RedisLimiter, UpbitSession


async def main(order_ids: list[str]) -> None:
    access_key, secret_key = os.environ["UPBIT_ACCESS_KEY"], os.environ["UPBIT_SECRET_KEY"]
    base_url = os.environ.get("UPBIT_BASE_URL")
    # Every process of the account: the same Redis, the same account name.
    async with (
        RedisLimiter(os.environ["REDIS_URL"], account="main") as limiter,
        UpbitSession(access_key, secret_key, base_url=base_url, limiter=limiter) as session,
    ):
        result = await BatchCanceller(session).cancel(uuids=order_ids)
    print(f"{result.success.count} canceled, {len(result.unresolved)} unresolved")


if __name__ == "__main__":
    # The library's warnings (a 429 incident, Redis unreachable) on standard error.
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    asyncio.run(main(Path(sys.argv[1]).read_text().split()))
