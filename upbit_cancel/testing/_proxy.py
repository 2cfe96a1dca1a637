"""A TCP proxy that makes loopback cost what a network path costs (see :class:`PathProxy`)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
import struct
from collections import deque
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

__all__ = ["PathProxy"]

_SCHEMES = ("http", "https", "ws", "wss")
# SO_LINGER on, 0 seconds: closing the socket then sends a reset rather than a FIN.
_RESET = struct.pack("ii", 1, 0)


class PathProxy:
    """A TCP proxy on loopback that delays every byte as a network path would.

    A fake exchange on loopback adds latency only once a request has arrived. A real path also
    costs each byte ``one_way`` seconds each way, and every new connection a TCP handshake,
    which is what makes connection reuse and pool size matter. Put this proxy in between::

        async with FakeUpbit() as fake, PathProxy(fake.base_url, one_way=0.05, jitter=0.02) as path:
            async with UpbitSession(key, secret, base_url=path.base_url) as session:
                ...  # a new connection's first answer comes 4 x 50 ms late or more, then 2 x 50 ms

    - ``target``: ``http://host:port``, ``https://host:port`` (TLS passes through untouched),
      ``ws://``, ``wss://`` or a bare ``host:port``; :attr:`base_url` keeps its form.
    - ``one_way``, ``jitter``: a chunk read at time ``t`` is delivered at
      ``t + one_way + uniform(0, jitter)``, but never before the chunk read before it in the
      same direction, so bytes stay in order. The client's first bytes leave no earlier than
      one round trip (``2 * one_way``) after it connected: the handshake.
    - ``seed``: seeds the proxy's one ``random.Random``.
    - ``host``, ``port``: where to listen; port 0 picks a free port.

    An end of stream (EOF) travels like the bytes before it; a reset of either side resets the
    other at once. Closing the proxy resets every connection through it.
    """

    __slots__ = (
        "_address",
        "_closed",
        "_connections",
        "_jitter",
        "_listen",
        "_one_way",
        "_rng",
        "_scheme",
        "_server",
        "_target",
        "_tasks",
        "bytes_down",
        "bytes_up",
        "closed_by_target",
        "connections",
    )

    def __init__(
        self,
        target: str,
        *,
        one_way: float = 0.0,
        jitter: float = 0.0,
        seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._scheme, self._target = _parse_target(target)
        self._one_way = _seconds("one_way", one_way)
        self._jitter = _seconds("jitter", jitter)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be a whole number or None, not {seed!r}")
        if not isinstance(host, str) or not host:
            raise TypeError(f"host must be a host name or address to listen on, not {host!r}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be a whole number, not {port!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, not {port!r}")
        self._listen = (host, port)
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None
        self._closed = False
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Connections accepted so far.
        self.connections = 0
        #: Connections whose target closed its side so far (its end delivered to the client),
        #: such as a server closing connections idle past its keep-alive timeout.
        self.closed_by_target = 0
        #: Bytes delivered to the target so far.
        self.bytes_up = 0
        #: Bytes delivered to clients so far.
        self.bytes_down = 0

    async def start(self) -> None:
        """Start listening. Does nothing if already started; a closed proxy cannot restart."""
        if self._closed:
            raise RuntimeError("this PathProxy is closed; create a new one")
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Side(_Connection(self), 0), *self._listen)
        host, port = self._server.sockets[0].getsockname()[:2]
        self._address = (host, port)

    async def aclose(self) -> None:
        """Stop listening and reset every connection. Safe to call more than once."""
        self._closed = True
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self._connections):
            connection.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # A reset socket is closed on the loop's next turn: none may outlive the proxy.
        for connection in list(self._connections):
            await connection.finished.wait()
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the proxy listens on."""
        if self._address is None:
            raise RuntimeError("PathProxy is not started; use 'async with' or 'await start()'")
        return self._address

    @property
    def base_url(self) -> str:
        """The target's URL with the proxy's host and port, such as ``http://127.0.0.1:54321``."""
        host, port = self.address
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return f"{self._scheme}://{where}" if self._scheme else where

    @property
    def open_connections(self) -> int:
        """Connections through the proxy now."""
        return len(self._connections)

    def _spawn(
        self, connection: _Connection, coroutine: Coroutine[Any, Any, None]
    ) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        connection.tasks.append(task)
        task.add_done_callback(self._tasks.discard)
        return task


class _Lane:
    """One direction of a connection: chunks read from one side, each with its delivery time."""

    __slots__ = ("chunks", "last", "not_before", "ready")

    def __init__(self, not_before: float) -> None:
        # (delivery time, bytes), in the order read; None stands for the sender's EOF.
        self.chunks: deque[tuple[float, bytes | None]] = deque()
        # Chunks leave no earlier than `not_before` and arrive no earlier than the chunk before
        # (`last`): jitter never reorders.
        self.not_before = not_before
        self.last = not_before
        self.ready = asyncio.Event()


