"""Confirmation by push: final states the order stream delivered, learned without a query.

An operation that confirms opens the account's order stream (``_http.stream``) as it starts,
and waits :data:`STREAM_WAIT` at most for the subscription before its first cancel leaves: an
emergency's cancels are never held up longer. Each ``myOrder`` event that carries a
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

__all__ = ["STREAM_WAIT", "Push", "start_push"]

#: Seconds an operation waits for the stream's subscription before its first cancel (less once
#: the first connection failed); past them the cancels go, and the stream keeps connecting.
STREAM_WAIT: Final = 0.25
#: Seconds without a new final state of an awaited order after which the ids still silent are
#: asked about.
QUIET: Final = 1.0
#: How often a wait looks whether the stream still vouches for what it delivered.
_LOOK: Final = 0.1
#: Seconds between two keep-alive PINGs of an operation's stream: a connection silent for
#: twice as long is taken for dead.
KEEPALIVE: Final = 1.0
#: The states after which an order never changes.
_FINAL: Final = frozenset({"cancel", "done", "prevented"})
#: The number of a stream's first subscription (see OrderStream.mark).
_FIRST: Final = 1


class Push:
    """The final states one operation's stream delivered, and whether it can vouch for them.

    The stream vouches while its first subscription is still in force: every event since then
    was delivered. Orders closed before that subscription (a cancel that took effect before
    it) send nothing; they are asked about once the stream has been quiet for a while.
    """

    __slots__ = ("_awaited", "_changed", "_final", "stream")

    def __init__(self, session: UpbitSession) -> None:
        self.stream = OrderStream(session, on_event=self.on_event, keepalive=KEEPALIVE)
        self._final: dict[str, Order] = {}
        self._changed = asyncio.Event()
        # The ids a wait waits for (uuids, or identifiers): only their events count as news.
        self._awaited: frozenset[str] = frozenset()

    def on_event(self, event: OrderEvent) -> None:
        """An event of the stream: kept if its state is final."""
        if event.state not in _FINAL:
            return
        order = event.as_order()
        self._final[event.uuid] = order
        if event.identifier:
            self._final.setdefault(f"identifier:{event.identifier}", order)
        if event.uuid in self._awaited or (event.identifier or "") in self._awaited:
            self._changed.set()

    @property
    def vouches(self) -> bool:
        """Whether every event since the stream's first subscription was delivered."""
        return self.stream.unbroken_since(_FIRST)

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
        one of them, or ``deadline`` (loop time)."""
        loop = asyncio.get_running_loop()
        silent = set(awaited) - self.learn(ledger, awaited)
        self._awaited = frozenset(silent)
        quiet_from = loop.time()
        try:
            while silent and self.vouches:
                now = loop.time()
                left = min(deadline - now, quiet_from + QUIET - now)
                if left <= 0:
                    return  # quiet, or out of time: what is still silent is asked about
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(_LOOK, left)):
                        await self._changed.wait()
                if self._changed.is_set():
                    quiet_from = loop.time()
                    silent -= self.learn(ledger, silent)
        finally:
            self._awaited = frozenset()


def start_push(session: UpbitSession) -> Push:
    """An operation's stream, connecting in the background."""
    push = Push(session)
    push.stream.start()
    return push
