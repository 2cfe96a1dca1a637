"""Worker processes of one account for the multi-process tests (see ``_worker``), and a TCP
proxy that can cut a process off from a server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from upbit_cancel.testing import FakeUpbit

ROOT = Path(__file__).resolve().parents[2]


class Workers:
    """Worker processes started by :meth:`start`, each with a key of the account and orders of
    its own; :meth:`go` starts them together."""

    def __init__(self, fake: FakeUpbit, directory: Path) -> None:
        self.fake = fake
        self.directory = directory
        self.processes: list[asyncio.subprocess.Process] = []
        #: The access key of each process, in the same order.
        self.keys: list[str] = []

    async def start(
        self,
        *,
        orders: int,
        limiter: str = "redis",
        redis_url: str | None = None,
        account: str | None = "main",
        fallback_limit: int | None = None,
        count: int = 1,
        environment: dict[str, str] | None = None,
        keys: tuple[str, str] | None = None,
    ) -> list[asyncio.subprocess.Process]:
        """Start ``count`` workers (each with a new key of the account, or ``keys``) and wait
        until each is ready."""
        started = []
        for _ in range(count):
            index = len(self.processes)
            access_key, secret_key = keys or self.fake.add_credentials()
            uuids_file = self.directory / f"worker-{index}.txt"
            uuids_file.write_text("\n".join(self.fake.add_orders(orders)), encoding="utf-8")
            settings = {
                "base_url": self.fake.base_url,
                "uuids_file": str(uuids_file),
                "limiter": limiter,
                "redis_url": redis_url,
                "account": account,
                "fallback_limit": fallback_limit,
                "wait": True,
            }
            env = {**os.environ, **(environment or {})}
            env |= {"UPBIT_ACCESS_KEY": access_key, "UPBIT_SECRET_KEY": secret_key}
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.limiter._worker",
                json.dumps(settings),
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            self.processes.append(process)
            self.keys.append(access_key)
            started.append(process)
        for process in started:
            assert process.stdout is not None
            line = await process.stdout.readline()
            if line != b"ready\n":
                _, stderr = await process.communicate()
                raise AssertionError(f"a worker did not start: {stderr.decode(errors='replace')}")
        return started

    async def go(self, processes: Sequence[asyncio.subprocess.Process] | None = None) -> None:
        """Let ``processes`` (default: every one started) begin their batches."""
        for process in self.processes if processes is None else processes:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()

    async def outcomes(
        self, processes: Sequence[asyncio.subprocess.Process] | None = None
    ) -> list[dict[str, Any]]:
        """What each worker's batch reported; every one must end well."""
        chosen = self.processes if processes is None else processes
        return list(await asyncio.gather(*(outcome(process) for process in chosen)))

    async def stop(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.kill()
            await process.communicate()


@contextlib.asynccontextmanager
async def workers_of(fake: FakeUpbit, directory: Path) -> AsyncIterator[Workers]:
    """Workers of ``fake``'s account, every one killed at the end if still running."""
    workers = Workers(fake, directory)
    try:
        yield workers
    finally:
        await workers.stop()


async def outcome(process: asyncio.subprocess.Process) -> dict[str, Any]:
    """The JSON line a worker printed, with its standard error under ``"stderr"``."""
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode(errors="replace")
    result: dict[str, Any] = json.loads(stdout)
    result["stderr"] = stderr.decode(errors="replace")
    return result


class Proxy:
    """A TCP proxy on a loopback port to ``port``; :meth:`cut` drops every connection and
    refuses new ones (a process cut off from the server), :meth:`mend` lets them through again."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._cut = False

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self._cut = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def mend(self) -> None:
        self._cut = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            _pipe(reader, upstream_writer),
            _pipe(upstream_reader, writer),
            return_exceptions=True,
        )
        self._writers -= {writer, upstream_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.transport.abort()