class _Connection:
    """A client's connection and its twin to the target, joined by two delaying lanes.

    Side 0 is the client's socket, side 1 the target's; ``lanes[i]`` carries what side ``i``
    sent to the other side.
    """

    __slots__ = (
        "aborted",
        "ended",
        "eof",
        "finished",
        "gone",
        "lanes",
        "proxy",
        "tasks",
        "transports",
    )

    def __init__(self, proxy: PathProxy) -> None:
        accepted = asyncio.get_running_loop().time()
        self.proxy = proxy
        self.lanes = (_Lane(accepted + 2 * proxy._one_way), _Lane(accepted))
        self.transports: list[asyncio.Transport | None] = [None, None]
        self.eof = [False, False]  # side i sent its EOF
        self.ended = [False, False]  # lane i delivered its EOF
        self.gone = [False, False]  # side i's socket is closed
        self.aborted = False
        self.finished = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def made(self, index: int, transport: asyncio.Transport) -> None:
        self.transports[index] = transport
        if self.aborted:
            _reset(transport)
        elif self.proxy._closed:
            self.abort()
        elif index == 0:
            self.proxy._connections.add(self)
            self.proxy.connections += 1
            self.proxy._spawn(self, self._connect_and_carry_up()).add_done_callback(
                self.connect_ended
            )
            self.proxy._spawn(self, self._carry(1))

    def sent(self, index: int, data: bytes | None) -> None:
        if self.aborted:
            return
        proxy, lane = self.proxy, self.lanes[index]
        leaves = max(asyncio.get_running_loop().time(), lane.not_before)
        jitter = proxy._rng.uniform(0.0, proxy._jitter) if proxy._jitter else 0.0
        lane.last = max(lane.last, leaves + proxy._one_way + jitter)
        lane.chunks.append((lane.last, data))
        lane.ready.set()
        if data is None:
            self.eof[index] = True

    def lost(self, index: int, exc: BaseException | None) -> None:
        self.gone[index] = True
        if exc is not None:
            self.abort()
        if all(self.gone):
            self.proxy._connections.discard(self)
            self.finished.set()

    def throttle(self, index: int, *, pause: bool) -> None:
        """Side ``index`` takes bytes slower than they come: pause (resume) reading the other."""
        source = self.transports[1 - index]
        # A side that sent its EOF is read no more; resuming it would read that EOF again.
        if source is None or self.eof[1 - index] or source.is_closing():
            return
        if pause:
            source.pause_reading()
        else:
            source.resume_reading()

    def abort(self) -> None:
        """Reset both sides now, dropping whatever is still on its way."""
        if self.aborted:
            return
        self.aborted = True
        for lane in self.lanes:
            lane.chunks.clear()
        for index, transport in enumerate(self.transports):
            if transport is not None and not self.gone[index]:
                _reset(transport)
        for task in self.tasks:
            task.cancel()

    async def _connect_and_carry_up(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: _Side(self, 1), *self.proxy._target)
        await self._carry(0)

    def connect_ended(self, task: asyncio.Task[None]) -> None:
        # A target socket that was made reports its own loss; otherwise there is none to wait
        # for (the task may even have been cancelled before it started).
        if self.transports[1] is None:
            self.lost(1, None if task.cancelled() else task.exception())

    async def _carry(self, index: int) -> None:
        """Deliver lane ``index`` to the other side, each chunk at its time, up to its EOF."""
        lane, loop = self.lanes[index], asyncio.get_running_loop()
        destination = self.transports[1 - index]
        assert destination is not None
        while True:
            if not lane.chunks:
                lane.ready.clear()
                await lane.ready.wait()
                continue
            when, data = lane.chunks[0]
            if when > loop.time():
                await asyncio.sleep(when - loop.time())
                continue
            lane.chunks.popleft()
            if data is None:
                if index == 1:
                    self.proxy.closed_by_target += 1
                break
            destination.write(data)
            if index == 0:
                self.proxy.bytes_up += len(data)
            else:
                self.proxy.bytes_down += len(data)
        try:
            destination.write_eof()
        except OSError:  # the other side is gone already (reset while half-closed)
            self.abort()
            return
        self.ended[index] = True
        if all(self.ended):
            for transport in self.transports:
                assert transport is not None
                transport.close()


class _Side(asyncio.Protocol):
    """One socket of a proxied connection, telling its connection what happens to it."""

    __slots__ = ("_connection", "_index")

    def __init__(self, connection: _Connection, index: int) -> None:
        self._connection = connection
        self._index = index

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._connection.made(self._index, transport)

    def data_received(self, data: bytes) -> None:
        self._connection.sent(self._index, data)

    def eof_received(self) -> bool:
        self._connection.sent(self._index, None)
        return True  # half-closed: the other direction may still carry bytes

    def connection_lost(self, exc: Exception | None) -> None:
        self._connection.lost(self._index, exc)

    def pause_writing(self) -> None:
        self._connection.throttle(self._index, pause=True)

    def resume_writing(self) -> None:
        self._connection.throttle(self._index, pause=False)


def _reset(transport: asyncio.Transport) -> None:
    """Close ``transport`` with a reset, as a peer that aborts does."""
    with contextlib.suppress(OSError):
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    transport.abort()


def _parse_target(target: object) -> tuple[str, tuple[str, int]]:
    """``target``'s scheme (``""`` for a bare ``host:port``) and its host and port."""
    if not isinstance(target, str):
        raise TypeError(f"target must be a URL such as 'http://127.0.0.1:8123', not {target!r}")
    scheme, _, rest = target.rpartition("://")
    if scheme.lower() not in ("", *_SCHEMES):
        raise ValueError(f"target's scheme must be one of {', '.join(_SCHEMES)}, not {scheme!r}")
    parts = urlsplit(f"//{rest}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or not port or parts.path not in ("", "/") or parts.query:
        raise ValueError(
            f"target must be a host and a port, such as 'http://127.0.0.1:8123' or "
            f"'127.0.0.1:8123', not {target!r}"
        )
    return scheme.lower(), (parts.hostname, port)


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be zero or more finite seconds, not {value!r}")
    return float(value)
