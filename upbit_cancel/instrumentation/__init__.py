"""Instrumentation: numbers for a dashboard, from the events the library reports as it works.

Install instruments once, for the whole process::

    from upbit_cancel.instrumentation import set_instruments
    from upbit_cancel.instrumentation.prometheus import PrometheusInstrument

    set_instruments([PrometheusInstrument()])

An instrument is anything called with each event (:class:`Instrument`); the ready-made ones are
:class:`~upbit_cancel.instrumentation.prometheus.PrometheusInstrument` (the ``prometheus``
extra) and :class:`~upbit_cancel.instrumentation.opentelemetry.OpenTelemetryInstrument` (the
``opentelemetry`` extra), each imported only when its module is.
"""

from __future__ import annotations

from .._instrument import (
    BudgetStoreChanged,
    BudgetWaited,
    Event,
    Instrument,
    OperationEnded,
    RequestEnded,
    get_instruments,
    set_instruments,
)

__all__ = [
    "BudgetStoreChanged",
    "BudgetWaited",
    "Event",
    "Instrument",
    "OperationEnded",
    "RequestEnded",
    "get_instruments",
    "set_instruments",
]
