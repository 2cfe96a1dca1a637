"""The metrics both ready-made instruments keep, named once, and what each event adds to them.

Prometheus adds ``_total`` to a counter's name and ``_bucket``/``_sum``/``_count`` to a
histogram's; OpenTelemetry's names put a dot where these have the first underscore.
"""

from __future__ import annotations

from typing import Literal

from .._instrument import BudgetStoreChanged, BudgetWaited, Event, RequestEnded

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
        "Seconds from an attempt's start to its answer, for attempts that were sent",
    ),
    (
        "budget_wait_seconds",
        "histogram",
        "s",
        ("group",),
        "Seconds each request waited for a slot of its group's budget",
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
        "Operations of a BatchCanceller by how they ended (returned, or the exception's name)",
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
        ("operations", {"operation": operation, "ended": event.error or "returned"}, 1.0),
        ("operation_seconds", {"operation": operation}, event.seconds),
    ]
