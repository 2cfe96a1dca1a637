"""The instruments: fake exchanges in a process of their own, their admin API, a redis-server.

Fake exchanges are served by ``python -m benchmarks.exchange`` (`FakeProcess` starts it)::

    python -m benchmarks.exchange --fake policy=sliding,jitter=0.02 --fake policy=fixed

Each ``--fake`` starts one `FakeUpbit` on its own loopback port, as one account with its own
keys, orders and rate budget. Its fields, all optional: ``policy`` (``sliding``, ``fixed`` or
``bucket``), ``limit`` (requests per window, 30), ``window`` (seconds, 1.0), ``jitter`` (the
arrival jitter: each request waits a uniform random 0 to ``jitter`` seconds before the exchange
counts it; 0), ``latency`` (the one-way latency, in seconds, applied both ways: each request
waits that long before it arrives, on top of its jitter, and each answer that long before it is
sent; 0), ``unknown`` (``omit`` or ``failed``: what the exchange answers for ids it does not
know; ``omit``) and ``seed`` (the position of the fake, by default, so no two share keys).

Once every fake listens, one JSON line goes to stdout::

    {"fakes": [{"base_url": "http://127.0.0.1:PORT", "access_key": "...", "secret_key": "...",
                "spec": {...}}, ...]}

The process then serves until its stdin is closed (so it never outlives the benchmark that
started it) or it gets SIGTERM. The fakes are driven through their admin API (``/_fake/``).
Keeping the exchange out of the measured client's process means the client's CPU time, memory
and event loop are its own, as they would be against the real exchange.

The fakes are the measuring instrument, so this process runs without automatic cyclic garbage
collection: with hundreds of thousands of orders in memory a full collection pauses the loop for
tens of milliseconds, and requests arriving during the pause would be stamped late, bunched
together, as if the client had sent them so. The fake makes almost no cyclic garbage (a few
hundred objects per 5,000 requests), so nothing piles up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

import aiohttp
import attrs

from upbit_cancel.testing import FakeUpbit, Faults, PathProxy, PolicyName, UnknownIds

#: The directory that holds the ``benchmarks`` package: child processes start there.
ROOT = Path(__file__).resolve().parent.parent


@attrs.frozen
class FakeSpec:
    """How one fake exchange is configured."""

    policy: PolicyName = "sliding"
    limit: int = 30
    window: float = 1.0
    #: Upper bound of the uniform random delay before a request arrives, in seconds.
    jitter: float = 0.0
    #: One-way latency, in seconds: before a request arrives (plus its jitter) and before its
    #: answer is sent.
    latency: float = 0.0
    #: Seconds an accepted cancel takes to take effect, and the share of orders that fill
    #: meanwhile (see ``FakeUpbit``).
    cancel_delay: float = 0.0
    fill_rate: float = 0.0
    unknown: UnknownIds = "omit"
    seed: int | None = None
    #: Serve HTTPS with a throwaway certificate authority (its certificate is announced).
    tls: bool = False
    #: When set, clients reach the fake through a :class:`~upbit_cancel.testing.PathProxy`
    #: with this one-way latency (and ``proxy_jitter``), handshakes paid as on a real path.
    proxy_one_way: float | None = None
    proxy_jitter: float = 0.0

    def to_argument(self) -> str:
        """The ``--fake`` argument that builds this spec."""
        fields = attrs.asdict(self)
        return ",".join(f"{name}={value}" for name, value in fields.items() if value is not None)

    def to_json(self) -> dict[str, Any]:
        """The spec as plain JSON-ready values."""
        return attrs.asdict(self)

    @classmethod
    def parse(cls, text: str) -> FakeSpec:
        """Read ``policy=sliding,jitter=0.02,...`` (every field optional)."""
        fields: dict[str, str] = {}
        for part in filter(None, text.split(",")):
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"expected name=value, not {part!r}")
            fields[name.strip()] = value.strip()
        unknown_fields = fields.keys() - attrs.fields_dict(cls).keys()
        if unknown_fields:
            raise ValueError(f"unknown field(s): {', '.join(sorted(unknown_fields))}")
        policy = fields.get("policy", "sliding")
        if policy not in ("sliding", "fixed", "bucket"):
            raise ValueError(f"policy must be sliding, fixed or bucket, not {policy!r}")
        unknown = fields.get("unknown", "omit")
        if unknown not in ("omit", "failed"):
            raise ValueError(f"unknown must be omit or failed, not {unknown!r}")
        return cls(
            policy=cast(PolicyName, policy),
            limit=int(fields.get("limit", 30)),
            window=float(fields.get("window", 1.0)),
            jitter=float(fields.get("jitter", 0.0)),
            latency=float(fields.get("latency", 0.0)),
            cancel_delay=float(fields.get("cancel_delay", 0.0)),
            fill_rate=float(fields.get("fill_rate", 0.0)),
            unknown=cast(Literal["omit", "failed"], unknown),
            seed=int(fields["seed"]) if "seed" in fields else None,
            tls=fields.get("tls", "False") == "True",
            proxy_one_way=float(fields["proxy_one_way"]) if "proxy_one_way" in fields else None,
            proxy_jitter=float(fields.get("proxy_jitter", 0.0)),
        )


def build(spec: FakeSpec, position: int) -> FakeUpbit:
    """A fake exchange for *spec*, seeded by *position* unless the spec names a seed."""
    return FakeUpbit(
        policy=spec.policy,
        limit=spec.limit,
        window=spec.window,
        unknown_ids=spec.unknown,
        faults=Faults(latency_in=spec.latency, latency_out=spec.latency, jitter_in=spec.jitter),
        cancel_delay=spec.cancel_delay,
        fill_rate=spec.fill_rate,
        seed=position if spec.seed is None else spec.seed,
        tls=spec.tls,
    )


async def serve(specs: Sequence[FakeSpec]) -> None:
    """Start a fake per spec, announce them on stdout, serve until stdin closes or SIGTERM."""
    gc.collect()
    gc.disable()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def on_stdin() -> None:
        # Only end of file matters; anything written is read and ignored.
        if not os.read(sys.stdin.fileno(), 4096):
            loop.remove_reader(sys.stdin.fileno())
            stop.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    fakes = [build(spec, position) for position, spec in enumerate(specs)]
    async with contextlib.AsyncExitStack() as stack:
        addresses = []
        for fake, spec in zip(fakes, specs, strict=True):
            await stack.enter_async_context(fake)
            address = fake.base_url
            if spec.proxy_one_way is not None:
                proxy = PathProxy(
                    fake.base_url, one_way=spec.proxy_one_way, jitter=spec.proxy_jitter
                )
                address = (await stack.enter_async_context(proxy)).base_url
            addresses.append(address)
        announcement = {
            "fakes": [
                {
                    "base_url": address,
                    "access_key": fake.access_key,
                    "secret_key": fake.secret_key,
                    "spec": spec.to_json(),
                    "ca_pem": None if fake.ca_pem is None else fake.ca_pem.decode(),
                }
                for fake, spec, address in zip(fakes, specs, addresses, strict=True)
            ]
        }
        print(json.dumps(announcement), flush=True)
        await stop.wait()


# --- the suite's side ---------------------------------------------------------------------------


@attrs.frozen
class FakeHandle:
    """One running fake exchange: where it listens and the account's first key pair."""

    base_url: str
    access_key: str
    secret_key: str = attrs.field(repr=False)
    spec: FakeSpec
    #: The certificate of the fake's authority, PEM-encoded, when it serves HTTPS.
    ca_pem: str | None = None

    def to_json(self) -> dict[str, Any]:
        """What a job process needs to reach this fake (its keys are throwaway test keys)."""
        return {
            "base_url": self.base_url,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "spec": self.spec.to_json(),
            "ca_pem": self.ca_pem,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FakeHandle:
        """Rebuild a handle from `to_json`'s output."""
        return cls(
            base_url=data["base_url"],
            access_key=data["access_key"],
            secret_key=data["secret_key"],
            spec=FakeSpec(**data["spec"]),
            ca_pem=data.get("ca_pem"),
        )


class FakeProcess:
    """``python -m benchmarks.exchange`` with one fake per spec, as an async context manager.

    Entering starts the process and waits for its announcement; exiting closes its stdin, which
    ends it, and waits for it (killing it after ten seconds).
    """

    __slots__ = ("_process", "_specs")

    def __init__(self, specs: Sequence[FakeSpec]) -> None:
        self._specs = tuple(specs)
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> tuple[FakeHandle, ...]:
        arguments = [part for spec in self._specs for part in ("--fake", spec.to_argument())]
        self._process = await spawn("benchmarks.exchange", arguments)
        assert self._process.stdout is not None
        line = await self._process.stdout.readline()
        if not line:
            await self._process.wait()
            raise RuntimeError("the fake exchange process ended before it announced itself")
        return tuple(
            FakeHandle(
                base_url=fake["base_url"],
                access_key=fake["access_key"],
                secret_key=fake["secret_key"],
                spec=spec,
                ca_pem=fake.get("ca_pem"),
            )
            for fake, spec in zip(json.loads(line)["fakes"], self._specs, strict=True)
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def spawn(
    module: str, arguments: Sequence[str], *, env: Mapping[str, str] | None = None
) -> asyncio.subprocess.Process:
    """Start ``python -m module arguments`` from the repository root, stdin and stdout piped;
    *env* adds to the environment."""
    command = [sys.executable, "-m", module, *arguments]
    return await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def run_json_lines(
    module: str, arguments: Sequence[str], *, env: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Run ``python -m module arguments`` to its end; return the JSON objects it printed."""
    process = await spawn(module, arguments, env=env)
    stdout, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"python -m {module} exited with status {process.returncode}")
    return [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]


class Admin:
    """The admin API (``/_fake/...``) of one fake exchange, over a caller's HTTP session."""

    __slots__ = ("_base_url", "_http")

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self._http = http
        self._base_url = base_url

    async def _get(self, path: str) -> Any:
        async with self._http.get(f"{self._base_url}/_fake/{path}") as response:
            response.raise_for_status()
            return await response.json()

    async def _post(self, path: str, payload: Mapping[str, Any]) -> Any:
        async with self._http.post(f"{self._base_url}/_fake/{path}", json=payload) as response:
            response.raise_for_status()
            return await response.json()

    async def add_orders(
        self,
        count: int,
        *,
        state: str = "wait",
        identifiers: bool = False,
        market: str = "SGD-BTC",
    ) -> tuple[list[str], list[str] | None]:
        """Add *count* orders in *state*; return their uuids and, if asked, identifiers."""
        created = await self._post(
            "orders",
            {"count": count, "state": state, "identifiers": identifiers, "market": market},
        )
        return list(created["uuids"]), created["identifiers"]

    async def states(self) -> dict[str, int]:
        """How many of the account's orders are open (``wait``), ``done`` and ``cancel``."""
        return {state: int(count) for state, count in (await self._get("states")).items()}

    async def stats(self) -> dict[str, Any]:
        """``admitted``, ``rejected_429``, ``status_counts`` and ``max_in_window`` so far."""
        return dict(await self._get("stats"))

    async def records(self) -> list[dict[str, Any]]:
        """Every signed request since the last reset, in arrival order."""
        return list(await self._get("records"))

    async def reset_records(self) -> None:
        """Forget the records (orders and the rate budget stay)."""
        await self._post("reset-records", {})

    async def add_credentials(self) -> tuple[str, str]:
        """Create another key pair of the account (sharing its budget); return
        ``(access_key, secret_key)``."""
        created = await self._post("credentials", {})
        return str(created["access_key"]), str(created["secret_key"])

    async def set_faults(
        self, *, access_key: str | None = None, **fields: float
    ) -> dict[str, float]:
        """Replace the fake's faults with these `Faults` fields (the others take defaults); with
        *access_key*, only those of requests signed with that key (a client on a path of its own).

        Requests received from then on draw the new delays. Returns the faults now in force;
        raises ValueError with the fake's message if it refuses them.

        Example: ``await admin.set_faults(latency_in=0.01, latency_out=0.01, jitter_in=0.01)``.
        """
        url = f"{self._base_url}/_fake/faults"
        payload: dict[str, Any] = dict(fields)
        if access_key is not None:
            payload["access_key"] = access_key
        async with self._http.post(url, json=payload) as response:
            if response.status == 400:
                error = (await response.json())["error"]
                raise ValueError(f"{error['name']}: {error['message']}")
            response.raise_for_status()
            return {name: float(value) for name, value in (await response.json()).items()}


class RedisServer:
    """A ``redis-server`` on a free loopback port without persistence, as an async context
    manager: entering starts it and waits until it answers ``PING``; exiting stops it."""

    __slots__ = ("_process", "port")

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> RedisServer:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed")
        command = [executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        self._process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if (await self.command("PING")).startswith("+PONG"):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline or self._process.returncode is not None:
                await self.__aexit__(None, None, None)
                raise RuntimeError("redis-server did not start")
            await asyncio.sleep(0.02)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def command(self, command: str) -> str:
        """Send one inline command; return the reply (a bulk string's payload, else the line)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(command.encode() + b"\r\n")
            await writer.drain()
            line = (await reader.readline()).decode()
            if line.startswith("$") and int(line[1:]) >= 0:
                payload = await reader.readexactly(int(line[1:]) + 2)
                return payload[:-2].decode()
            return line
        finally:
            writer.close()
            await writer.wait_closed()

    async def counters(self) -> dict[str, float]:
        """``evalsha`` calls so far and the server's CPU seconds (``INFO``)."""
        fields: dict[str, str] = {}
        for section in ("commandstats", "cpu"):
            for line in (await self.command(f"INFO {section}")).splitlines():
                name, sep, value = line.partition(":")
                if sep:
                    fields[name] = value
        evalsha = dict(
            part.split("=", 1) for part in fields.get("cmdstat_evalsha", "calls=0").split(",")
        )
        return {
            "evalsha": float(evalsha.get("calls", 0)),
            "evalsha_failed": float(evalsha.get("failed_calls", 0)),
            "cpu_seconds": float(fields.get("used_cpu_sys", 0))
            + float(fields.get("used_cpu_user", 0)),
        }


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the ``--fake`` specs and serve them."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.exchange", description=__doc__)
    parser.add_argument(
        "--fake",
        action="append",
        default=[],
        metavar="SPEC",
        help="policy=...,limit=...,window=...,jitter=...,latency=...,unknown=...,seed=... "
        "(repeatable)",
    )
    arguments = parser.parse_args(argv)
    try:
        specs = [FakeSpec.parse(text) for text in arguments.fake] or [FakeSpec()]
    except ValueError as error:
        parser.error(str(error))
    asyncio.run(serve(specs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
