"""The ``upbit-cancel fake-server`` command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from tests._signer import make_token, send
from tests.cli.processes import (
    ctrl_c_while_importing,
    python_m_testing,
    read_settings,
    slow_import,
)
from upbit_cancel._cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_fake_server_serves_until_signalled(
    tmp_path: Path, fake_http: aiohttp.ClientSession, signum: signal.Signals
) -> None:
    """It prints its URL and keys, seeds orders, serves signed cancels and exits 0 on a signal."""
    uuids_file = tmp_path / "uuids.txt"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-m",
        "upbit_cancel.testing",
        "--port",
        "0",
        "--orders",
        "3",
        "--uuids-file",
        str(uuids_file),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        settings = await asyncio.wait_for(read_settings(process.stdout), timeout=20)
        assert settings["base_url"].startswith("http://127.0.0.1:")
        uuids = uuids_file.read_text().split()
        assert len(uuids) == 3

        params = [("uuids[]", uuids[0])]
        token = make_token(settings["access_key"], settings["secret_key"], params)
        reply = await send(
            fake_http, settings["base_url"], "DELETE", "/v1/orders/uuids", params, token=token
        )
        assert reply.status == 200
        assert reply.body["success"]["orders"][0]["uuid"] == uuids[0]

        process.send_signal(signum)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert b"Traceback" not in stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--limit", "0"], "limit"),
        (["--cancel-all-limit", "0"], "limit"),
        (["--cancel-all-window", "-1"], "window"),
        (["--orders", "-5"], "--orders must be 0 or more"),
        (["--port", "99999"], "--port must be between 0 and 65535"),
        (["--uuids-file", "/nonexistent/dir/ids.txt"], "cannot write /nonexistent/dir/ids.txt"),
        (["--host", "nosuchhost.invalid"], "cannot listen on nosuchhost.invalid:0"),
    ],
    ids=["limit", "cancel-all-limit", "cancel-all-window", "orders", "port", "uuids-file", "host"],
)
def test_fake_server_refuses_bad_settings(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad settings exit with status 2 and one line, never a traceback."""
    assert main(["fake-server", *argv]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith("upbit-cancel fake-server: ")
    assert message in line


def test_fake_server_on_a_port_in_use_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["fake-server", "--port", str(port)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"upbit-cancel fake-server: cannot listen on 127.0.0.1:{port}")


def test_help_lists_fake_server(capsys: pytest.CaptureFixture[str]) -> None:
    """The command's help lists the fake-server subcommand."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "fake-server" in capsys.readouterr().out


def test_command_is_required() -> None:
    """Running without a subcommand is a usage error."""
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_bad_options_are_one_line_that_points_at_the_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An option argparse cannot read is one line and status 2, not the whole usage."""
    for argv in (["--orders", "x"], ["--policy", "bogus"], ["--bogus"], ["--market"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["fake-server", *argv])
        assert exit_info.value.code == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith("upbit-cancel")
        assert line.endswith(" --help)")


@pytest.mark.parametrize(
    "option", ["--window", "--cancel-all-window", "--latency", "--block-seconds"]
)
def test_an_endless_duration_is_refused(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fake-server", option, "inf"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "inf" in line


async def test_python_m_says_its_own_name_in_one_line() -> None:
    process = await python_m_testing("--limit", "1e9")
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 2
    [line] = stderr.decode().splitlines()
    assert line.startswith("python -m upbit_cancel.testing: argument --limit: ")


@pytest.mark.parametrize(
    ("first", "then"),
    [
        (signal.SIGINT, signal.SIGINT),
        (signal.SIGTERM, signal.SIGTERM),
        (signal.SIGTERM, signal.SIGINT),
    ],
    ids=["SIGINT-SIGINT", "SIGTERM-SIGTERM", "SIGTERM-SIGINT"],
)
async def test_signals_while_it_stops_are_ignored(
    first: signal.Signals, then: signal.Signals
) -> None:
    """Once stopping, every further signal, whenever it lands, is ignored: the exit is 0."""
    process = await python_m_testing("--port", "0", "--orders", "3")
    try:
        assert process.stdout is not None
        await asyncio.wait_for(read_settings(process.stdout), timeout=20)
        while b"# Admin" not in await process.stdout.readline():
            pass
        process.send_signal(first)
        # Signals all the way through the shutdown, until the process has exited. Sent with
        # os.kill: send_signal() would reap the child itself, behind the event loop's back.
        waited = asyncio.ensure_future(process.wait())
        while not waited.done():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, then)
            await asyncio.wait({waited}, timeout=0.002)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr
    assert b"# stopped" in stdout
    assert b"Traceback" not in stderr


async def test_a_signal_while_it_starts_is_a_clean_exit(tmp_path: Path) -> None:
    """Ctrl+C while ``python -m upbit_cancel.testing`` still imports: a line and 130."""
    (tmp_path / "sitecustomize.py").write_text(slow_import("upbit_cancel.testing._server"))
    process = await python_m_testing(env={**os.environ, "PYTHONPATH": str(tmp_path)})
    stderr = await ctrl_c_while_importing(process)
    assert process.returncode == 130
    assert stderr.decode().splitlines() == ["python -m upbit_cancel.testing: interrupted"]
