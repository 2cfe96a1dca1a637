"""The instruments: every event at the one place it happens, counted against what the fake
exchange received, and the ready-made instruments against the real prometheus-client and
OpenTelemetry SDK."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from prometheus_client import CollectorRegistry

from tests.conftest import SessionFor
from tests.helpers import until
from upbit_cancel import (
    BatchCanceller,
    OutcomeUnknownError,
    SlidingWindowLimiter,
)
from upbit_cancel.instrumentation import (
    BudgetWaited,
    Event,
    OperationEnded,
    RequestEnded,
    get_instruments,
    set_instruments,
)
from upbit_cancel.instrumentation._metrics import METRICS, SHORT_BUCKETS
from upbit_cancel.instrumentation.opentelemetry import OpenTelemetryInstrument
from upbit_cancel.instrumentation.prometheus import PrometheusInstrument
from upbit_cancel.testing import FakeUpbit, Faults

TOO_MANY = {"error": {"name": "too_many_requests", "message": "slow down"}}
E = TypeVar("E")
#: What the transport calls each status the fake answered.
OUTCOMES = {200: "ok", 201: "ok", 429: "rate_limited", 500: "server_error"}


class Recorder:
    """An instrument that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, kind)]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    set_instruments([recorder])
    try:
        yield recorder
    finally:
        set_instruments([])


def fast_limiter() -> SlidingWindowLimiter:
    """A limiter whose pauses last milliseconds, for a test that provokes a 429."""
    return SlidingWindowLimiter(30, 0.02, margin=0.0)


async def a_batch_with_a_429(fake: FakeUpbit, session_for: SessionFor) -> tuple[int, int]:
    """100 open orders and a filled one cancelled, the first answer a 429: (ids, attempts)."""
    orders = fake.add_orders(100)
    filled = fake.add_order(state="done")
    fake.queue_response(429, TOO_MANY)
    async with session_for(fake, limiter=fast_limiter()) as session:
        result = await BatchCanceller(session).cancel(uuids=[*orders, filled])
    assert (result.success.count, result.failed.count, result.rate_limited) == (100, 1, 1)
    return 101, len(fake.records)


async def cancelled_after(
    fake: FakeUpbit, session_for: SessionFor, orders: list[str], *, arrived: int
) -> None:
    """Cancel ``orders``, and cancel that task once ``arrived`` requests reached the fake."""
    async with session_for(fake) as session:
        task = asyncio.create_task(BatchCanceller(session).cancel(uuids=orders))
        await fake.wait_for(lambda fake: len(fake.records) >= arrived)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_every_attempt_is_reported_as_the_exchange_received_it(
    fake: FakeUpbit, session_for: SessionFor, recorder: Recorder
) -> None:
    """One RequestEnded per attempt the fake received, with the outcome of its status; one
    BudgetWaited per slot; one OperationEnded with the result's counts."""
    ids, attempts = await a_batch_with_a_429(fake, session_for)
    requests = recorder.of(RequestEnded)
    assert Counter(event.outcome for event in requests) == Counter(
        OUTCOMES[record.status] for record in fake.records
    )
    assert {(e.group, e.method, e.path) for e in requests} == {
        ("default", "DELETE", "/v1/orders/uuids")
    }
    assert all(e.seconds is not None and e.seconds >= 0 for e in requests)
    assert len(recorder.of(BudgetWaited)) == attempts
    [ended] = recorder.of(OperationEnded)
    assert ended == OperationEnded(
        "cancel",
        canceled=100,
        refused=1,
        unresolved=0,
        requests=attempts,
        rate_limited=1,
        seconds=ended.seconds,
        error=None,
    )
    assert ids == 101


async def test_a_request_without_an_answer_is_reported_lost(
    fake: FakeUpbit, session_for: SessionFor, recorder: Recorder
) -> None:
    """Processed, then the connection dropped: sent, no status, outcome unknown."""
    order = fake.add_order()
    fake.faults = Faults(drop_rate=1.0)
    async with session_for(fake, rate_limit_retries=0) as session:
        with pytest.raises(OutcomeUnknownError):
            await session.cancel_orders(uuids=[order])
    [ended] = recorder.of(RequestEnded)
    assert (ended.outcome, ended.status) == ("lost", None)
    assert ended.seconds is not None


