"""``upbit-cancel watchdog`` and ``--keys``: what they refuse, before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from upbit_cancel._cli import main
from upbit_cancel._cli.pockets import KeyFileError, read_key_file
from upbit_cancel.testing import FakeUpbit

KEY_A = "a" * 40
KEY_B = "b" * 40
#: Never in any message.
SECRET_A = "Q" * 40
SECRET_B = "R" * 40


def key_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "keys"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_key_file_names_its_pockets(tmp_path: Path) -> None:
    """One pocket a line, named or numbered; comments and blank lines skipped."""
    path = key_file(tmp_path, f"# pockets\n{KEY_A} {SECRET_A} main\n\n{KEY_B} {SECRET_B}\n")
    pockets = read_key_file(str(path))
    assert [(pocket.name, pocket.access_key) for pocket in pockets] == [
        ("main", KEY_A),
        ("pocket-2", KEY_B),
    ]
    assert SECRET_A not in repr(pockets)


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        (f"{KEY_A} {SECRET_A}\n", 0o640, "chmod 600"),
        (f"{KEY_A} {SECRET_A}\n", 0o604, "chmod 600"),
        ("# nothing\n", 0o600, "holds no key pair"),
        (f"{KEY_A}\n", 0o600, "line 1 .*access_key secret_key"),
        (f"{KEY_A} {SECRET_A} x y\n", 0o600, "line 1"),
        (f"{KEY_A} {SECRET_A} a/b\n", 0o600, "name is 1 to 32"),
        (f"{KEY_A} {SECRET_A} one\n{KEY_B} {SECRET_B} one\n", 0o600, "line 2 of .*: the name one"),
        (f"{KEY_A} {SECRET_A}\n{KEY_A} {SECRET_B}\n", 0o600, "line 2 of .*: this access key"),
    ],
)
def test_a_key_file_that_cannot_be_used_is_refused(
    tmp_path: Path, text: str, mode: int, message: str
) -> None:
    """Readable by others, empty, malformed or ambiguous: refused with what to do, never
    quoting a secret."""
    path = key_file(tmp_path, text, mode)
    with pytest.raises(KeyFileError, match=message) as caught:
        read_key_file(str(path))
    assert SECRET_A not in str(caught.value)
    assert SECRET_B not in str(caught.value)


def test_a_missing_key_file_is_one_line(tmp_path: Path) -> None:
    """A key file that is not there is said so."""
    with pytest.raises(KeyFileError, match="cannot read"):
        read_key_file(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--after", "0"], "positive number of seconds"),
        (["--after", "soon"], "a number of seconds"),
        (["--after", "1", "--market", "sgd-btc"], "upper case"),
        (["--after", "1", "--account", "x", "--keys", "k"], "each pocket's budget"),
        (["--after", "1", "--heartbeat", "redis://h:1/0#bad name"], "name"),
        (["--after", "1", "--base-url", "ftp://example.com"], "base_url"),
    ],
)
def test_the_watchdog_refuses_bad_usage(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    arguments: list[str],
    message: str,
) -> None:
    """Bad usage is status 2 and one line saying what to give."""
    monkeypatch.setenv("UPBIT_ACCESS_KEY", KEY_A)
    monkeypatch.setenv("UPBIT_SECRET_KEY", SECRET_A)
    if "--heartbeat" not in arguments:
        arguments = ["--heartbeat", str(tmp_path / "hb"), *arguments]
    with pytest.raises(SystemExit) as exited:
        raise SystemExit(main(["watchdog", *arguments]))
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert message.split(" ")[0] in error or pytest.fail(error)
    assert "Traceback" not in error
    assert len(error.strip().splitlines()) == 1


def test_the_watchdog_needs_a_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No key in the environment and no --keys: status 2, naming both ways."""
    monkeypatch.delenv("UPBIT_ACCESS_KEY", raising=False)
    monkeypatch.delenv("UPBIT_SECRET_KEY", raising=False)
    assert main(["watchdog", "--heartbeat", str(tmp_path / "hb"), "--after", "1"]) == 2
    error = capsys.readouterr().err
    assert "UPBIT_ACCESS_KEY" in error
    assert "--keys" in error


def test_an_unreadable_heartbeat_is_refused_at_the_start(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fake_in_thread: FakeUpbit,
) -> None:
    """A heartbeat that cannot be read (a directory here) is status 2, nothing sent."""
    monkeypatch.setenv("UPBIT_ACCESS_KEY", fake_in_thread.access_key)
    monkeypatch.setenv("UPBIT_SECRET_KEY", fake_in_thread.secret_key)
    status = main(
        [
            "watchdog",
            "--heartbeat",
            str(tmp_path),
            "--after",
            "1",
            "--base-url",
            fake_in_thread.base_url,
        ]
    )
    assert status == 2
    assert "is not a regular file" in capsys.readouterr().err
    assert fake_in_thread.records == []


def test_keys_apply_to_all_open_only(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``cancel --keys`` without --all-open: ids belong to one pocket."""
    path = key_file(tmp_path, f"{KEY_A} {SECRET_A}\n")
    assert main(["cancel", "--keys", str(path), "--uuids", "x"]) == 2
    assert "--keys applies to --all-open" in capsys.readouterr().err


def test_the_watchdog_refuses_a_refused_key_before_watching(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fake_in_thread: FakeUpbit,
) -> None:
    """A wrong secret is status 2 at the start, with what to check; nothing is awaited."""
    monkeypatch.setenv("UPBIT_ACCESS_KEY", fake_in_thread.access_key)
    monkeypatch.setenv("UPBIT_SECRET_KEY", SECRET_A)
    status = main(
        [
            "watchdog",
            "--heartbeat",
            str(tmp_path / "hb"),
            "--after",
            "1",
            "--base-url",
            fake_in_thread.base_url,
        ]
    )
    assert status == 2
    error = capsys.readouterr().err
    assert "refused the API key" in error
    assert SECRET_A not in error


def test_a_key_file_with_a_broken_secret_names_its_line(tmp_path: Path) -> None:
    """A secret too short to be one is refused with its line, never shown."""
    path = key_file(tmp_path, f"{KEY_A} {SECRET_A}\n{KEY_B} short\n")
    with pytest.raises(KeyFileError, match=r"line 2 of .*secret key is not one"):
        read_key_file(str(path))


def test_a_default_name_taken_says_so(tmp_path: Path) -> None:
    """A line without a name whose default is taken by another line's name is told apart."""
    path = key_file(tmp_path, f"{KEY_A} {SECRET_A} pocket-2\n{KEY_B} {SECRET_B}\n")
    with pytest.raises(KeyFileError, match="given to it by default"):
        read_key_file(str(path))
