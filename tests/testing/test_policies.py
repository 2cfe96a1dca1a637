"""The fake exchange's rate-limit policies, driven with explicit times."""

from __future__ import annotations

import doctest
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upbit_cancel.testing import (
    FixedWindowPolicy,
    SlidingWindowPolicy,
    TokenBucketPolicy,
    _policies,
    make_policy,
)

# Times as multiples of 1/64 s keep the arithmetic exact, so the properties below test the
# policies' rules rather than floating-point rounding.
TICK = 1 / 64
ticks = st.lists(st.integers(min_value=0, max_value=64 * 5), min_size=1, max_size=200).map(
    lambda values: [value * TICK for value in sorted(values)]
)
limits = st.integers(min_value=1, max_value=40)
windows = st.sampled_from([0.25, 0.5, 1.0, 2.0])


def admitted_times(policy: object, times: list[float]) -> list[float]:
    assert isinstance(policy, SlidingWindowPolicy | FixedWindowPolicy | TokenBucketPolicy)
    return [now for now in times if policy.admit(now)]


def test_docstring_examples() -> None:
    """The examples in the policies' docstrings hold."""
    assert doctest.testmod(_policies).failed == 0


def test_make_policy_builds_each_kind() -> None:
    """Each policy name builds its class with the given limit and window."""
    assert isinstance(make_policy("sliding", 3, 1.0), SlidingWindowPolicy)
    assert isinstance(make_policy("fixed", 3, 1.0), FixedWindowPolicy)
    bucket = make_policy("bucket", 3, 2.0)
    assert isinstance(bucket, TokenBucketPolicy)
    assert (bucket.limit, bucket.window) == (3, 2.0)


@pytest.mark.parametrize(("limit", "window"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_policies_refuse_nonsense(limit: int, window: float) -> None:
    """A limit below 1 or a non-positive window is refused."""
    with pytest.raises(ValueError, match="must be"):
        SlidingWindowPolicy(limit, window)


def test_make_policy_refuses_unknown_name() -> None:
    """An unknown policy name is refused, naming the valid ones."""
    with pytest.raises(ValueError, match="sliding"):
        make_policy("leaky", 1, 1.0)  # type: ignore[arg-type]


def test_sliding_admits_limit_then_refuses_until_oldest_leaves() -> None:
    """Sliding: the limit is reached, then one slot frees exactly a window after each admit."""
    policy = SlidingWindowPolicy(3, 1.0)
    assert [policy.admit(t) for t in (0.0, 0.2, 0.4, 0.9)] == [True, True, True, False]
    assert policy.remaining(0.99) == 0
    assert policy.remaining(1.0) == 1
    assert policy.admit(1.0)
    assert not policy.admit(1.1)
    assert policy.admit(1.2)
    assert policy.remaining(5.0) == 3


def test_sliding_refusals_do_not_consume_budget() -> None:
    """Sliding: refused requests do not push the window forward."""
    policy = SlidingWindowPolicy(1, 1.0)
    assert policy.admit(0.0)
    assert not any(policy.admit(t) for t in (0.25, 0.5, 0.75, 0.999))
    assert policy.admit(1.0)


float_times = st.lists(
    st.floats(min_value=0.0, max_value=10.0, allow_nan=False), min_size=1, max_size=200
).map(sorted)


@given(
    times=float_times,
    limit=limits,
    window=st.floats(min_value=0.001, max_value=3.0, allow_nan=False),
)
def test_sliding_never_exceeds_limit_in_any_window(
    times: list[float], limit: int, window: float
) -> None:
    """Sliding: no half-open window of the policy's length holds more than limit admits."""
    admitted = admitted_times(SlidingWindowPolicy(limit, window), times)
    # A fullest window can always be slid right until it starts at an admitted time.
    for start in admitted:
        assert sum(1 for t in admitted if 0 <= t - start < window) <= limit


@given(times=ticks, limit=limits, window=windows)
def test_sliding_admits_whenever_window_has_room(
    times: list[float], limit: int, window: float
) -> None:
    """Sliding: a request is refused only when limit admits already sit in its window."""
    policy = SlidingWindowPolicy(limit, window)
    admitted: list[float] = []
    for now in times:
        room = sum(1 for t in admitted if now - t < window) < limit
        assert policy.admit(now) == room
        if room:
            admitted.append(now)


def test_fixed_window_anchors_at_first_request() -> None:
    """Fixed: the window starts at the first request, and the next at the first one after it."""
    policy = FixedWindowPolicy(2, 1.0)
    assert [policy.admit(t) for t in (0.25, 0.5, 0.75, 1.24)] == [True, True, False, False]
    assert policy.remaining(1.24) == 0
    assert policy.remaining(1.25) == 2
    # 1.25 ends the first window; the next is anchored at 2.0, not at 1.25.
    assert [policy.admit(t) for t in (2.0, 2.5, 2.75, 3.0)] == [True, True, False, True]


@given(times=ticks, limit=limits, window=windows)
def test_fixed_admits_exactly_limit_per_anchored_window(
    times: list[float], limit: int, window: float
) -> None:
    """Fixed: each anchored window admits its first limit requests and refuses the rest."""
    policy = FixedWindowPolicy(limit, window)
    anchor: float | None = None
    in_window = 0
    for now in times:
        if anchor is None or now - anchor >= window:
            anchor, in_window = now, 0
        expected = in_window < limit
        assert policy.admit(now) == expected
        in_window += expected


@given(times=ticks, limit=limits, window=windows)
def test_fixed_never_exceeds_twice_limit_in_any_window(
    times: list[float], limit: int, window: float
) -> None:
    """Fixed: any window holds at most 2 * limit admits (straddling two anchored windows)."""
    admitted = admitted_times(FixedWindowPolicy(limit, window), times)
    for start in admitted:
        assert sum(1 for t in admitted if 0 <= t - start < window) <= 2 * limit


def test_idle_bucket_admits_limit_at_once() -> None:
    """Bucket: a full bucket admits limit requests at the same instant, then refills steadily."""
    policy = TokenBucketPolicy(30, 1.0)
    assert sum(policy.admit(0.0) for _ in range(40)) == 30
    assert policy.remaining(0.0) == 0
    assert policy.remaining(0.5) == 15
    assert sum(policy.admit(0.5) for _ in range(20)) == 15
    assert policy.remaining(100.0) == 30


def test_bucket_lets_through_almost_twice_limit_in_one_window() -> None:
    """Bucket: up to 2 * limit - 1 admits fit in one window, unlike the other policies."""
    policy = TokenBucketPolicy(4, 1.0)
    times = [0.0] * 4 + [0.25, 0.5, 0.75]
    assert all(policy.admit(t) for t in times)
    assert len(times) == 2 * 4 - 1


@given(times=ticks, limit=limits, window=windows)
def test_bucket_admits_at_most_capacity_plus_refill(
    times: list[float], limit: int, window: float
) -> None:
    """Bucket: over any interval, admits <= limit + floor(elapsed * rate)."""
    admitted = admitted_times(TokenBucketPolicy(limit, window), times)
    rate = limit / window
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            count = j - i + 1
            assert count <= limit + math.floor((admitted[j] - start) * rate)


@given(gap=st.integers(min_value=0, max_value=640), limit=limits, window=windows)
def test_bucket_refill_is_capped_at_capacity(gap: int, limit: int, window: float) -> None:
    """Bucket: however long it idles, a drained bucket never holds more than limit tokens."""
    policy = TokenBucketPolicy(limit, window)
    while policy.admit(0.0):
        pass
    later = gap * TICK
    expected = min(limit, math.floor(later * limit / window))
    assert policy.remaining(later) == expected
