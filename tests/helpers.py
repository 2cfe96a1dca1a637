"""What many tests need: reading where a result placed each id, and waiting for a condition."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from upbit_cancel import BatchResult


def placed(result: BatchResult) -> list[str]:
    """Every id the result lists, once per listing (so a twice-listed id shows twice)."""
    ids = [
        (order.uuid if result.kind == "uuids" else order.identifier) or ""
        for order in (*result.success.orders, *result.failed.orders)
    ]
    return ids + [entry.id for entry in result.unresolved]


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds, looking every 10 ms; fail after 20 s.

    For state that changes in another task or process, which offers nothing to wait on.
    """
    async with asyncio.timeout(20):
        while not condition():  # noqa: ASYNC110 - the state changes in another task
            await asyncio.sleep(0.01)
