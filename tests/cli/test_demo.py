"""The ``upbit-cancel demo`` command."""

from __future__ import annotations

import random

import pytest

from upbit_cancel import BatchResult, OrderEntry, OrderList
from upbit_cancel._cli import main
from upbit_cancel._cli.demo import Measured, Plan, plan_ids, problems
from upbit_cancel.testing import FakeUpbit


def row(out: str, label: str) -> list[str]:
    """The cells of the summary row that starts with ``label``."""
    for line in out.splitlines():
        if line.strip().startswith(label):
            return line.strip()[len(label) :].split()
    raise AssertionError(f"no row {label!r} in:\n{out}")


def test_small_demo_cancels_everything(capsys: pytest.CaptureFixture[str]) -> None:
    """Every open order is canceled, every id accounted for, nothing left open: exit 0."""
    assert main(["demo", "--orders", "40", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    # 40 open, 1 filled, 1 canceled, 1 unknown and 3 malformed ids, 1 duplicate. The
    # confirmation finds the unknown one not_found: refused, like the closed ones.
    assert row(out, "success")[:2] == ["40", "40"]
    assert row(out, "failed")[:2] == ["3", "3"]
    assert row(out, "unresolved")[:2] == ["3", "3"]
    assert "3 InvalidIdError" in out
    assert row(out, "total")[:2] == ["46", "46"]
    # 3 cancels, then the questions of the confirmation; the exchange saw each of them.
    sent, seen = row(out, "requests sent")[:2]
    assert int(sent) > 3
    assert sent == seen
    assert row(out, "429 answers")[0] == "0"
    assert row(out, "left open")[0] == "0"
    assert "Final states" in out
    text = " ".join(out.split())  # paragraphs are wrapped to the terminal
    assert "All 40 open orders closed" in text
    assert "every state matches the exchange's" in text


def test_demo_across_windows_keeps_to_the_limit(capsys: pytest.CaptureFixture[str]) -> None:
    """More than 30 requests take a second window; no window at the exchange holds more than 30."""
    assert main(["demo", "--orders", "600", "--jitter", "0.002"]) == 0
    out = capsys.readouterr().out
    # 600 + 15 + 15 + 6 unknown valid ids: 32 requests of up to 20, plus any retried after a 429.
    requests = int(row(out, "requests sent")[0])
    assert requests >= 32
    assert row(out, "requests sent")[1] == str(requests)
    assert f"ideal floor(({requests} - 1) / 30) = {(requests - 1) // 30} s" in out
    assert int(row(out, "busiest 1 s")[0]) <= 30
    client_429, _, _, counted, _, _, sent = row(out, "429 answers")
    assert client_429 == counted.rstrip(",") == sent
    assert row(out, "left open")[0] == "0"


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--orders", "-1"], "--orders must be 0 or more"), (["--jitter", "-0.1"], "--jitter")],
)
def test_demo_refuses_negative_settings(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Negative orders or jitter exit 2 with a message."""
    assert main(["demo", *argv]) == 2
    assert message in capsys.readouterr().err


async def test_plan_mixes_every_kind_of_id(fake: FakeUpbit) -> None:
    """The plan holds open, closed, unknown, malformed and repeated ids, shuffled reproducibly."""
    plan = plan_ids(fake, 200, random.Random(7))
    assert (plan.open, plan.filled, plan.canceled, plan.unknown, plan.malformed) == (
        200,
        5,
        5,
        2,
        3,
    )
    assert len(plan.ids) == 215 + plan.duplicates
    assert len(set(plan.ids)) == plan.distinct == 215
    assert fake.state_counts() == {"wait": 200, "watch": 0, "done": 5, "cancel": 5, "prevented": 0}
    again = plan_ids(FakeUpbit(seed=0), 200, random.Random(7))
    assert again.ids == plan.ids


def test_a_mismatch_is_reported() -> None:
    """Counts that differ from the plan, or orders left open, are called out."""
    plan = Plan(
        ids=(),
        seeded=frozenset(),
        open=2,
        filled=1,
        canceled=1,
        unknown=1,
        malformed=3,
        duplicates=1,
    )
    entry = OrderEntry("cdd92199-2897-4e14-9448-f923320408ad", "SGD-BTC")
    result = BatchResult(success=OrderList((entry,)))
    measured = Measured(
        result=result,
        session_requests=1,
        session_rate_limited=0,
        exchange_requests=1,
        exchange_rate_limited=0,
        max_in_window=1,
        left_open=1,
        filled_in_race=0,
        contradicted=0,
    )
    assert problems(plan, measured) == [
        "1 canceled, expected 2",
        "0 failed, expected 3",
        "0 unresolved, expected 3",
        "1 orders left open",
    ]
