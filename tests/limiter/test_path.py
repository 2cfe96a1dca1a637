"""Pacing that knows the network: the path estimate, and a path that changes mid-run."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upbit_cancel import BatchCanceller, SlidingWindowLimiter, UpbitSession
from upbit_cancel._limiter.path import PathObserver
from upbit_cancel.testing import FakeUpbit, Faults, RequestRecord


def test_no_estimate_until_enough_round_trips_over_a_window_nor_after_idle() -> None:
    """Eight round trips over a window are needed; an estimate lapses five seconds later."""
    observer = PathObserver(span=1.0)
    for n in range(7):
        observer.observe(n / 2, n / 2 + 0.3)
        assert observer.estimate(n / 2 + 0.3) is None
    observer.observe(3.5, 3.8)
    estimate = observer.estimate(3.8)
    assert estimate is not None
    assert estimate.floor == pytest.approx(0.3)
    assert estimate.samples == 8
    assert observer.estimate(8.81) is None
    observer.forget()
    assert observer.estimate(3.8) is None


def test_a_single_burst_is_no_witness_of_the_path() -> None:
    """Round trips that all came back within a window give no estimate, however many."""
    observer = PathObserver(span=1.0)
    for n in range(30):
        observer.observe(0.0, 0.05 + n / 1000)
    assert observer.estimate(0.1) is None


@given(st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=8, max_size=40))
def test_the_floor_is_never_above_the_least_recent_round_trip(trips: list[float]) -> None:
    """Whatever was seen, the floor is at most the least of the round trips kept."""
    observer = PathObserver(span=1.0)
    answers = [n * 0.15 + trip for n, trip in enumerate(trips)]
    # Answers are seen as they arrive, in time order.
    for at, n in sorted((at, n) for n, at in enumerate(answers)):
        observer.observe(n * 0.15, at)
    now = max(answers)
    estimate = observer.estimate(now)
    kept = [trip for trip, at in zip(trips, answers, strict=True) if at >= now - observer.horizon]
    if estimate is not None:
        assert 0.0 <= estimate.floor <= min(kept) + 1e-12
    spread = max(at for at in answers if at >= now - observer.horizon) - min(
        at for at in answers if at >= now - observer.horizon
    )
    if len(kept) >= observer.needed and spread >= observer.span:
        assert estimate is not None


def incidents(records: list[RequestRecord], window: float) -> list[list[float]]:
    """The 429s, grouped: a 429 more than a window after the previous one starts a new group."""
    groups: list[list[float]] = []
    for arrival in sorted(record.arrival for record in records if record.status == 429):
        if groups and arrival - groups[-1][-1] <= window:
            groups[-1].append(arrival)
        else:
            groups.append([arrival])
    return groups


@pytest.mark.processes
@pytest.mark.parametrize(("before", "after"), [(0.15, 0.01), (0.01, 0.15)])
async def test_a_path_that_changes_speed_costs_at_most_one_incident(
    before: float, after: float
) -> None:
    """Latency steps mid-run: at most one incident of 429s, then safe pacing to the end."""
    limit, window = 10, 0.5
    faults = Faults(latency_in=before, latency_out=before, jitter_in=0.005)
    async with FakeUpbit(limit=limit, window=window, faults=faults, seed=1) as fake:
        uuids = fake.add_orders(20 * 120)
        limiter = SlidingWindowLimiter(limit, window, max_transit=0.5)
        async with UpbitSession(
            fake.access_key, fake.secret_key, base_url=fake.base_url, limiter=limiter
        ) as session:
            batch = asyncio.ensure_future(BatchCanceller(session).cancel(uuids=uuids))
            # Long enough on the first path for the limiter to know it well.
            await fake.wait_for(lambda fake: fake.received >= 50)
            fake.faults = Faults(latency_in=after, latency_out=after, jitter_in=0.005)
            result = await batch
        assert result.success.count == len(uuids)
        records = fake.records
        found = incidents(records, window)
        assert len(found) <= 1, found
        if found:
            # Safe again right after: nothing refused in the last half of the run.
            halfway = records[len(records) // 2].arrival
            assert found[0][-1] < halfway
