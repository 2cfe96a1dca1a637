"""The ``upbit-cancel cancel`` command, run in-process against a fake exchange in a thread."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.processes import use_key
from upbit_cancel import (
    BlockedError,
    InvalidIdError,
    ServerError,
    UnresolvedList,
    UnresolvedOrder,
)
from upbit_cancel._cli import main
from upbit_cancel._cli import output as report
from upbit_cancel.testing import FakeUpbit

UNKNOWN_UUID = "cdd92199-2897-4e14-9448-f923320408ad"
WRONG_SECRET = "W" * 40


def cancel(fake: FakeUpbit, *args: str) -> int:
    return main(["cancel", "--base-url", fake.base_url, *args])


def output_json(capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    captured = capsys.readouterr()
    document: dict[str, Any] = json.loads(captured.out)
    return document, captured.err


def test_cancels_uuids_and_reports_json(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str]
) -> None:
    """--uuids cancels every order; stdout is one JSON document with every id; exit 0."""
    uuids = credentials.add_orders(45)
    assert cancel(credentials, "--json", "--uuids", *uuids) == 0
    document, err = output_json(capsys)
    assert set(document) == {
        "success",
        "failed",
        "unresolved",
        "possibly_canceled",
        "requests",
        "rate_limited",
        "elapsed",
    }
    assert [order["uuid"] for order in document["success"]] == uuids
    assert document["success"][0] == {"uuid": uuids[0], "market": "SGD-BTC", "identifier": None}
    assert document["failed"] == document["unresolved"] == document["possibly_canceled"] == []
    assert document["requests"] == 3
    assert document["rate_limited"] == 0
    assert document["elapsed"] >= 0
    assert credentials.state_counts() == {
        "wait": 0,
        "watch": 0,
        "done": 0,
        "cancel": 45,
        "prevented": 0,
    }
    assert "Cancel summary" in err


def test_cancels_identifiers(credentials: FakeUpbit, capsys: pytest.CaptureFixture[str]) -> None:
    """--identifiers cancels by the client's identifiers."""
    uuids = credentials.add_orders(3, identifiers=True)
    identifiers = [credentials.order(uuid).identifier or "" for uuid in uuids]
    assert cancel(credentials, "--json", "--identifiers", *identifiers) == 0
    document, _ = output_json(capsys)
    assert [order["identifier"] for order in document["success"]] == identifiers
    assert all(credentials.state(uuid) == "cancel" for uuid in uuids)


@pytest.mark.parametrize("source", [["-"], ["--file", "-"]], ids=["dash", "file-dash"])
def test_reads_standard_input(
    credentials: FakeUpbit,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    source: list[str],
) -> None:
    """'-' and '--file -' read ids from stdin, skipping blank lines and '#' comments."""
    uuids = credentials.add_orders(3)
    text = f"# orders to cancel\n{uuids[0]}\n\n  {uuids[1]}  \n# {uuids[2]} is kept\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert cancel(credentials, "--json", *source) == 0
    document, _ = output_json(capsys)
    assert [order["uuid"] for order in document["success"]] == uuids[:2]
    assert credentials.state(uuids[2]) == "wait"


