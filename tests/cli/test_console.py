"""The installed ``upbit-cancel`` console script against a ``fake-server`` process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.cli.processes import (
    SCRIPT,
    UNKNOWN_UUID,
    Server,
    run_cancel,
    serve,
    start,
    stop,
)


async def interrupt(process: asyncio.subprocess.Process, times: int = 1) -> bytes:
    """Ctrl+C *times* in a row: exit 130 with no traceback. Returns what went to stderr."""
    for _ in range(times):
        process.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 130
    assert b"Traceback" not in stderr
    assert b"interrupted" in stderr
    return stderr


async def states(base_url: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/_fake/states") as reply:
        counts: dict[str, int] = await reply.json()
        return counts


async def test_cancels_every_seeded_order(server: Server, tmp_path: Path) -> None:
    """A file of the seeded uuids is canceled in full: every id in the JSON, exit 0."""
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# seeded by fake-server\n" + "\n".join(server.uuids) + "\n\n")
    finished = await run_cancel(server, "--file", str(ids_file), "--json")
    assert finished.returncode == 0, finished.stderr
    document = finished.json()
    assert sorted(order["uuid"] for order in document["success"]) == sorted(server.uuids)
    assert document["unresolved"] == []
    assert document["requests"] == 3
    assert await states(server.base_url) == {
        "wait": 0,
        "watch": 0,
        "done": 0,
        "cancel": 50,
        "prevented": 0,
    }
    assert "Cancel summary" in finished.stderr

    # Again, with an id the exchange does not know and a malformed one, from stdin.
    again = "\n".join([*server.uuids, UNKNOWN_UUID, "12345"]).encode()
    finished = await run_cancel(server, "-", "--json", "--quiet", stdin=again)
    assert finished.returncode == 1
    assert finished.stderr == ""
    document = finished.json()
    assert document["success"] == []
    assert len(document["failed"]) == 50
    assert [entry["id"] for entry in document["unresolved"]] == [UNKNOWN_UUID, "12345"]


async def test_usage_errors_exit_2(server: Server) -> None:
    """No source, or plain http to a remote host, exit 2 with a message and no traceback."""
    finished = await run_cancel(server)
    assert finished.returncode == 2
    assert "one of the arguments --uuids --identifiers --file - --all-open is required" in (
        finished.stderr
    )
    process = await start(
        "cancel", "--base-url", "http://example.com", "--uuids", UNKNOWN_UUID, "--json"
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert stdout == b""
    assert b"set UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY in the environment" in stderr


async def test_ctrl_c_reports_the_partial_result(tmp_path: Path) -> None:
    """Ctrl+C mid-run exits 130 and still accounts for every id, as not sent or in flight."""
    # 300 requests: at 30 a second the run cannot be over before Ctrl+C.
    async for server in serve(tmp_path, "--orders", "6000", "--latency", "30"):
        process = await start(
            "cancel",
            "--base-url",
            server.base_url,
            "--json",
            "--file",
            str(tmp_path / "seeded.txt"),
            keys_of=server,
        )
        try:
            assert process.stderr is not None
            line = await asyncio.wait_for(process.stderr.readline(), timeout=20)
            assert line.startswith(b"Cancelling 6,000 uuids")
            process.send_signal(signal.SIGINT)
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
        finally:
            await stop(process)
        assert process.returncode == 130
        assert b"interrupted" in stderr
        assert b"Traceback" not in stderr
        document = json.loads(stdout)
        # However far the run got, each id is in exactly one bucket.
        reported = [
            entry["uuid"] for bucket in ("success", "failed") for entry in document[bucket]
        ] + [entry["id"] for entry in document["unresolved"]]
        assert sorted(reported) == sorted(server.uuids)
        assert document["unresolved"]
        kinds = {entry["error"]["type"] for entry in document["unresolved"]}
        assert kinds <= {"OutcomeUnknownError", "NotSentError"}


async def partial_result_after(
    tmp_path: Path, signum: signal.Signals, launcher: tuple[str, ...] = ()
) -> tuple[int, dict[str, Any], bytes]:
    """Start cancelling 6,000 orders, send ``signum``: the exit status, JSON and stderr."""
    async for server in serve(tmp_path, "--orders", "6000", "--latency", "30"):
        process = await start(
            "cancel",
            "--base-url",
            server.base_url,
            "--json",
            "--file",
            str(tmp_path / "seeded.txt"),
            keys_of=server,
            launcher=launcher,
        )
        try:
            assert process.stderr is not None
            line = await asyncio.wait_for(process.stderr.readline(), timeout=20)
            assert line.startswith(b"Cancelling 6,000 uuids")
            process.send_signal(signum)
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
        finally:
            await stop(process)
        assert process.returncode is not None
        assert b"Traceback" not in stderr
        document: dict[str, Any] = json.loads(stdout)
        reported = [
            entry["uuid"] for bucket in ("success", "failed") for entry in document[bucket]
        ] + [entry["id"] for entry in document["unresolved"]]
        assert sorted(reported) == sorted(server.uuids)
        return process.returncode, document, stderr
    raise AssertionError("the fake exchange did not start")


async def test_sigterm_stops_like_ctrl_c_with_status_143(tmp_path: Path) -> None:
    """A supervisor's SIGTERM: the partial result is still written, exit 143."""
    status, document, stderr = await partial_result_after(tmp_path, signal.SIGTERM)
    assert status == 143
    assert document["unresolved"]
    assert b"interrupted" in stderr


