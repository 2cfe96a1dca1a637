"""The fake exchange's private WebSocket stream (``/websocket/v1/private``), ``myOrder`` only.

As Upbit documents it: the REST JWT (``access_key``, ``nonce``, no query hash) in the
``Authorization`` header at connect; a bad token, or a key without the "order query"
permission, gets ``{"error": {"name": "INVALID_AUTH", …}}`` as a text frame, then the
connection is closed. A subscription is one JSON array of a
``ticket``, a ``myOrder`` type with optional ``codes`` and an optional ``format``
(``DEFAULT`` or ``SIMPLE``); a new one replaces the previous. Events are binary frames of UTF-8
JSON, sent for each change after the subscription (no snapshot): an order created, canceled,
filled. The text ``PING`` is answered ``{"status":"UP"}``. At most 5 connects a second per
pocket (the 6th is answered 429 at the handshake). A connection belongs to the pocket of the key
it is signed with and is told only of that pocket's orders.

It can break on demand (:class:`StreamFaults`): drop a share of the events, close each
connection after so many events, refuse the endpoint, close idle connections sooner, go
silent.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import attrs
from aiohttp import WSCloseCode, WSMsgType, web

from ._auth import MAIN, Keys
from ._records import FakeOrder
from ._wire import Call, Refused, dumps, error_body, read_token

__all__ = ["PrivateStream", "StreamFaults", "order_event"]

#: Connects a second per pocket.
CONNECTS_PER_SECOND: Final = 5
#: The abbreviations of the ``SIMPLE`` format.
_SIMPLE: Final = {
    "type": "ty",
    "code": "cd",
    "uuid": "uid",
    "identifier": "id",
    "ask_bid": "ab",
    "order_type": "ot",
    "state": "s",
    "volume": "v",
    "remaining_volume": "rv",
    "executed_volume": "ev",
    "trades_count": "tc",
    "order_timestamp": "otms",
    "timestamp": "tms",
    "stream_type": "st",
}


def _fraction(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, int | float) and 0 <= value <= 1):
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


def _count_or_none(
    _instance: object, attribute: attrs.Attribute[int | None], value: object
) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{attribute.name} must be a whole number >= 0 or None, got {value!r}")


@attrs.frozen
class StreamFaults:
    """Ways the private stream breaks, from the next event (or connect) on.

    - ``drop_rate``: the share of events never sent (each drawn from the fake's generator).
    - ``close_after``: each connection is closed (code 1011) after it was sent so many events.
    - ``refuse``: connects are refused (HTTP 503 at the handshake).
    - ``idle_timeout``: seconds after which a connection that sent nothing is closed (Upbit:
      about 120).
    - ``silent``: events and answers stop, the connection stays open (a path that died).
    """

    drop_rate: float = attrs.field(default=0.0, validator=_fraction)
    close_after: int | None = attrs.field(default=None, validator=_count_or_none)
    refuse: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    idle_timeout: float = attrs.field(default=120.0)
    silent: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))

    @idle_timeout.validator
    def _positive(self, attribute: attrs.Attribute[float], value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(f"idle_timeout must be a positive number of seconds, got {value!r}")


def order_event(order: FakeOrder, *, simple: bool, now_ms: int) -> bytes:
    """A ``myOrder`` event of ``order`` as it stands, in the ``DEFAULT`` or ``SIMPLE`` format."""
    executed = "1" if order.state == "done" else "0"
    event: dict[str, Any] = {
        "type": "myOrder",
        "code": order.market,
        "uuid": order.uuid,
        "identifier": order.identifier,
        "ask_bid": order.side.upper(),
        "order_type": "limit",
        "state": order.state,
        "price": 1000.0,
        "avg_price": 1000.0 if order.state == "done" else 0.0,
        "volume": 1.0,
        "remaining_volume": 0.0 if order.state in ("done", "cancel", "prevented") else 1.0,
        "executed_volume": float(executed),
        "trades_count": int(executed),
        "order_timestamp": now_ms,
        "timestamp": now_ms,
        "stream_type": "REALTIME",
    }
    if simple:
        event = {_SIMPLE[name]: value for name, value in event.items() if name in _SIMPLE}
    return dumps(event)


class _Subscriber:
    __slots__ = ("codes", "pocket", "sent", "simple", "socket", "subscribed")

    def __init__(self, socket: web.WebSocketResponse, pocket: str) -> None:
        self.socket = socket
        self.pocket = pocket
        self.subscribed = False
        self.codes: frozenset[str] | None = None
        self.simple = False
        self.sent = 0


class PrivateStream:
    """Every connection to the private stream, and the events sent to them."""

    __slots__ = (
        "_clock",
        "_connects",
        "_keys",
        "_notify",
        "_rng",
        "_subscribers",
        "_tasks",
        "events_sent",
        "faults",
    )

    def __init__(
        self,
        keys: Keys,
        rng: random.Random,
        clock: Callable[[], float],
        notify: Callable[[], None],
    ) -> None:
        self._keys = keys
        # Wakes FakeUpbit.wait_for: a connection opened or closed.
        self._notify = notify
        self._rng = rng
        # The fake's clock, for the connect limit.
        self._clock = clock
        self._subscribers: set[_Subscriber] = set()
        # Recent connects, by pocket: each pocket has a limit of its own.
        self._connects: dict[str, deque[float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: How the stream breaks (see :class:`StreamFaults`).
        self.faults = StreamFaults()
        #: Events sent so far, over every connection.
        self.events_sent = 0

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._subscribers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /websocket/v1/private``."""
        if self.faults.refuse:
            return web.Response(status=503, text="Service Unavailable")
        authorization = request.headers.get("Authorization")
        token = read_token(authorization)
        claimed = token.access_key
        now = self._clock()
        connects = self._connects.setdefault(self._keys.pocket_of(claimed), deque())
        while connects and now - connects[0] >= 1.0:
            connects.popleft()
        if len(connects) >= CONNECTS_PER_SECOND:
            body = error_body("too_many_requests", "Too many connection requests.")
            return web.Response(status=429, body=body, content_type="application/json")
        connects.append(now)
        socket = web.WebSocketResponse(heartbeat=None, autoping=True)
        await socket.prepare(request)
        call = Call(
            method="GET",
            path=request.path,
            authorization=authorization,
            raw_query="",
            params=(),
            body=b"",
            token=token,
        )
        try:
            credential = self._keys.authenticate(call)
            if not credential.can_query:
                raise Refused(
                    401, "out_of_scope", "This API key lacks the 'order query' permission."
                )
        except Refused as refused:
            reason = f"{refused.name}: {refused.message}"
            await socket.send_str(error_body("INVALID_AUTH", reason).decode())
            await socket.close(code=WSCloseCode.POLICY_VIOLATION, message=b"INVALID_AUTH")
            return socket
        subscriber = _Subscriber(socket, credential.pocket)
        self._subscribers.add(subscriber)
        self._notify()
        try:
            while True:
                try:
                    message = await socket.receive(timeout=self.faults.idle_timeout)
                except TimeoutError:
                    await socket.close(code=WSCloseCode.POLICY_VIOLATION, message=b"idle")
                    break
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
                if message.type != WSMsgType.TEXT and message.type != WSMsgType.BINARY:
                    continue
                if self.faults.silent:
                    continue
                text = message.data if isinstance(message.data, str) else message.data.decode()
                await self._request(subscriber, text)
        finally:
            self._subscribers.discard(subscriber)
            self._notify()
        return socket

    async def _request(self, subscriber: _Subscriber, text: str) -> None:
        if text == "PING":
            await subscriber.socket.send_str('{"status":"UP"}')
            return
        problem = _subscription(subscriber, text)
        if problem is not None:
            await subscriber.socket.send_str(error_body("INVALID_PARAM", problem).decode())

    def publish(self, order: FakeOrder, pocket: str = MAIN) -> None:
        """Send the event of ``order``'s new state to every connection of its ``pocket``
        subscribed to its market (without waiting: the book calls this while it changes)."""
        if not self._subscribers:
            return
        now_ms = int(time.time() * 1000)
        for subscriber in list(self._subscribers):
            if not subscriber.subscribed or subscriber.pocket != pocket:
                continue
            if subscriber.codes is not None and order.market not in subscriber.codes:
                continue
            faults = self.faults
            if faults.silent:
                continue
            if faults.drop_rate and self._rng.random() < faults.drop_rate:
                continue
            if faults.close_after is not None and subscriber.sent >= faults.close_after:
                continue  # closing after its last event
            event = order_event(order, simple=subscriber.simple, now_ms=now_ms)
            subscriber.sent += 1
            close = faults.close_after is not None and subscriber.sent >= faults.close_after
            self._spawn(self._send(subscriber, event, close))

    async def _send(self, subscriber: _Subscriber, event: bytes, close: bool) -> None:
        socket = subscriber.socket
        if socket.closed:
            return
        try:
            await socket.send_bytes(event)
            self.events_sent += 1
            if close:
                self._subscribers.discard(subscriber)
                await socket.close(code=WSCloseCode.INTERNAL_ERROR, message=b"closed on demand")
        except (ConnectionError, RuntimeError):
            self._subscribers.discard(subscriber)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Close every connection."""
        for subscriber in list(self._subscribers):
            await subscriber.socket.close(code=WSCloseCode.GOING_AWAY, message=b"server closing")
        self._subscribers.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _subscription(subscriber: _Subscriber, text: str) -> str | None:
    """Apply a subscription message; what is wrong with it, if anything."""
    try:
        payload = json.loads(text)
    except ValueError:
        return "The request is not JSON."
    if not isinstance(payload, list) or not payload:
        return "The request must be a JSON array: a ticket, then types, then a format."
    if not all(isinstance(part, dict) for part in payload):
        return "Every field of the request must be a JSON object."
    tickets = [part for part in payload if "ticket" in part]
    types = [part for part in payload if "type" in part]
    formats = [part for part in payload if "format" in part]
    if len(tickets) != 1 or not isinstance(tickets[0]["ticket"], str) or not tickets[0]["ticket"]:
        return "Exactly one ticket, a non-empty string, is required."
    if not types:
        return "At least one type is required."
    codes: set[str] | None = set()
    for part in types:
        if part["type"] != "myOrder":
            return f"Unknown type on the private stream: {part['type']!r}."
        given = part.get("codes")
        if given is None or given == []:
            codes = None
        elif not isinstance(given, list) or not all(isinstance(code, str) for code in given):
            return "codes must be a list of market codes."
        elif codes is not None:
            codes.update(given)
    chosen = formats[-1]["format"] if formats else "DEFAULT"
    if chosen not in ("DEFAULT", "SIMPLE"):
        return "format must be DEFAULT or SIMPLE."
    subscriber.codes = None if codes is None else frozenset(codes)
    subscriber.simple = chosen == "SIMPLE"
    subscriber.subscribed = True
    return None
