"""Cancel the orders listed in a file: ``python quickstart.py ids.txt``.

The key comes from UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY; UPBIT_BASE_URL, if set, points the
session somewhere other than the Singapore API (at a fake exchange, say).
"""

import asyncio
import os
import sys
from pathlib import Path

from upbit_cancel import BatchCanceller, UpbitSession


async def main(order_ids: list[str]) -> None:
    access_key, secret_key = os.environ["UPBIT_ACCESS_KEY"], os.environ["UPBIT_SECRET_KEY"]
    base_url = os.environ.get("UPBIT_BASE_URL")  # None: the region's API
    async with UpbitSession(access_key, secret_key, region="sg", base_url=base_url) as session:
        result = await BatchCanceller(session).cancel(uuids=order_ids)
    print(f"{result.success.count} canceled, {result.failed.count} refused by the exchange")
    for entry in result.unresolved:  # each with the reason its fate is unknown
        print(f"unresolved {entry.id}: {entry.error or 'not mentioned by the exchange'}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]).read_text().split()))
