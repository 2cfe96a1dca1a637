"""The metrics both ready-made instruments keep, named once, and what each event adds to them.

Prometheus adds ``_total`` to a counter's name and ``_bucket``/``_sum``/``_count`` to a
histogram's; OpenTelemetry's names put a dot where these have the first underscore.
"""

from __future__ import annotations

from typing import Literal, get_args

from .. import _errors
from .._instrument import (
    BudgetStoreChanged,
    BudgetWaited,
    Event,
    Operation,
    RequestEnded,
    RequestOutcome,
    StoreChange,
)
from .._limiter.core import GROUPS

Kind = Literal["counter", "histogram"]

#: Every metric: its name after ``upbit_cancel_``, kind, unit, labels and help.
METRICS: tuple[tuple[str, Kind, str, tuple[str, ...], str], ...] = (
    (
        "requests",
        "counter",
        "{request}",
        ("group", "outcome"),
        "Attempts of signed requests by rate-limit group and outcome (ok, rate_limited = 429, "
        "blocked = 418, refused, server_error, lost, not_sent)",
    ),
    (
        "request_seconds",
        "histogram",
        "s",
        ("group",),
        "Seconds from an attempt's slot to its end (its answer, or the moment it was given "
        "up), for attempts that were sent",
    ),
    (
        "budget_wait_seconds",
        "histogram",
        "s",
        ("group",),
        "Seconds each attempt that got a slot waited for it",
    ),
    (
        "budget_store_changes",
        "counter",
        "{change}",
        ("group", "store", "change"),
        "A shared budget's store (host, redis) out of reach, back, or its state lost",
    ),
    (
        "ids",
        "counter",
        "{id}",
        ("operation", "outcome"),
        "Ids by operation and outcome (canceled, refused, unresolved), counted when the "
        "operation ends",
    ),
    (
        "operations",
        "counter",
        "{operation}",
        ("operation", "ended"),
        "Operations of a BatchCanceller by how they ended: returned, cancelled, closed (a "
        "stream closed early), the name of the library's error, or other",
    ),
    (
        "operation_seconds",
        "histogram",
        "s",
        ("operation",),
        "Seconds from an operation's start to its end",
    ),
)

#: Buckets for request and budget-wait seconds (a 30-per-second budget, paths up to 1 s).
SHORT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Buckets for operations (seconds to minutes: 30 requests of 20 ids a second).
LONG_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

#: The names the ``ended`` label takes for an exception (any other is ``other``).
_ENDED = {"CancelledError": "cancelled", "GeneratorExit": "closed"}
_LIBRARY_ERRORS = frozenset(
    name
    for name in _errors.__all__
    if isinstance(getattr(_errors, name), type) and issubclass(getattr(_errors, name), Exception)
)


def ended(error: str | None) -> str:
    """The ``ended`` label of an operation that ended by ``error`` (a bounded set)."""
    if error is None:
        return "returned"
    if error in _ENDED:
        return _ENDED[error]
    return error if error in _LIBRARY_ERRORS else "other"


def every_series() -> list[tuple[str, dict[str, str]]]:
    """Every series whose labels are known in advance (all of them but ``ended`` other than
    ``returned``), to be made at zero: an alert on ``increase()`` sees the first event."""
    series: list[tuple[str, dict[str, str]]] = []
    for group in GROUPS:
        series += [
            ("requests", {"group": group, "outcome": outcome})
            for outcome in get_args(RequestOutcome)
        ]
        series += [("request_seconds", {"group": group}), ("budget_wait_seconds", {"group": group})]
        series += [
            ("budget_store_changes", {"group": group, "store": store, "change": change})
            for store in ("host", "redis")
            for change in get_args(StoreChange)
        ]
    for operation in get_args(Operation):
        series += [
            ("ids", {"operation": operation, "outcome": outcome})
            for outcome in ("canceled", "refused", "unresolved")
        ]
        series += [
            ("operations", {"operation": operation, "ended": "returned"}),
            ("operation_seconds", {"operation": operation}),
        ]
    return series


#: Each measurement of an event: (metric name, labels, value).
Measurement = tuple[str, dict[str, str], float]


def measurements(event: Event) -> list[Measurement]:
    """What ``event`` adds to the metrics of :data:`METRICS`."""
    if isinstance(event, RequestEnded):
        found = [("requests", {"group": event.group, "outcome": event.outcome}, 1.0)]
        if event.seconds is not None:
            found.append(("request_seconds", {"group": event.group}, event.seconds))
        return found
    if isinstance(event, BudgetWaited):
        return [("budget_wait_seconds", {"group": event.group}, event.seconds)]
    if isinstance(event, BudgetStoreChanged):
        labels = {"group": event.group, "store": event.store, "change": event.change}
        return [("budget_store_changes", labels, 1.0)]
    operation = event.operation
    return [
        ("ids", {"operation": operation, "outcome": "canceled"}, float(event.canceled)),
        ("ids", {"operation": operation, "outcome": "refused"}, float(event.refused)),
        ("ids", {"operation": operation, "outcome": "unresolved"}, float(event.unresolved)),
        ("operations", {"operation": operation, "ended": ended(event.error)}, 1.0),
        ("operation_seconds", {"operation": operation}, event.seconds),
    ]