async def test_ctrl_c_works_when_the_command_starts_with_it_ignored(tmp_path: Path) -> None:
    """Started as a background job of a script (SIGINT ignored), SIGINT still interrupts it."""
    launcher = ("sh", "-c", 'trap "" INT; exec "$0" "$@"')
    status, document, _ = await partial_result_after(tmp_path, signal.SIGINT, launcher)
    assert status == 130
    assert document["unresolved"]


async def test_python_m_upbit_cancel_runs_the_command_line() -> None:
    """`python -m upbit_cancel --version` is the console script."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "upbit_cancel",
        "--version",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr
    assert stdout.startswith(b"upbit-cancel ")


async def test_json_into_a_reader_that_stops_early_exits_quietly(tmp_path: Path) -> None:
    """`upbit-cancel ... --json | head -1`: no BrokenPipeError, no traceback, exit 0."""
    async for server in serve(tmp_path, "--orders", "2000"):
        ids_file = tmp_path / "ids.txt"
        ids_file.write_text("\n".join(server.uuids))
        stderr_file = tmp_path / "stderr.txt"
        # The reader goes away after the first line, with most of the JSON still to come.
        pipeline = (
            '"$0" cancel --base-url "$1" --json --quiet - <"$2" 2>"$3" | head -1; '
            'echo "${PIPESTATUS[0]}"'
        )
        env = {**os.environ, "PYTHONWARNINGS": "error"}
        env["UPBIT_ACCESS_KEY"] = server.access_key
        env["UPBIT_SECRET_KEY"] = server.secret_key
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            pipeline,
            str(SCRIPT),
            server.base_url,
            str(ids_file),
            str(stderr_file),
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            stdout, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        finally:
            await stop(process)
        first, status = stdout.decode().splitlines()
        assert first == "{"
        stderr = stderr_file.read_text()
        assert "Traceback" not in stderr
        assert "BrokenPipe" not in stderr
        assert status == "0"


async def test_a_second_ctrl_c_never_prints_a_traceback(tmp_path: Path) -> None:
    """Ctrl+C twice in a row: exit 130, the partial summary, no traceback."""
    async for server in serve(tmp_path, "--orders", "6000", "--latency", "30"):
        process = await start(
            "cancel",
            "--base-url",
            server.base_url,
            "--file",
            str(tmp_path / "seeded.txt"),
            keys_of=server,
        )
        try:
            assert process.stderr is not None
            line = await asyncio.wait_for(process.stderr.readline(), timeout=20)
            assert line.startswith(b"Cancelling 6,000 uuids")
            await interrupt(process, times=2)
        finally:
            await stop(process)


async def test_ctrl_c_before_anything_is_sent_is_quiet(tmp_path: Path) -> None:
    """Ctrl+C while ids are still being read: exit 130, nothing sent, no traceback."""
    async for server in serve(tmp_path):
        process = await start(
            "cancel",
            "--base-url",
            server.base_url,
            "-",
            keys_of=server,
            stdin=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stdin is not None
            assert process.stderr is not None
            process.stdin.write(f"{UNKNOWN_UUID}\n".encode())
            await process.stdin.drain()
            line = await asyncio.wait_for(process.stderr.readline(), timeout=20)
            assert line == b"Reading uuids from standard input\n"
            # Still reading standard input: the command has started and sent nothing.
            stderr = await interrupt(process)
        finally:
            await stop(process)
        assert b"nothing was sent" in stderr
