"""The account's order changes pushed over Upbit's private WebSocket (``myOrder``).

``wss://{region}-api.upbit.com/websocket/v1/private`` (Korea: ``wss://api.upbit.com/…``; a
private stream needs the region's own host), derived from the session's base URL (``http`` →
``ws``, ``https`` → ``wss``), so that it works against a fake exchange too. What Upbit
documents, and this client relies on:

- the REST token (``access_key``, ``nonce``, no query hash) in ``Authorization`` at connect;
  a bad one is told ``{"error": {"name": "INVALID_AUTH", …}}``;
- one JSON array subscribes: a ``ticket``, ``{"type": "myOrder", "codes": [...]}`` (none: every
  market), a ``format``; a new one replaces the previous;
- events are binary frames of UTF-8 JSON, in the ``DEFAULT`` format or the abbreviated
  ``SIMPLE`` one; sent for each change *after* the subscription (no snapshot), and lost with
  the connection;
- idle connections close after about 120 s: the text ``PING``, answered ``{"status":"UP"}``,
  keeps one alive; at most 5 connects a second per account.

Upbit does not acknowledge a subscription. The stream sends ``PING`` right after it and counts
the subscription in force from the ``{"status":"UP"}`` that answers it: this assumes the
exchange handles one connection's messages in order.

Whether events may have been missed is said at every moment by :meth:`OrderStream.mark` and
:meth:`OrderStream.unbroken_since`: every event after a mark was delivered if and only if the
same subscription is still in force. An event that does not parse is logged and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import attrs

from .._errors import ConnectError, SessionClosedError
from .._log import log as _log
from .._models import Order

if TYPE_CHECKING:
    from .session import UpbitSession

__all__ = ["STREAM_PATH", "OrderEvent", "OrderStream", "parse_event"]

#: The private stream's path on the API host.
STREAM_PATH: Final = "/websocket/v1/private"
#: The ``SIMPLE`` format's abbreviations of the fields read here.
_SIMPLE: Final = {
    "type": "ty",
    "code": "cd",
    "uuid": "uid",
    "identifier": "id",
    "ask_bid": "ab",
    "state": "s",
    "timestamp": "tms",
}


@attrs.frozen
class OrderEvent:
    """One ``myOrder`` event: an order as it stands after a change."""

    uuid: str
    market: str
    state: str
    identifier: str | None = None
    #: ``"bid"`` or ``"ask"``.
    side: str | None = None
    #: When the exchange sent it, in milliseconds since the epoch.
    timestamp: int | None = None

    def as_order(self) -> Order:
        """The order as a query would describe it (the fields an event carries)."""
        return Order(
            uuid=self.uuid,
            market=self.market,
            state=self.state,
            side=self.side,
            identifier=self.identifier,
        )


def parse_event(data: str | bytes) -> OrderEvent:
    """A ``myOrder`` event from its frame, in either format; ``ValueError`` when it is not one."""
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(payload, dict):
        raise ValueError("not a JSON object")
    simple = "ty" in payload
    fields: dict[str, Any] = (
        {name: payload.get(short) for name, short in _SIMPLE.items()} if simple else payload
    )
    if fields.get("type") != "myOrder":
        raise ValueError(f"not a myOrder event (type {fields.get('type')!r})")
    text: dict[str, str] = {}
    for name in ("uuid", "code", "state"):
        value = fields.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} is missing or not a string")
        text[name] = value
    identifier = fields.get("identifier")
    if identifier is not None and not isinstance(identifier, str):
        raise ValueError("identifier is not a string")
    side = fields.get("ask_bid")
    if side is not None and (not isinstance(side, str) or side.lower() not in ("ask", "bid")):
        raise ValueError("ask_bid is neither ASK nor BID")
    timestamp = fields.get("timestamp")
    if timestamp is not None and (isinstance(timestamp, bool) or not isinstance(timestamp, int)):
        raise ValueError("timestamp is not a whole number")
    return OrderEvent(
        uuid=text["uuid"],
        market=text["code"],
        state=text["state"],
        identifier=identifier or None,
        side=None if side is None else side.lower(),
        timestamp=timestamp,
    )


class OrderStream:
    """The account's ``myOrder`` events, kept flowing while it is open.

    Example::

        async with OrderStream(session, on_event=print) as stream:
            if await stream.ready(within=2.0):
                mark = stream.mark()
                ...  # act; events arrive meanwhile
                complete = stream.unbroken_since(mark)

    A background task connects, subscribes, keeps the connection alive and reconnects with a
    growing pause after a failure; a token refused (``INVALID_AUTH``) or a closed session ends
    it. ``on_event`` is called for every event, in order; what it raises is logged.

    Args:
        session: Whose key signs the connection, and whose host serves it.
        on_event: Called with each :class:`OrderEvent`.
        codes: Markets to subscribe to (default: every market).
        keepalive: Seconds between two ``PING`` texts.
        connect_timeout: Seconds to connect and see the subscription in force.
    """

    __slots__ = (
        "_closed",
        "_codes",
        "_connect_timeout",
        "_epoch",
        "_failed_once",
        "_keepalive",
        "_on_event",
        "_ready",
        "_session",
        "_task",
        "failure",
        "unparsed",
    )

    #: First pause before connecting again, and the longest (each failure doubles it).
    FIRST_PAUSE: Final = 0.25
    LONGEST_PAUSE: Final = 5.0

    def __init__(
        self,
        session: UpbitSession,
        *,
        on_event: Callable[[OrderEvent], object],
        codes: Iterable[str] | None = None,
        keepalive: float = 30.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self._session = session
        self._on_event = on_event
        self._codes = None if codes is None else sorted(set(codes))
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        # The number of the subscription in force, when one is (None between two).
        self._epoch = 0
        self._ready = asyncio.Event()
        # Set once a connection attempt ended without a subscription.
        self._failed_once = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: Why the stream is not (or was last not) subscribed, for logs and tests.
        self.failure: str | None = None
        #: Frames that did not parse as events (logged and ignored).
        self.unparsed = 0

    async def __aenter__(self) -> OrderStream:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def start(self) -> None:
        """Start connecting in the background (once)."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="upbit_cancel order stream")

    async def ready(self, within: float, *, first_try: bool = False) -> bool:
        """Wait until a subscription is in force, at most ``within`` seconds; whether it is.

        Returns ``False`` sooner if the stream stopped for good (a refused key, a closed
        session), and with ``first_try`` once its first connection failed (refused, or none
        could be made; it keeps trying in the background).
        """
        if self._ready.is_set() or self._task is None or self._task.done():
            return self._ready.is_set()
        waiters = {asyncio.ensure_future(self._ready.wait())}
        if first_try:
            waiters.add(asyncio.ensure_future(self._failed_once.wait()))
        try:
            await asyncio.wait(
                {*waiters, self._task}, timeout=within, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        return self._ready.is_set()

    @property
    def subscribed(self) -> bool:
        """Whether a subscription is in force now."""
        return self._ready.is_set()

    def mark(self) -> int | None:
        """The subscription in force now (``None`` if none is): see :meth:`unbroken_since`."""
        return self._epoch if self._ready.is_set() else None

    def unbroken_since(self, mark: int | None) -> bool:
        """Whether every event since ``mark`` was delivered: the subscription in force at the
        mark still is (no connection was lost meanwhile)."""
        return mark is not None and self._ready.is_set() and self._epoch == mark

    async def aclose(self) -> None:
        """Close the connection and stop reconnecting. Safe to call twice."""
        self._closed = True
        self._ready.clear()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the background task ---------------------------------------------------------------

    async def _run(self) -> None:
        pause = self.FIRST_PAUSE
        while not self._closed:
            try:
                subscribed = await self._connection()
            except SessionClosedError:
                self.failure = "the session is closed"
                return
            except _Refused as refused:
                self.failure = str(refused)
                _log.warning("the order stream stops: %s", refused)
                return
            except ConnectError as error:
                self.failure = str(error)
                subscribed = False
            except Exception as error:
                self.failure = f"the stream failed: {type(error).__name__}"
                _log.warning("the order stream failed unexpectedly: %s", type(error).__name__)
                subscribed = False
            finally:
                self._ready.clear()
            if subscribed:
                pause = self.FIRST_PAUSE
            else:
                self._failed_once.set()
            _log.info("the order stream is down (%s); connecting again", self.failure)
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.LONGEST_PAUSE)

    async def _connection(self) -> bool:
        """One connection, until it ends; whether it was ever subscribed."""
        socket = await self._session._transport.connect_stream(
            STREAM_PATH, within=self._connect_timeout
        )
        subscribed = False
        async with socket:
            request: list[dict[str, Any]] = [
                {"ticket": uuid.uuid4().hex},
                {"type": "myOrder"} | ({} if self._codes is None else {"codes": self._codes}),
                {"format": "DEFAULT"},
            ]
            heard = [asyncio.get_running_loop().time()]
            keeper = asyncio.create_task(self._keep_alive(socket, heard))
            try:
                await socket.send_str(json.dumps(request))
                await socket.send_str("PING")
                loop = asyncio.get_running_loop()
                deadline = loop.time() + self._connect_timeout
                while True:
                    wait = None if subscribed else max(0.0, deadline - loop.time())
                    try:
                        message = await socket.receive(timeout=wait)
                    except TimeoutError:
                        self.failure = "the subscription was not confirmed in time"
                        break
                    heard[0] = loop.time()
                    if message.type == aiohttp.WSMsgType.BINARY:
                        self._event(message.data)
                    elif message.type == aiohttp.WSMsgType.TEXT:
                        if _status_up(message.data):
                            if not subscribed:
                                subscribed = True
                                self._epoch += 1
                                self.failure = None
                                self._ready.set()
                        else:
                            self._text(message.data)
                    else:  # closed, closing or an error: the connection is over
                        if self.failure is None:
                            self.failure = f"the stream was closed ({socket.close_code})"
                        break
            except (aiohttp.ClientError, OSError, RuntimeError) as error:
                self.failure = f"the stream failed: {type(error).__name__}"
            finally:
                self._ready.clear()
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
        return subscribed

    async def _keep_alive(
        self, socket: aiohttp.ClientWebSocketResponse, heard: list[float]
    ) -> None:
        """``PING`` every ``keepalive`` seconds; a connection silent since the previous one
        (nothing heard, not even ``UP``) is taken for dead and closed."""
        loop = asyncio.get_running_loop()
        while not socket.closed:
            pinged = loop.time()
            await asyncio.sleep(self._keepalive)
            if heard[0] < pinged:
                self.failure = "the stream went silent"
                self._ready.clear()
                await socket.close()
                return
            with contextlib.suppress(ConnectionError, RuntimeError):
                await socket.send_str("PING")

    def _event(self, data: bytes) -> None:
        try:
            event = parse_event(data)
        except ValueError as problem:
            self.unparsed += 1
            _log.warning("ignored a frame of the order stream that is no event: %s", problem)
            return
        try:
            self._on_event(event)
        except Exception:
            _log.exception("on_event raised; the stream carries on")

    def _text(self, text: str) -> None:
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            name = error.get("name")
            if name == "INVALID_AUTH":
                raise _Refused("the exchange refused the key (INVALID_AUTH)")
            _log.warning("the order stream says %s", name)
            return
        # Events may come as text too: read them the same way.
        self._event(text.encode())


class _Refused(Exception):
    """The exchange refused the key: connecting again would not help."""


def _status_up(text: str) -> bool:
    try:
        payload = json.loads(text)
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("status") == "UP"
