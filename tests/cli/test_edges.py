"""The command line never shows a traceback: interrupted while importing, an output encoding
that cannot hold an id, a file larger than memory, a terminal of no width; and its exit status
says what the docs say."""

from __future__ import annotations

import asyncio
import os
import resource
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from tests.cli.processes import (
    SCRIPT,
    Server,
    ctrl_c_while_importing,
    python_m_testing,
    run_cancel,
    slow_import,
)
from tests.cli.test_cancel import cancel
from upbit_cancel._cli import main
from upbit_cancel.testing import FakeUpbit

ROOT = Path(__file__).resolve().parents[2]


async def test_ctrl_c_while_the_command_is_still_importing_is_a_clean_exit(
    tmp_path: Path,
) -> None:
    """Ctrl+C before anything heavy is imported: one line and status 130, no traceback."""
    (tmp_path / "sitecustomize.py").write_text(slow_import("upbit_cancel._models"))
    env = {name: value for name, value in os.environ.items() if not name.startswith("UPBIT_")}
    env["PYTHONPATH"] = str(tmp_path)
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "demo",
        "--orders",
        "5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    stderr = await ctrl_c_while_importing(process)
    assert process.returncode == 130
    assert b"Traceback" not in stderr
    assert b"interrupted" in stderr


async def test_an_id_the_output_encoding_cannot_hold_is_escaped(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ASCII terminal and an id with ``é``: the summary is written, the id escaped."""
    monkeypatch.setenv("PYTHONIOENCODING", "ascii")
    finished = await run_cancel(server, "--uuids", server.uuids[0], "caf\u00e9-order")
    assert finished.returncode == 1
    assert "Cancel summary" in finished.stdout
    assert "caf\\xe9-order" in finished.stdout


def _little_memory() -> None:
    """In the child: 2 GiB of address space at most, so that reading a file whole fails fast."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_a_file_larger_than_memory_is_refused_line_by_line() -> None:
    """/dev/zero holds no line end: the command says the line is too long, exit 2, with the
    memory of a small machine (``ulimit -v``)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("UPBIT_")}
    env.update(UPBIT_ACCESS_KEY="A" * 40, UPBIT_SECRET_KEY="S" * 40)
    finished = subprocess.run(
        [str(SCRIPT), "cancel", "--base-url", "http://127.0.0.1:9", "--file", "/dev/zero"],
        env=env,
        capture_output=True,
        timeout=60,
        preexec_fn=_little_memory,
        check=False,
    )
    assert finished.returncode == 2
    [line] = finished.stderr.decode().splitlines()
    assert "/dev/zero" in line
    assert "longer than" in line


def test_a_long_line_in_a_file_is_named(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A line no id could fill: which line, and what is wrong, exit 2; nothing sent."""
    path = tmp_path / "ids.txt"
    path.write_text(credentials.add_order() + "\n" + "x" * 100_000 + "\n")
    assert cancel(credentials, "--file", str(path)) == 2
    assert "line 2" in capsys.readouterr().err
    assert credentials.records == []


def test_all_open_shows_progress_when_asked(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str]
) -> None:
    """--all-open --progress: a progress bar on standard error, as for ids."""
    credentials.add_orders(45)
    assert cancel(credentials, "--quiet", "--all-open", "--progress") == 0
    assert "45/" in capsys.readouterr().err


def exit_statuses() -> list[tuple[int, str]]:
    """The rows of the exit-status table of docs/cli.md: each status and what it means."""
    page = (ROOT / "docs" / "cli.md").read_text()
    table = page.split("### Exit status", 1)[1].split("\n\n", 2)[1]
    rows: list[tuple[int, str]] = []
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.extend((int(status), cells[1]) for status in cells[0].split(", "))
    return rows


def test_with_confirm_a_malformed_id_exits_as_the_docs_say(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str]
) -> None:
    """--confirm with every order canceled but a malformed id: the status is the documented
    one (1: the order that id was meant for may still be open), and a line says why."""
    uuids = credentials.add_orders(3)
    status = cancel(credentials, "--confirm", "--uuids", *uuids, "not-a-uuid")
    assert all(credentials.state(uuid) == "cancel" for uuid in uuids)
    [documented] = [row for row, meaning in exit_statuses() if "could not be an order" in meaning]
    assert status == documented == 1
    assert "1 id could not be an order's" in capsys.readouterr().err


def test_the_exit_status_table_says_which_status_wins() -> None:
    page = (ROOT / "docs" / "cli.md").read_text()
    section = page.split("### Exit status", 1)[1].split("###", 1)[0]
    assert "wins" in section
    assert {status for status, _ in exit_statuses()} == {0, 1, 2, 130, 143}


def test_a_terminal_of_no_width_still_shows_the_summary(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """COLUMNS=0 is no width at all: the summary is still written, at a sensible width."""
    monkeypatch.setenv("COLUMNS", "0")
    uuids = credentials.add_orders(2)
    assert cancel(credentials, "--uuids", *uuids) == 0
    out = capsys.readouterr().out
    assert "Cancel summary" in out
    assert "success" in out


async def test_fake_server_prints_lines_a_shell_can_eval(tmp_path: Path) -> None:
    """--env: ``export UPBIT_...=...`` lines, which ``cancel`` reads as they are."""
    process = await python_m_testing("--port", "0", "--env")
    try:
        assert process.stdout is not None
        lines = [await asyncio.wait_for(process.stdout.readline(), timeout=20) for _ in range(3)]
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), timeout=20)
    exported = {}
    for line in lines:
        words = shlex.split(line.decode())
        assert words[0] == "export"
        name, _, value = words[1].partition("=")
        exported[name] = value
    assert set(exported) == {"UPBIT_BASE_URL", "UPBIT_ACCESS_KEY", "UPBIT_SECRET_KEY"}
    assert exported["UPBIT_BASE_URL"].startswith("http://127.0.0.1:")


def test_every_fake_server_option_says_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    """--help describes every option, with its default."""
    with pytest.raises(SystemExit):
        main(["fake-server", "--help"])
    options = capsys.readouterr().out.split("options:", 1)[1]
    text = " ".join(options.split())
    for option in (
        "--host",
        "--port",
        "--orders",
        "--market",
        "--policy",
        "--limit",
        "--window",
        "--cancel-all-limit",
        "--cancel-all-window",
        "--unknown-ids",
        "--latency",
        "--jitter",
        "--error-rate",
        "--drop-rate",
        "--block-after",
        "--block-seconds",
        "--seed",
        "--identifiers",
        "--plain-text-429",
        "--uuids-file",
        "--env",
    ):
        described = text.split(option, 1)[1].split(" --", 1)[0]
        assert "default" in described, option