def test_reads_identifiers_from_a_file(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--file with --by identifiers; a byte order mark and CRLF line ends are fine."""
    uuids = credentials.add_orders(2, identifiers=True)
    identifiers = [credentials.order(uuid).identifier or "" for uuid in uuids]
    path = tmp_path / "ids.txt"
    path.write_text("\r\n".join(identifiers) + "\r\n", encoding="utf-8-sig")
    assert cancel(credentials, "--json", "--file", str(path), "--by", "identifiers") == 0
    document, _ = output_json(capsys)
    assert [order["identifier"] for order in document["success"]] == identifiers


def test_unknown_and_malformed_ids_exit_1(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown and malformed ids are unresolved, each with its reason: exit 1."""
    (uuid,) = credentials.add_orders(1)
    (filled,) = credentials.add_orders(1, state="done")
    ids = [uuid, filled, UNKNOWN_UUID, "not-a-uuid", uuid]
    assert cancel(credentials, "--json", "--uuids", *ids) == 1
    document, err = output_json(capsys)
    assert [order["uuid"] for order in document["success"]] == [uuid]
    assert [order["uuid"] for order in document["failed"]] == [filled]
    unknown, malformed = document["unresolved"]
    assert unknown == {"id": UNKNOWN_UUID, "error": None}
    assert malformed["id"] == "not-a-uuid"
    assert malformed["error"]["type"] == "InvalidIdError"
    assert "malformed uuid" in malformed["error"]["message"]
    assert "1 duplicates dropped" in err
    assert "Unresolved ids (2)" in err
    assert "unknown to the exchange" in err


def test_summary_goes_to_stdout_without_json(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json the summary is the command's output; stderr only says what is starting."""
    uuids = credentials.add_orders(2)
    assert cancel(credentials, "--uuids", *uuids) == 0
    captured = capsys.readouterr()
    assert "Cancel summary" in captured.out
    assert "success" in captured.out
    assert "Unresolved" not in captured.out
    assert captured.err.strip() == f"Cancelling 2 uuids through {credentials.base_url}"


def test_ids_are_shown_as_given(credentials: FakeUpbit, capsys: pytest.CaptureFixture[str]) -> None:
    """Ids that look like rich markup or emoji codes are printed verbatim."""
    assert cancel(credentials, "--identifiers", "[bold]a[/bold]", ":smile:") == 1
    out = capsys.readouterr().out
    assert "[bold]a[/bold]" in out
    assert ":smile:" in out


def test_lists_at_most_ten_unresolved_ids(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str]
) -> None:
    """A long list of unresolved ids is cut after ten, saying how many more there are."""
    ids = [f"bad-{number}" for number in range(13)]
    assert cancel(credentials, "--uuids", *ids) == 1
    out = capsys.readouterr().out
    assert "bad-9" in out
    assert "bad-10" not in out
    assert "... and 3 more (--json lists them all)" in out
    assert "13 InvalidIdError" in out


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["text", "json"])
def test_quiet_prints_only_the_json(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str], json_flag: list[str]
) -> None:
    """--quiet drops the summary and the starting line; --json still writes the document."""
    uuids = credentials.add_orders(1)
    assert cancel(credentials, "--quiet", *json_flag, "--uuids", *uuids) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    if json_flag:
        assert json.loads(captured.out)["success"][0]["uuid"] == uuids[0]
    else:
        assert captured.out == ""


def test_progress_bar_only_when_asked_off_a_terminal(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str]
) -> None:
    """Off a terminal there is no progress bar unless --progress forces one (on stderr)."""
    uuids = credentials.add_orders(150)
    assert cancel(credentials, "--quiet", "--uuids", *uuids[:120]) == 0
    assert capsys.readouterr().err == ""
    assert cancel(credentials, "--quiet", "--progress", "--uuids", *uuids[120:]) == 0
    captured = capsys.readouterr()
    assert "30/30 ids" in captured.err
    assert captured.out == ""


