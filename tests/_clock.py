"""A virtual clock for event loops: time jumps instead of passing, so tests never really sleep."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class VirtualClock:
    """Drives an event loop's ``time()``: whenever the loop would wait, time jumps ahead instead."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        selector: selectors.BaseSelector = getattr(loop, "_selector")  # noqa: B009
        real_select = selector.select

        def select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            if timeout is None:
                raise RuntimeError("deadlock: the loop would wait forever with nothing scheduled")
            if timeout > 0:
                self.now += timeout
            elif not getattr(loop, "_ready"):  # noqa: B009
                # A timer due now and nothing else to run: a callback that keeps rescheduling
                # itself for "now" (float rounding) would spin forever; real time would move on.
                self.now += 1e-12
            return real_select(0)

        setattr(selector, "select", select)  # noqa: B010
        setattr(loop, "time", self.time)  # noqa: B010


def run_virtual(main: Callable[[VirtualClock], Coroutine[Any, Any, T]]) -> T:
    """Run ``main(clock)`` to completion on a fresh loop whose time is ``clock``."""
    clock = VirtualClock()
    loop = asyncio.SelectorEventLoop()
    clock.install(loop)
    try:
        return loop.run_until_complete(main(clock))
    finally:
        loop.close()
