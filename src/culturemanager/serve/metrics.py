"""The server's Prometheus metrics, in a registry of its own (one per app, so two servers in one process, as in
the tests, never share counts). `GET /metrics` renders them in the Prometheus text format.

    culturemanager_requests_total{endpoint,status}   answered HTTP requests
    culturemanager_request_seconds{endpoint}         latency histogram, arrival to last byte
    culturemanager_errors_total{kind}                bad_request, unauthorized, not_found, overloaded, timeout,
                                                     upstream, internal
    culturemanager_batch_rows / _batch_requests      texts and requests per model batch (histograms)
    culturemanager_batch_adapters                    distinct adapters per batch (base model included)
    culturemanager_batch_seconds                     time of one batch in the model
    culturemanager_routed_total{culture,how}         texts per culture; how = router, forced or base
    culturemanager_queue_depth                       requests waiting for the model
    culturemanager_upstream_requests_total{status}   requests forwarded to the upstream server (status or error)

Run: imported by serve/app.py; no entry point of its own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024)
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
ENDPOINTS = {"/v1/completions", "/v1/chat/completions", "/v1/classify", "/v1/models", "/health", "/metrics"}


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("culturemanager_requests", "Answered HTTP requests", ["endpoint", "status"],
                                registry=r)
        self.latency = Histogram("culturemanager_request_seconds", "Request latency, arrival to last byte",
                                 ["endpoint"], buckets=SECONDS, registry=r)
        self.errors = Counter("culturemanager_errors", "Requests answered with an error, by kind", ["kind"],
                              registry=r)
        self.batch_rows = Histogram("culturemanager_batch_rows", "Texts per model batch", buckets=SIZES,
                                    registry=r)
        self.batch_requests = Histogram("culturemanager_batch_requests", "Requests per model batch",
                                        buckets=SIZES, registry=r)
        self.batch_adapters = Histogram("culturemanager_batch_adapters",
                                        "Distinct adapters (the base model included) per model batch",
                                        buckets=(1, 2, 3, 4, 6, 8, 16, 32), registry=r)
        self.batch_seconds = Histogram("culturemanager_batch_seconds", "Time of one batch in the model",
                                       buckets=SECONDS, registry=r)
        self.routed = Counter("culturemanager_routed", "Texts per answering culture", ["culture", "how"],
                              registry=r)
        self.queue = Gauge("culturemanager_queue_depth", "Requests waiting for the model", registry=r)
        self.upstream = Counter("culturemanager_upstream_requests", "Requests forwarded upstream", ["status"],
                                registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe(self, path: str, status: int, seconds: float) -> None:
        endpoint = path if path in ENDPOINTS else "other"
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        self.latency.labels(endpoint=endpoint).observe(seconds)
