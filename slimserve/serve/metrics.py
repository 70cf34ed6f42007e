"""Prometheus metrics of one server, named for what they count (own registry, so several apps can coexist)."""

from __future__ import annotations

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter("slimserve_requests", "HTTP requests answered", ["endpoint", "status"],
                                registry=r)  # fmt: skip
        self.prompt_tokens = Counter("slimserve_prompt_tokens", "prompt tokens prefilled", ["model"], registry=r)
        self.generation_tokens = Counter("slimserve_generation_tokens", "tokens generated", ["model"], registry=r)
        self.queue_depth = Gauge("slimserve_queue_depth", "requests waiting for a slot", ["model"], registry=r)
        self.running = Gauge("slimserve_requests_running", "sequences in the running batch", ["model"], registry=r)
        self.rejected = Counter("slimserve_requests_rejected_queue_full", "429s: the queue was full", ["model"],
                                registry=r)  # fmt: skip
        self.ttft = Histogram("slimserve_time_to_first_token_seconds", "request arrival to first token", ["model"],
                              buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.itl = Histogram("slimserve_inter_token_latency_seconds", "time between a request's tokens", ["model"],
                             buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.batch = Histogram("slimserve_decode_batch_size", "sequences per decode step", ["model"],
                               buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)  # fmt: skip
        self.ready = Gauge("slimserve_ready", "1 when every model is loaded", registry=r)

    # scheduler hooks (called on its thread)
    def queue(self, model: str, depth: int, running: int) -> None:
        self.queue_depth.labels(model).set(depth)
        self.running.labels(model).set(running)

    def step(self, model: str, n: int, _seconds: float) -> None:
        self.batch.labels(model).observe(n)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
