"""What a warm-up's handshakes teach the pacing: the path's floor before any request."""

from __future__ import annotations

import pytest

from upbit_cancel._limiter.core import HANDSHAKE_HORIZON, HoldRule, Pacer, Settings


def pacer(hold: HoldRule = "arrival") -> Pacer:
    return Pacer(Settings.checked(30, 1.0, margin=0.01, max_transit=2.0, hold=hold))


def test_handshakes_give_a_floor_before_any_request() -> None:
    """Three TLS 1.3 handshakes (two round trips each) of 0.20, 0.21 and 0.22 s: round trips
    of 0.100 to 0.110 s, a floor of 0.100 lowered by twice the spread (0.090)."""
    rules = pacer()
    assert rules.estimate(10.0) is None
    for started, took in ((0.0, 0.20), (1.0, 0.21), (2.0, 0.22)):
        rules.observe_handshake(started, started + took, 2)
    floor = rules.estimate(3.0)
    assert floor is not None
    assert abs(floor - (0.100 - 2 * 0.010)) < 1e-9


def test_requests_speak_first_and_handshakes_fill_in() -> None:
    """Once the requests give a floor it counts (they are what the budget counts); before,
    and after it lapses or is forgotten, the handshakes' floor does."""
    rules = pacer()
    for at in range(3):
        rules.observe_handshake(float(at), at + 0.4, 2)  # 0.2 s round trips
    assert rules.estimate(2.0) == pytest.approx(0.2)
    for at in range(8):
        rules.path.observe(at * 0.2, at * 0.2 + 0.15)  # 0.15 s round trips over 1.4 s
    assert rules.estimate(2.0) == pytest.approx(0.15)
    rules.path.forget()
    assert rules.estimate(2.0) == pytest.approx(0.2)


def test_a_handshake_floor_lapses_and_is_kept_apart_from_the_answer_rule() -> None:
    """Handshakes older than the horizon say nothing; with hold="answer" no floor is used."""
    rules = pacer()
    for at in range(3):
        rules.observe_handshake(float(at), at + 0.2, 2)
    assert rules.estimate(2.5) is not None
    assert rules.estimate(2.3 + HANDSHAKE_HORIZON + 1) is None
    answer = pacer("answer")
    for at in range(3):
        answer.observe_handshake(float(at), at + 0.2, 2)
    assert answer.estimate(2.5) is None


def test_nonsense_handshakes_are_ignored() -> None:
    """A handshake that ends before it starts, or of no round trip, teaches nothing."""
    rules = pacer()
    for at in range(3):
        rules.observe_handshake(float(at), at - 0.1, 2)
        rules.observe_handshake(float(at), at + 0.1, 0)
    assert rules.estimate(3.0) is None
