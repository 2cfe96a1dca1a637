"""An instrument that keeps the library's metrics in ``prometheus-client`` (the ``prometheus``
extra): ``upbit_cancel_requests_total``, ``upbit_cancel_budget_wait_seconds`` and the others
of the metrics page.

Example::

    from prometheus_client import start_http_server
    from upbit_cancel.instrumentation import set_instruments
    from upbit_cancel.instrumentation.prometheus import PrometheusInstrument

    set_instruments([PrometheusInstrument()])
    start_http_server(9108)
"""

from __future__ import annotations

from .._instrument import Event
from ._metrics import LONG_BUCKETS, METRICS, SHORT_BUCKETS, every_series, measurements

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
except ImportError:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "PrometheusInstrument needs prometheus-client: pip install 'upbit-cancel[prometheus]'"
    ) from None

__all__ = ["PrometheusInstrument"]


class PrometheusInstrument:
    """Keeps the library's metrics in ``registry`` (prometheus-client's default registry
    unless given), named ``<namespace>_<metric>``.

    Make one per registry: a second one in the same registry is refused by prometheus-client
    (the names are taken).
    """

    __slots__ = ("_counters", "_histograms")

    def __init__(
        self, registry: CollectorRegistry | None = None, *, namespace: str = "upbit_cancel"
    ) -> None:
        registry = REGISTRY if registry is None else registry
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, Histogram] = {}
        for name, kind, _unit, labels, text in METRICS:
            if kind == "counter":
                self._counters[name] = Counter(
                    name, text, labels, namespace=namespace, registry=registry
                )
            else:
                buckets = LONG_BUCKETS if name.startswith("operation") else SHORT_BUCKETS
                self._histograms[name] = Histogram(
                    name, text, labels, namespace=namespace, registry=registry, buckets=buckets
                )
        # Every series known in advance exists from the start, at zero.
        for name, known in every_series():
            if name in self._counters:
                self._counters[name].labels(**known)
            else:
                self._histograms[name].labels(**known)

    def __call__(self, event: Event) -> None:
        for name, labels, value in measurements(event):
            counter = self._counters.get(name)
            if counter is not None:
                counter.labels(**labels).inc(value)
            else:
                self._histograms[name].labels(**labels).observe(value)

    def __repr__(self) -> str:
        return f"PrometheusInstrument({len(self._counters) + len(self._histograms)} metrics)"
