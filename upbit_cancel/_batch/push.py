"""Confirmation by push: final states the order stream delivered, learned without a query.

An operation that confirms opens the account's order stream (``_http.stream``) before its first
cancel leaves, when it can within :data:`STREAM_WAIT`. Each ``myOrder`` event that carries a
final state (``cancel``, ``done``, ``prevented``) is kept here, by uuid and by identifier; the
confirmation learns those into the ledger as a query's answer would be learned, and asks by REST
only about the ids still silent. The push is a fast path, never the last word: an id is only
placed by a state the exchange sent, and every id the stream cannot vouch for is asked about.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Final

from .._http.session import UpbitSession
from .._http.stream import OrderEvent, OrderStream
from .._models import Order
from .ledger import Ledger

__all__ = ["STREAM_WAIT", "Push", "open_push"]

#: Seconds an operation waits for the stream's subscription before its first cancel; past
#: them, or once the first connection failed, it goes on, and confirms by query.
STREAM_WAIT: Final = 2.0
#: Seconds without a new final state after which the ids still silent are asked about.
QUIET: Final = 1.0
#: The states after which an order never changes.
_FINAL: Final = frozenset({"cancel", "done", "prevented"})


class Push:
    """The final states one operation's stream delivered, and whether it can vouch for them."""

    __slots__ = ("_changed", "_final", "mark", "stream")

    def __init__(self, stream: OrderStream) -> None:
        #: The stream, and its subscription when the operation's first cancel left (``None``:
        #: it was not up; then nothing is waited for).
        self.stream = stream
        self.mark: int | None = None
        self._final: dict[str, Order] = {}
        self._changed = asyncio.Event()

    def on_event(self, event: OrderEvent) -> None:
        """An event of the stream: kept if its state is final."""
        if event.state not in _FINAL:
            return
        order = event.as_order()
        self._final[event.uuid] = order
        if event.identifier:
            self._final.setdefault(f"identifier:{event.identifier}", order)
        self._changed.set()

    @property
    def vouches(self) -> bool:
        """Whether every event since the first cancel left was delivered."""
        return self.stream.unbroken_since(self.mark)

    def learn(self, ledger: Ledger, values: Iterable[str]) -> set[str]:
        """Learn into ``ledger`` the pushed final state of each of ``values``; those learned."""
        learned: set[str] = set()
        by_identifier = ledger.kind == "identifiers"
        for value in values:
            if by_identifier:
                order = self._final.get(f"identifier:{value}")
                if order is None:
                    order = self._final.get(ledger.uuid_of(value) or "")
            else:
                order = self._final.get(value)
            if order is not None:
                ledger.learn(value, order)
                learned.add(value)
        return learned

    async def wait(self, ledger: Ledger, awaited: list[str], deadline: float) -> None:
        """Learn pushed final states of ``awaited`` as they come, until every one is known, the
        stream cannot vouch for what it delivered, :data:`QUIET` seconds pass without a new
        one, or ``deadline`` (loop time)."""
        loop = asyncio.get_running_loop()
        silent = set(awaited) - self.learn(ledger, awaited)
        while silent and self.vouches:
            left = deadline - loop.time()
            if left <= 0:
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(QUIET, left)):
                    await self._changed.wait()
            if not self._changed.is_set():
                return  # quiet: what is still silent is asked about
            silent -= self.learn(ledger, silent)


async def open_push(session: UpbitSession) -> Push:
    """The operation's stream, started; its mark once subscribed within :data:`STREAM_WAIT`."""
    holder: list[Push] = []
    stream = OrderStream(session, on_event=lambda event: holder[0].on_event(event))
    push = Push(stream)
    holder.append(push)
    stream.start()
    if await stream.ready(within=STREAM_WAIT, first_try=True):
        push.mark = stream.mark()
    return push
