"""The feedback policy and the hold rule: plain arithmetic on explicit times."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upbit_cancel import Feedback, RemainingReq
from upbit_cancel._limiter.feedback import DEFAULT_BLOCK_SECONDS, FeedbackPolicy
from upbit_cancel._limiter.hold import hold_until


def policy() -> FeedbackPolicy:
    return FeedbackPolicy(30, 1.0, rng=random.Random(7))


def pause_after(policy: FeedbackPolicy, granted_at: float, now: float) -> float:
    policy.learn(Feedback(429), granted_at=granted_at, now=now)
    return policy.paused_until - now


def test_concurrent_429s_are_one_incident_and_a_later_one_doubles_the_pause() -> None:
    """429s for requests of one full window count once; a 429 after resuming doubles it.

    Only an answer to a request granted after the last 429 resets the backoff.
    """
    subject = policy()
    first = pause_after(subject, granted_at=0.0, now=0.1)
    second = pause_after(subject, granted_at=0.0, now=0.1)
    subject.learn(Feedback(200), granted_at=0.05, now=0.2)  # sent before the 429: no reset
    third = pause_after(subject, granted_at=1.5, now=1.6)
    subject.learn(Feedback(200), granted_at=5.0, now=5.1)  # sent after it: reset
    fourth = pause_after(subject, granted_at=6.0, now=6.1)
    assert 1.0 <= first <= 1.25
    assert 1.0 <= second <= 1.25
    assert 2.0 <= third <= 2.5
    assert 1.0 <= fourth <= 1.25


def test_429_backoff_is_capped() -> None:
    """However many 429 incidents in a row, one pause lasts at most 8 windows plus jitter."""
    subject = policy()
    pauses = [pause_after(subject, granted_at=10.0 * n + 0.5, now=10.0 * n + 1) for n in range(8)]
    assert max(pauses) <= 8 * 1.25
    assert pauses[-1] >= 8.0


def test_a_429_halves_the_share_until_it_grows_back() -> None:
    """After a 429 only half a window goes out; a tenth of the limit comes back per window."""
    subject = policy()
    subject.learn(Feedback(429), granted_at=0.0, now=0.0)
    assert subject.share(0.0) == 15
    assert subject.share(1.5) == 18
    assert subject.share(10.0) == 30


def test_remaining_zero_pauses_a_window_from_that_request_and_other_groups_do_nothing() -> None:
    """`sec=0` of the default group pauses until a window after the request's grant."""
    subject = policy()
    subject.learn(Feedback(200, RemainingReq("order", 0)), granted_at=1.0, now=1.1)
    assert subject.paused_until == float("-inf")
    subject.learn(Feedback(200, RemainingReq("default", 0)), granted_at=1.0, now=1.1)
    assert subject.paused_until == pytest.approx(2.0)


def test_blocks_and_pauses_are_never_shortened() -> None:
    """A shorter block or pause later leaves the longer one in place."""
    subject = policy()
    subject.learn(Feedback(418, block_seconds=30.0, block_reason="a"), granted_at=0.0, now=0.0)
    subject.learn(Feedback(418, block_seconds=5.0, block_reason="b"), granted_at=0.0, now=1.0)
    assert subject.blocked_until == pytest.approx(30.0)
    assert subject.block_reason == "a"
    assert subject.is_blocked(29.9)
    assert not subject.is_blocked(30.0)
    subject.learn(Feedback(418), granted_at=40.0, now=40.0)
    assert subject.blocked_until == pytest.approx(40.0 + DEFAULT_BLOCK_SECONDS)


@given(
    sent=st.one_of(st.none(), st.floats(0, 10)),
    answer_delay=st.one_of(st.none(), st.floats(0, 10)),
    release_delay=st.floats(0, 10),
    max_transit=st.floats(0, 5),
)
def test_a_hold_covers_every_arrival_its_outcome_allows(
    sent: float | None, answer_delay: float | None, release_delay: float, max_transit: float
) -> None:
    """The slot stays taken until a window after the latest moment the request can arrive."""
    answered = None if sent is None or answer_delay is None else sent + answer_delay
    released = (answered if answered is not None else (sent or 0.0)) + release_delay
    until = hold_until(
        sent_at=sent,
        answered_at=answered,
        released_at=released,
        window=1.0,
        margin=0.01,
        max_transit=max_transit,
    )
    if answered is not None:
        assert until >= answered + 1.0
    elif sent is not None:
        assert until >= released + max_transit + 1.0
    else:
        assert until == released
