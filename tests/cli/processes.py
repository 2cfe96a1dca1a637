"""Running the command line as processes: the console script, a fake-server, their output."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest

#: The project's root, where ``python -m`` finds the package as the tests do.
ROOT = Path(__file__).resolve().parents[2]
#: The console script that installing the package puts next to the interpreter.
SCRIPT = Path(sys.executable).with_name("upbit-cancel")
UNKNOWN_UUID = "cdd92199-2897-4e14-9448-f923320408ad"


@attrs.frozen
class Server:
    base_url: str
    access_key: str
    secret_key: str
    uuids: list[str]


@attrs.frozen
class Finished:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.stdout)
        return document


async def start(
    *args: str,
    keys_of: Server | None = None,
    stdin: int | None = None,
    launcher: tuple[str, ...] = (),
) -> asyncio.subprocess.Process:
    """Start the console script, with the API key of ``keys_of`` in its environment if given.

    ``launcher``: a command that runs the script, given as its following arguments.
    """
    assert SCRIPT.exists(), f"the console script is not installed at {SCRIPT}"
    env = {name: value for name, value in os.environ.items() if not name.startswith("UPBIT_")}
    env["PYTHONWARNINGS"] = "error"
    if keys_of is not None:
        env["UPBIT_ACCESS_KEY"] = keys_of.access_key
        env["UPBIT_SECRET_KEY"] = keys_of.secret_key
    return await asyncio.create_subprocess_exec(
        *launcher,
        str(SCRIPT),
        *args,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()


async def serve(tmp_path: Path, *args: str) -> AsyncIterator[Server]:
    uuids_file = tmp_path / "seeded.txt"
    process = await start("fake-server", "--port", "0", "--uuids-file", str(uuids_file), *args)
    try:
        assert process.stdout is not None
        settings = await asyncio.wait_for(read_settings(process.stdout), timeout=20)
        yield Server(
            base_url=settings["base_url"],
            access_key=settings["access_key"],
            secret_key=settings["secret_key"],
            uuids=uuids_file.read_text().split(),
        )
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), timeout=20)
        assert process.returncode == 0
    finally:
        await stop(process)


async def run_cancel(server: Server, *args: str, stdin: bytes | None = None) -> Finished:
    pipe = asyncio.subprocess.PIPE if stdin is not None else None
    process = await start(
        "cancel", "--base-url", server.base_url, *args, keys_of=server, stdin=pipe
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(stdin), timeout=30)
    finally:
        await stop(process)
    assert process.returncode is not None
    finished = Finished(process.returncode, stdout.decode(), stderr.decode())
    assert "Traceback" not in finished.stderr
    assert server.secret_key not in finished.stdout + finished.stderr
    return finished


async def read_settings(stdout: asyncio.StreamReader) -> dict[str, str]:
    """Read the key=value lines the server prints before its notes."""
    settings: dict[str, str] = {}
    while len(settings) < 3:
        line = (await stdout.readline()).decode()
        if not line:
            raise AssertionError("fake-server exited before printing its settings")
        key, sep, value = line.strip().partition("=")
        if sep and not line.startswith("#"):
            settings[key] = value
    return settings


def slow_import(module: str) -> str:
    """A ``sitecustomize.py`` that makes importing ``module`` announce itself and take a while:
    a window in which Ctrl+C lands while a command is still importing."""
    return f"""
import sys, time

class _Slow:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            sys.stderr.write("importing\\n")
            sys.stderr.flush()
            time.sleep(5)
        return None

sys.meta_path.insert(0, _Slow())
"""


def use_key(monkeypatch: pytest.MonkeyPatch, access_key: str, secret_key: str) -> None:
    """The key pair in the environment, as ``cancel`` reads it."""
    monkeypatch.setenv("UPBIT_ACCESS_KEY", access_key)
    monkeypatch.setenv("UPBIT_SECRET_KEY", secret_key)


async def python_m_testing(
    *args: str, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """Start ``python -m upbit_cancel.testing`` with ``args``, its output piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "upbit_cancel.testing",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def ctrl_c_while_importing(process: asyncio.subprocess.Process) -> bytes:
    """Ctrl+C once ``process`` (started with :func:`slow_import`) says it is importing; what it
    wrote to standard error by the time it exited."""
    try:
        assert process.stderr is not None
        line = await asyncio.wait_for(process.stderr.readline(), timeout=20)
        assert line == b"importing\n"
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    finally:
        await stop(process)
    return stderr
