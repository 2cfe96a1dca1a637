"""The fake exchanges as the benchmark sees them: a process to start, and an admin API to drive.

Example::

    async with FakeProcess([FakeSpec(policy="fixed", jitter=0.02)]) as (fake,):
        async with aiohttp.ClientSession() as http:
            admin = Admin(http, fake.base_url)
            uuids, _ = await admin.add_orders(600)
            ...  # point a client at fake.base_url with fake.access_key / fake.secret_key
            print(await admin.states())
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import attrs

from benchmarks._fake_proc import FakeSpec

#: The directory that holds the ``benchmarks`` package: child processes start there.
ROOT = Path(__file__).resolve().parent.parent


@attrs.frozen
class FakeHandle:
    """One running fake exchange: where it listens and the account's first key pair."""

    base_url: str
    access_key: str
    secret_key: str = attrs.field(repr=False)
    spec: FakeSpec

    def to_json(self) -> dict[str, Any]:
        """What a job process needs to reach this fake (its keys are throwaway test keys)."""
        return {
            "base_url": self.base_url,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "spec": self.spec.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FakeHandle:
        """Rebuild a handle from `to_json`'s output."""
        return cls(
            base_url=data["base_url"],
            access_key=data["access_key"],
            secret_key=data["secret_key"],
            spec=FakeSpec(**data["spec"]),
        )


class FakeProcess:
    """``python -m benchmarks._fake_proc`` with one fake per spec, as an async context manager.

    Entering starts the process and waits for its announcement; exiting closes its stdin, which
    ends it, and waits for it (killing it after ten seconds).
    """

    __slots__ = ("_nice", "_process", "_specs")

    def __init__(self, specs: Sequence[FakeSpec], *, nice: int = 0) -> None:
        self._specs = tuple(specs)
        self._nice = nice
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> tuple[FakeHandle, ...]:
        arguments = [part for spec in self._specs for part in ("--fake", spec.to_argument())]
        self._process = await spawn("benchmarks._fake_proc", arguments, nice=self._nice)
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
    module: str,
    arguments: Sequence[str],
    *,
    nice: int = 0,
    env: Mapping[str, str] | None = None,
) -> asyncio.subprocess.Process:
    """Start ``python -m module arguments`` from the repository root, stdin and stdout piped.

    *nice* lowers the process's scheduling priority; *env* adds to the environment.
    """
    command = [sys.executable, "-m", module, *arguments]
    if nice:
        command = ["nice", "-n", str(nice), *command]
    return await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def run_json_lines(
    module: str,
    arguments: Sequence[str],
    *,
    nice: int = 0,
    env: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Run ``python -m module arguments`` to its end; return the JSON objects it printed."""
    process = await spawn(module, arguments, nice=nice, env=env)
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
        self, count: int, *, state: str = "wait", identifiers: bool = False
    ) -> tuple[list[str], list[str] | None]:
        """Add *count* orders in *state*; return their uuids and, if asked, identifiers."""
        created = await self._post(
            "orders", {"count": count, "state": state, "identifiers": identifiers}
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