def test_plain_text_without_rich(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without rich installed the summary is aligned plain text and there is no bar."""
    monkeypatch.setattr(report, "HAVE_RICH", False)
    uuids = credentials.add_orders(1)
    assert cancel(credentials, "--progress", "--uuids", *uuids, "not-a-uuid") == 1
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert "Cancel summary" in out
    assert "  success           1  canceled by this run" in out
    assert "  id          reason" in out
    assert captured.err.splitlines() == [f"Cancelling 2 uuids through {credentials.base_url}"]


def test_retry_ambiguous(credentials: FakeUpbit, capsys: pytest.CaptureFixture[str]) -> None:
    """A 5xx leaves its ids unresolved with the status; --retry-ambiguous retries and succeeds."""
    uuids = credentials.add_orders(2)
    credentials.queue_response(503, "<html>busy</html>", content_type="text/html")
    assert cancel(credentials, "--json", "--uuids", uuids[0]) == 1
    document, _ = output_json(capsys)
    (entry,) = document["unresolved"]
    assert entry["error"]["type"] == "ServerError"
    assert entry["error"]["status"] == 503
    assert entry["error"]["name"] is None

    credentials.queue_response(503, "<html>busy</html>", content_type="text/html")
    assert cancel(credentials, "--json", "--retry-ambiguous", "--uuids", uuids[1]) == 0
    document, _ = output_json(capsys)
    assert document["success"][0]["uuid"] == uuids[1]
    assert document["requests"] == 2


def test_refused_credentials_never_print_the_secret(
    fake_in_thread: FakeUpbit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused key: one line saying what to check, exit 2; the JSON still says it all."""
    use_key(monkeypatch, fake_in_thread.access_key, WRONG_SECRET)
    uuids = fake_in_thread.add_orders(45)
    assert cancel(fake_in_thread, "--json", "--uuids", *uuids) == 2
    captured = capsys.readouterr()
    error = json.loads(captured.out)["unresolved"][0]["error"]
    assert error["type"] == "AuthenticationError"
    assert (error["status"], error["name"]) == (401, "jwt_verification")
    assert captured.err.count("\n") == 2  # "Cancelling ..." and the one line
    assert "refused the API key (jwt_verification" in captured.err
    assert "check UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY" in captured.err
    assert WRONG_SECRET not in captured.out + captured.err
    assert fake_in_thread.secret_key not in captured.out + captured.err


def test_a_key_without_permission_is_one_line_too(
    fake_in_thread: FakeUpbit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """out_of_scope: one line naming the permission to grant, exit 2, no table."""
    access_key, secret_key = fake_in_thread.add_credentials(can_order=False)
    use_key(monkeypatch, access_key, secret_key)
    uuids = fake_in_thread.add_orders(45)
    assert cancel(fake_in_thread, "--uuids", *uuids) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert '"Make Orders" permission' in captured.err
    assert "Unresolved" not in captured.err


def test_one_id_is_one_uuid_and_an_empty_input_says_so(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Plurals are right; an empty file cancels nothing and says so."""
    uuid = credentials.add_order()
    assert cancel(credentials, "--uuids", uuid) == 0
    assert "Cancelling 1 uuid through" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\n")
    assert cancel(credentials, "--file", str(empty)) == 0
    assert f"nothing to cancel: {empty} holds no ids" in capsys.readouterr().err
    assert credentials.records[-1].ids == (uuid,)


def test_the_version_is_the_packages(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the installed version, also upbit_cancel.__version__."""
    import importlib.metadata

    import upbit_cancel

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    version = importlib.metadata.version("upbit-cancel")
    assert capsys.readouterr().out == f"upbit-cancel {version}\n"
    assert upbit_cancel.__version__ == version


@pytest.mark.parametrize(
    "argv",
    [
        ["cancel"],
        ["cancel", "--uuids", UNKNOWN_UUID, "--file", "ids.txt"],
        ["cancel", "-", "--identifiers", "a"],
        ["cancel", "--file", "ids.txt", "-"],
        ["cancel", "--region", "us", "--uuids", UNKNOWN_UUID],
        ["cancel", "--by", "uuid", "-"],
    ],
    ids=["no-source", "two-sources", "option-and-stdin", "file-and-stdin", "region", "by"],
)
def test_argument_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """No source, two sources or a bad choice are refused by the parser with status 2, in one
    line that points at the help."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("upbit-cancel cancel: ")
    assert lines[0].endswith("(see upbit-cancel cancel --help)")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--uuids", UNKNOWN_UUID, "-"], "'-' (standard input) cannot be combined with --uuids"),
        (["--identifiers", "a", "-"], "cannot be combined with --identifiers"),
        (["--uuids", UNKNOWN_UUID, "--by", "uuids"], "--by applies to --file and -"),
        (["--base-url", "http://example.com", "--uuids", UNKNOWN_UUID], "plain http"),
        (["--base-url", "ftp://127.0.0.1", "--uuids", UNKNOWN_UUID], "base_url must look like"),
        (["--file", "no-such-file.txt"], "cannot read no-such-file.txt"),
        (["--uuids", UNKNOWN_UUID, "--market", "SGD-BTC"], "--market applies to --all-open"),
        (["--all-open", "--market", " "], "--market needs a market code"),
        (["--all-open", "--market", "sgd-btc"], "--market needs a market code"),
        (["--uuids", UNKNOWN_UUID, "--no-batch-cancel"], "--no-batch-cancel applies to --all-open"),
    ],
    ids=[
        "dash-in-uuids",
        "dash-in-identifiers",
        "by-with-uuids",
        "http-remote",
        "scheme",
        "missing-file",
        "market-without-all-open",
        "empty-market",
        "lower-case-market",
        "no-batch-cancel-without-all-open",
    ],
)
def test_usage_errors_exit_2(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Bad combinations, base URLs or files exit 2 with a one-line message, no traceback."""
    monkeypatch.chdir(tmp_path)
    use_key(monkeypatch, "A" * 40, "S" * 40)
    assert main(["cancel", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("upbit-cancel cancel: ")
    assert message in captured.err
    assert len(captured.err.splitlines()) == 1
    assert "S" * 40 not in captured.err


@pytest.mark.parametrize(
    ("access_key", "secret_key", "missing"),
    [
        (None, None, "UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY"),
        ("A" * 40, None, "UPBIT_SECRET_KEY"),
        ("", "S" * 40, "UPBIT_ACCESS_KEY"),
    ],
    ids=["both", "secret", "empty-access"],
)
def test_missing_credentials_exit_2(
    access_key: str | None,
    secret_key: str | None,
    missing: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without both keys in the environment nothing is read or sent: exit 2, naming the missing."""
    for name, value in (("UPBIT_ACCESS_KEY", access_key), ("UPBIT_SECRET_KEY", secret_key)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setattr("sys.stdin", io.StringIO(UNKNOWN_UUID))
    assert main(["cancel", "-"]) == 2
    err = capsys.readouterr().err
    assert f"set {missing} in the environment" in err
    assert "never from arguments" in err
    assert "S" * 40 not in err


def test_keys_are_stripped(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newline around a key, as from ``$(cat key.txt)`` with a trailing blank line, is ignored."""
    monkeypatch.setenv("UPBIT_SECRET_KEY", f"{credentials.secret_key}\n")
    uuids = credentials.add_orders(1)
    assert cancel(credentials, "--quiet", "--uuids", *uuids) == 0
    assert credentials.state(uuids[0]) == "cancel"


def test_short_secret_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret too short to be Upbit's is refused before anything is sent, without echoing it."""
    use_key(monkeypatch, "A" * 40, "short-secret")
    assert main(["cancel", "--uuids", UNKNOWN_UUID]) == 2
    err = capsys.readouterr().err
    assert "secret_key has 12 characters" in err
    assert "short-secret" not in err


def test_a_base_url_password_is_never_printed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base URL carrying a password is refused on stderr without repeating the password."""
    use_key(monkeypatch, "A" * 40, "S" * 40)
    argv = ["cancel", "--base-url", "https://bot:hunter2@example.com/api", "--uuids", UNKNOWN_UUID]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "password" in captured.err
    assert "hunter2" not in captured.err + captured.out


def test_error_json_carries_status_name_and_block_time() -> None:
    """Errors become JSON with their type and message, plus status, name and retry_after if any."""
    blocked = BlockedError("blocked", name="blocked", retry_after=30.0)
    assert report.error_json(blocked) == {
        "type": "BlockedError",
        "message": "blocked",
        "status": 418,
        "name": "blocked",
        "retry_after": 30.0,
    }
    server = ServerError("down", status=502, name=None)
    assert report.error_json(server) == {
        "type": "ServerError",
        "message": "down",
        "status": 502,
        "name": None,
    }
    assert report.error_json(None) is None


def test_unresolved_breakdown_counts_each_reason() -> None:
    """The summary line counts unresolved ids per reason, in order of first appearance."""
    unresolved = UnresolvedList(
        (
            UnresolvedOrder("a", None),
            UnresolvedOrder("b", ServerError("down", status=502, name=None)),
            UnresolvedOrder("c", None),
        )
    )
    assert report.unresolved_breakdown(unresolved) == "2 unknown to the exchange, 1 ServerError"


def test_confirm_adds_final_states_and_exits_0_when_nothing_is_left(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str]
) -> None:
    """--confirm: the JSON carries each id's state; a final-state table; exit 0."""
    uuids = credentials.add_orders(25)
    filled = credentials.add_order(state="done")
    assert cancel(credentials, "--json", "--confirm", "--uuids", *uuids, filled) == 0
    document, err = output_json(capsys)
    assert document["states"] == {**dict.fromkeys(uuids, "cancel"), filled: "done"}
    assert document["still_open"] == []
    assert "Final states" in err
    assert "filled (before the cancel, or before it took effect)" in err


def test_confirm_exits_1_when_a_state_cannot_be_learned(
    fake_in_thread: FakeUpbit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key without the order query permission: canceled, but unknown states: exit 1."""
    access_key, secret_key = fake_in_thread.add_credentials(can_query=False)
    use_key(monkeypatch, access_key, secret_key)
    uuids = fake_in_thread.add_orders(3)
    assert cancel(fake_in_thread, "--confirm", "--uuids", *uuids) == 1
    err = capsys.readouterr().out
    assert "OutOfScopeError" in err
    assert all(fake_in_thread.state(uuid) == "cancel" for uuid in uuids)


def test_all_open_in_one_market(credentials: FakeUpbit, capsys: pytest.CaptureFixture[str]) -> None:
    """--all-open --market M cancels that market's open orders only."""
    target = credentials.add_orders(45, market="SGD-BTC")
    other = credentials.add_orders(5, market="SGD-ETH")
    assert cancel(credentials, "--all-open", "--market", "SGD-BTC", "--confirm", "--json") == 0
    document, err = output_json(capsys)
    assert sorted(order["uuid"] for order in document["success"]) == sorted(target)
    assert "every open order of SGD-BTC" in err
    assert all(credentials.state(uuid) == "wait" for uuid in other)


def test_all_open_without_the_order_query_permission_is_one_line(
    fake_in_thread: FakeUpbit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing refused for the key: one line naming the permission, exit 2. The batch cancel,
    which needs no query permission, canceled the wait orders (the summary says so); the watch
    ones stay."""
    access_key, secret_key = fake_in_thread.add_credentials(can_query=False)
    use_key(monkeypatch, access_key, secret_key)
    uuids = fake_in_thread.add_orders(5)
    watch = fake_in_thread.add_orders(2, state="watch")
    assert cancel(fake_in_thread, "--all-open") == 2
    captured = capsys.readouterr()
    assert re.search(r"by batch cancel\s+5\s", captured.out)
    [line] = captured.err.splitlines()[1:]
    assert '"order query" for --confirm and --all-open' in line
    assert all(fake_in_thread.state(uuid) == "cancel" for uuid in uuids)
    assert all(fake_in_thread.state(uuid) == "watch" for uuid in watch)


def test_all_open_by_list_only_without_the_order_query_permission_cancels_nothing(
    fake_in_thread: FakeUpbit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    access_key, secret_key = fake_in_thread.add_credentials(can_query=False)
    use_key(monkeypatch, access_key, secret_key)
    uuids = fake_in_thread.add_orders(5)
    assert cancel(fake_in_thread, "--all-open", "--no-batch-cancel") == 2
    [line] = capsys.readouterr().err.splitlines()[1:]
    assert '"order query" for --confirm and --all-open' in line
    assert all(fake_in_thread.state(uuid) == "wait" for uuid in uuids)
    assert {record.group for record in fake_in_thread.records} == {"default"}


def test_all_open_when_the_exchange_cannot_be_reached_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listens at the base URL: one line, exit 1, no traceback."""
    use_key(monkeypatch, "A" * 40, "S" * 40)
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = bound.getsockname()[1]
        status = main(["cancel", "--base-url", f"http://127.0.0.1:{port}", "--all-open"])
    assert status == 1
    captured = capsys.readouterr()
    [announce, line] = captured.err.splitlines()
    assert announce.startswith("Cancelling every open order")
    assert line.startswith("upbit-cancel cancel: could not list the open orders: could not connect")
    assert "S" * 40 not in captured.err


def test_confirm_still_exits_1_for_a_malformed_id(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in a kill list is never a success, confirmed or not."""
    uuids = credentials.add_orders(2)
    assert cancel(credentials, "--confirm", "--uuids", *uuids, "not-a-uuid") == 1
    out = capsys.readouterr().out
    assert "InvalidIdError" in out
    assert all(credentials.state(uuid) == "cancel" for uuid in uuids)


def test_json_is_written_for_an_empty_input(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Nothing to cancel: exit 0, and a JSON document with empty lists for the reader."""
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing today\n\n")
    assert cancel(credentials, "--json", "--file", str(empty)) == 0
    document, err = output_json(capsys)
    assert document["success"] == document["failed"] == document["unresolved"] == []
    assert "nothing to cancel" in err


def test_json_says_why_the_open_orders_could_not_be_listed(
    fake_in_thread: FakeUpbit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    access_key, secret_key = fake_in_thread.add_credentials(can_query=False)
    use_key(monkeypatch, access_key, secret_key)
    assert cancel(fake_in_thread, "--all-open", "--json") == 2
    document, err = output_json(capsys)
    assert document["error"]["type"] == "OutOfScopeError"
    assert document["success"] == []
    assert '"order query"' in err


def test_the_base_url_comes_from_the_environment_too(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """UPBIT_BASE_URL, which the quick start exports, points the command at the fake."""
    monkeypatch.setenv("UPBIT_BASE_URL", credentials.base_url)
    uuids = credentials.add_orders(3)
    assert main(["cancel", "--json", "--uuids", *uuids]) == 0
    document, err = output_json(capsys)
    assert len(document["success"]) == 3
    assert f"through {credentials.base_url}" in err


def test_all_open_counts_the_listing_requests_and_says_when_nothing_is_open(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str]
) -> None:
    """One batch cancel and one page of the listing, both counted."""
    credentials.add_orders(3, market="SGD-ETH")
    assert cancel(credentials, "--all-open", "--market", "SGD-BTC", "--json") == 0
    document, err = output_json(capsys)
    assert document["requests"] == 2
    assert "the exchange listed no open orders in SGD-BTC" in err


def test_all_open_reports_what_the_batch_cancel_did(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str]
) -> None:
    uuids = credentials.add_orders(40)
    assert cancel(credentials, "--all-open", "--json") == 0
    document, _ = output_json(capsys)
    assert sorted(document["batch_canceled"]) == sorted(uuids)
    assert document["batch_unanswered"] == 0
    assert all(credentials.state(uuid) == "cancel" for uuid in uuids)


def test_an_empty_account_name_is_a_usage_error(
    credentials: FakeUpbit, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cancel(credentials, "--account", " ", "--uuids", UNKNOWN_UUID) == 2
    assert "--account needs a name" in capsys.readouterr().err


def test_two_commands_share_one_budget_through_redis(
    fake_in_thread: FakeUpbit, redis_url: str, tmp_path: Path
) -> None:
    """Two `upbit-cancel cancel --redis` at once on one account: 30 a second in all, no 429."""
    uuids = fake_in_thread.add_orders(1_200)
    env = {name: value for name, value in os.environ.items() if not name.startswith("UPBIT_")}
    env |= {
        "UPBIT_ACCESS_KEY": fake_in_thread.access_key,
        "UPBIT_SECRET_KEY": fake_in_thread.secret_key,
        "PYTHONWARNINGS": "error",
    }
    script = Path(sys.executable).with_name("upbit-cancel")
    processes = []
    for index in range(2):
        ids = tmp_path / f"ids-{index}.txt"
        ids.write_text("\n".join(uuids[index::2]))
        command = [str(script), "cancel", "--base-url", fake_in_thread.base_url]
        command += ["--redis", redis_url, "--account", "main", "--quiet", "--file", str(ids)]
        processes.append(subprocess.Popen(command, env=env, stderr=subprocess.PIPE))
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    assert all(fake_in_thread.state(uuid) == "cancel" for uuid in uuids)
    assert fake_in_thread.max_in_window() <= 30
    assert fake_in_thread.stats()["rejected_429"] == 0


def test_a_long_id_folds_instead_of_squeezing_the_reasons() -> None:
    """A line holding two uuids is one malformed id: it folds, the reason stays readable."""
    long_id = f"{UNKNOWN_UUID}, {UNKNOWN_UUID}"
    table = report.unresolved_table(
        UnresolvedList((UnresolvedOrder(long_id, InvalidIdError(f"malformed uuid {long_id!r}")),))
    )
    assert table is not None
    out = io.StringIO()
    report.render(table, out)
    lines = out.getvalue().splitlines()
    assert len(lines) < 12, lines
    assert any("InvalidIdError: malformed uuid" in line for line in lines)


def test_unprintable_characters_of_an_id_are_shown_escaped() -> None:
    assert report.printable("abc\x00def\x1b") == "abc\\x00def\\x1b"
    assert report.printable("fake-000001") == "fake-000001"


@pytest.mark.parametrize("store", ["host", "redis"])
def test_two_commands_never_send_two_batch_cancels_within_two_seconds(
    fake_in_thread: FakeUpbit, redis_url: str, tmp_path: Path, store: str
) -> None:
    """Two `upbit-cancel cancel --all-open` at once on one account, each with its batch lane,
    sharing the budget through the host's file or through Redis: at the fake, at most one
    batch cancel in any 2 s and 30 default requests in any second, no 429 in either group."""
    uuids = fake_in_thread.add_orders(1_500, market="SGD-BTC")
    uuids += fake_in_thread.add_orders(1_500, market="SGD-ETH")
    env = {name: value for name, value in os.environ.items() if not name.startswith("UPBIT_")}
    env |= {
        "UPBIT_ACCESS_KEY": fake_in_thread.access_key,
        "UPBIT_SECRET_KEY": fake_in_thread.secret_key,
        "UPBIT_CANCEL_STATE_DIR": str(tmp_path),
        "PYTHONWARNINGS": "error",
    }
    script = Path(sys.executable).with_name("upbit-cancel")
    shared = ["--redis", redis_url, "--account", "main"] if store == "redis" else []
    processes = []
    for market in ("SGD-BTC", "SGD-ETH"):
        command = [str(script), "cancel", "--base-url", fake_in_thread.base_url, *shared]
        command += ["--quiet", "--all-open", "--market", market]
        processes.append(subprocess.Popen(command, env=env, stderr=subprocess.PIPE))
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    assert all(fake_in_thread.state(uuid) == "cancel" for uuid in uuids)
    batches = [record for record in fake_in_thread.records if record.group == "order-cancel-all"]
    assert len(batches) >= 2
    assert fake_in_thread.max_in_window(2.0, group="order-cancel-all") == 1
    assert fake_in_thread.max_in_window() <= 30
    assert fake_in_thread.stats()["rejected_429"] == 0
