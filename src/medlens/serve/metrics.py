"""Prometheus metrics of one service (prometheus-client, in a registry of its own): requests by route and status,
latency, the compute queue, batch sizes and model compute time, jobs by state."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The service's metrics; ``text()`` is what ``GET /metrics`` answers."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self, queue_length: Callable[[], int], job_states: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "medlens_requests", "HTTP requests by route and status", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "medlens_request_seconds", "Request latency by route", ["method", "route"], buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.compute = Histogram(
            "medlens_model_compute_seconds", "Model compute time per batch", ["model"], buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.batch = Histogram(
            "medlens_batch_size", "Images predicted together", ["model"], buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )  # fmt: skip
        queue = Gauge("medlens_queue_length", "Requests waiting for a compute worker", registry=self.registry)
        queue.set_function(lambda: float(queue_length()))
        self._job_states = job_states
        self.jobs = Gauge("medlens_jobs", "Jobs in the database by state", ["state"], registry=self.registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        self.compute.labels(model).observe(seconds)
        self.batch.labels(model).observe(size)

    def text(self) -> bytes:
        for state, count in self._job_states().items():
            self.jobs.labels(state).set(count)
        return generate_latest(self.registry)
