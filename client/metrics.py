"""Client-side Prometheus metrics (prometheus-client), exposable during long runs."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

REGISTRY = CollectorRegistry()
REQUEST_SECONDS = Histogram("gatta_client_request_seconds", "Latency of one inference request",
                            ["protocol"], registry=REGISTRY,
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
ERRORS = Counter("gatta_client_errors_total", "Failed images or requests, by kind", ["kind"], registry=REGISTRY)
PREDICTIONS = Counter("gatta_client_predictions_total", "Top-1 predictions received, by class", ["label"],
                      registry=REGISTRY)


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose the client's metrics at http://host:port/metrics (background thread)."""
    start_http_server(port, addr=host, registry=REGISTRY)