async def test_an_operation_cancelled_midway_is_reported_with_every_id(
    fake: FakeUpbit, session_for: SessionFor, recorder: Recorder
) -> None:
    """Cancelled after its first answers: the event says so, and counts every id."""
    orders = fake.add_orders(200)
    fake.faults = Faults(latency_out=0.2)
    await cancelled_after(fake, session_for, orders, arrived=3)
    [ended] = recorder.of(OperationEnded)
    assert ended.error == "CancelledError"
    counted = ended.canceled + ended.refused + ended.unresolved
    assert counted == len(orders)


async def test_an_instrument_that_raises_is_logged_once_and_changes_nothing(
    fake: FakeUpbit, session_for: SessionFor, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("dashboard down")

    recorder = Recorder()
    set_instruments([broken, recorder])
    try:
        await a_batch_with_a_429(fake, session_for)
    finally:
        set_instruments([])
    logged = [record for record in caplog.records if "the library goes on" in record.message]
    assert len(logged) == 1
    assert len(recorder.of(RequestEnded)) == len(fake.records)


def test_instruments_are_checked_when_installed() -> None:
    with pytest.raises(TypeError, match="callable"):
        set_instruments([42])  # type: ignore[list-item]
    assert get_instruments() == ()


async def test_prometheus_counts_what_the_exchange_received(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    registry = CollectorRegistry()
    set_instruments([PrometheusInstrument(registry)])
    try:
        ids, attempts = await a_batch_with_a_429(fake, session_for)
    finally:
        set_instruments([])

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(f"upbit_cancel_{name}", labels)

    received = Counter(OUTCOMES[record.status] for record in fake.records)
    for outcome, count in received.items():
        assert sample("requests_total", group="default", outcome=outcome) == count
    assert sample("requests_total", group="default", outcome="rate_limited") == 1
    assert sample("request_seconds_count", group="default") == attempts
    assert sample("budget_wait_seconds_count", group="default") == attempts
    assert sample("ids_total", operation="cancel", outcome="canceled") == 100
    assert sample("ids_total", operation="cancel", outcome="refused") == 1
    assert sample("ids_total", operation="cancel", outcome="unresolved") == 0
    assert sample("operations_total", operation="cancel", ended="returned") == 1
    assert sample("operation_seconds_count", operation="cancel") == 1
    assert ids == 101


async def test_opentelemetry_records_what_the_exchange_received(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    set_instruments([OpenTelemetryInstrument(provider)])
    try:
        _, attempts = await a_batch_with_a_429(fake, session_for)
    finally:
        set_instruments([])
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "upbit_cancel"
            for metric in scope.metrics:
                points[metric.name] = list(metric.data.data_points)
    # Every metric but the store's (no store here: the limiter is the session's own).
    expected = {f"upbit_cancel.{name}" for name, *_ in METRICS}
    assert set(points) == expected - {"upbit_cancel.budget_store_changes"}

    def value(name: str, **labels: str) -> float:
        [point] = [p for p in points[name] if dict(p.attributes or {}) == labels]
        return float(point.value)

    received = Counter(OUTCOMES[record.status] for record in fake.records)
    for outcome, count in received.items():
        assert value("upbit_cancel.requests", group="default", outcome=outcome) == count
    assert value("upbit_cancel.ids", operation="cancel", outcome="canceled") == 100
    [waits] = points["upbit_cancel.budget_wait_seconds"]
    assert isinstance(waits, HistogramDataPoint)
    assert waits.count == attempts
    assert tuple(waits.explicit_bounds) == SHORT_BUCKETS
    provider.shutdown()


async def test_an_operation_awaited_while_handling_an_error_returns_as_returned(
    fake: FakeUpbit, session_for: SessionFor, recorder: Recorder
) -> None:
    """The kill switch's usual shape: ``except ...: await canceller.cancel(...)``. The error
    being handled is the caller's, not the operation's."""
    orders = fake.add_orders(3)
    async with session_for(fake) as session:
        canceller = BatchCanceller(session)
        try:
            raise KeyError("the strategy failed")
        except KeyError:
            await canceller.cancel(uuids=orders)
            await canceller.cancel_open()
    assert [(e.operation, e.error) for e in recorder.of(OperationEnded)] == [
        ("cancel", None),
        ("cancel_open", None),
    ]


async def test_a_stream_counts_the_ids_it_handed_over(
    fake: FakeUpbit, session_for: SessionFor, recorder: Recorder
) -> None:
    """Run to its end, closed early, and fed by an iterable that raises: each reports every
    id it settled and how it ended."""
    orders = fake.add_orders(100)

    def broken() -> Iterator[str]:
        yield from orders[80:]
        raise RuntimeError("the id source broke")

    async with session_for(fake) as session:
        canceller = BatchCanceller(session)
        async for _ in canceller.stream(uuids=orders[:40]):
            pass
        async with contextlib.aclosing(canceller.stream(uuids=orders[40:80])) as chunks:
            async for _ in chunks:
                break
        with pytest.raises(RuntimeError, match="broke"):
            async for _ in canceller.stream(uuids=broken()):
                pass
    ended = recorder.of(OperationEnded)
    assert [(e.operation, e.error) for e in ended] == [
        ("stream", None),
        ("stream", "GeneratorExit"),
        ("stream", "RuntimeError"),
    ]
    assert (ended[0].canceled, ended[0].refused, ended[0].unresolved) == (40, 0, 0)
    assert ended[1].canceled + ended[1].unresolved == 40
    assert ended[2].canceled == 20


async def test_an_instrument_that_raises_cancelled_error_holds_no_slot(
    fake: FakeUpbit, session_for: SessionFor
) -> None:
    """An instrument's own CancelledError is its bug, not the caller's cancellation: logged,
    and the slots of the requests it was told about are given back."""

    def cancelled(event: Event) -> None:
        raise asyncio.CancelledError

    orders = fake.add_orders(60)
    limiter = SlidingWindowLimiter(3, 0.05, margin=0.0)
    set_instruments([cancelled])
    try:
        async with session_for(fake, limiter=limiter) as session:
            result = await BatchCanceller(session).cancel(uuids=orders)
    finally:
        set_instruments([])
    assert result.success.count == 60
    await until(lambda: limiter.idle)  # a slot never given back would keep it busy for ever


async def test_requests_that_never_got_a_slot_are_reported_not_sent(
    fake: FakeUpbit, session_for: SessionFor, recorder: Recorder
) -> None:
    """A batch cancelled while most of its requests wait for the budget: each attempt that
    never left is a not_sent, and the sent ones are each an ok."""
    orders = fake.add_orders(2000)  # 100 requests: most wait for the budget
    await cancelled_after(fake, session_for, orders, arrived=30)
    await fake.wait_for(lambda fake: fake.in_transit == 0)
    outcomes = Counter(event.outcome for event in recorder.of(RequestEnded))
    assert outcomes["not_sent"] >= 1
    # Every request that reached the exchange was sent (one cancelled on its way may not
    # have reached it); every answer read came from one of them.
    assert outcomes["ok"] <= len(fake.records) <= outcomes["ok"] + outcomes["lost"]
    assert len(recorder.of(BudgetWaited)) >= len(fake.records)


def test_prometheus_has_every_known_series_from_the_start() -> None:
    """An alert on increase() sees the first 418: its series exists, at zero, before it."""
    registry = CollectorRegistry()
    PrometheusInstrument(registry)
    for outcome in ("ok", "rate_limited", "blocked", "not_sent"):
        for group in ("default", "order-cancel-all"):
            labels = {"group": group, "outcome": outcome}
            assert registry.get_sample_value("upbit_cancel_requests_total", labels) == 0
    changed = {"group": "default", "store": "redis", "change": "out_of_reach"}
    assert registry.get_sample_value("upbit_cancel_budget_store_changes_total", changed) == 0
    unresolved = {"operation": "cancel_open", "outcome": "unresolved"}
    assert registry.get_sample_value("upbit_cancel_ids_total", unresolved) == 0
