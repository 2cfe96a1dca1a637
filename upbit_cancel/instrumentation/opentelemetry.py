"""An instrument that records the library's metrics with the OpenTelemetry metrics API (the
``opentelemetry`` extra): ``upbit_cancel.requests``, ``upbit_cancel.budget_wait_seconds`` and
the others of the metrics page. Where they go (OTLP, Prometheus, a console) is the
application's ``MeterProvider``'s business.

Example::

    from upbit_cancel.instrumentation import set_instruments
    from upbit_cancel.instrumentation.opentelemetry import OpenTelemetryInstrument

    set_instruments([OpenTelemetryInstrument()])   # the global MeterProvider
"""

from __future__ import annotations

from .._instrument import Event
from ._metrics import LONG_BUCKETS, METRICS, SHORT_BUCKETS, measurements

try:
    from opentelemetry import metrics
except ImportError:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "OpenTelemetryInstrument needs opentelemetry-api: pip install 'upbit-cancel[opentelemetry]'"
    ) from None

__all__ = ["OpenTelemetryInstrument"]


class OpenTelemetryInstrument:
    """Records the library's metrics on a meter named ``upbit_cancel`` of ``meter_provider``
    (the global one unless given), each named ``upbit_cancel.<metric>``."""

    __slots__ = ("_counters", "_histograms")

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        from .. import __version__

        meter = metrics.get_meter("upbit_cancel", __version__, meter_provider)
        self._counters: dict[str, metrics.Counter] = {}
        self._histograms: dict[str, metrics.Histogram] = {}
        for name, kind, unit, _labels, text in METRICS:
            full = f"upbit_cancel.{name}"
            if kind == "counter":
                self._counters[name] = meter.create_counter(full, unit, text)
            else:
                buckets = LONG_BUCKETS if name.startswith("operation") else SHORT_BUCKETS
                self._histograms[name] = meter.create_histogram(
                    full, unit, text, explicit_bucket_boundaries_advisory=buckets
                )

    def __call__(self, event: Event) -> None:
        for name, labels, value in measurements(event):
            counter = self._counters.get(name)
            if counter is not None:
                counter.add(value, labels)
            else:
                self._histograms[name].record(value, labels)

    def __repr__(self) -> str:
        return f"OpenTelemetryInstrument({len(self._counters) + len(self._histograms)} metrics)"
