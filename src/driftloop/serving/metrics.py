"""Prometheus metrics of the gateway, per model and per serving version."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GatewayMetrics:
    """The gateway's own collectors, in a registry of their own (one per gateway)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "driftloop_requests", "Prediction requests by model, version, endpoint and outcome",
            ["model", "version", "endpoint", "outcome"], registry=self.registry,
        )
        self.latency = Histogram(
            "driftloop_request_latency_seconds", "Time to score a request, by model, version and endpoint",
            ["model", "version", "endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.canary_percent = Gauge(
            "driftloop_canary_traffic_percent", "Share of requests routed to the canary", ["model"],
            registry=self.registry,
        )
        self.serving_version = Gauge(
            "driftloop_serving_version", "Version served per endpoint (default | canary)", ["model", "endpoint"],
            registry=self.registry,
        )
        self.fast_path = Gauge(
            "driftloop_fast_path", "1 when the endpoint's version scores with its verified ONNX form, 0 when with "
            "its Pipeline", ["model", "endpoint"], registry=self.registry,
        )
        self.load_failures = Counter(
            "driftloop_model_load_failures", "Versions that failed to load (checksum, unpickling)", ["model", "version"],
            registry=self.registry,
        )
        self.payload_log_dropped = Counter(
            "driftloop_payload_log_dropped", "Payload log events dropped (queue full or receiver failed)",
            ["reason"], registry=self.registry,
        )
        self.payload_log_sent = Counter(
            "driftloop_payload_log_sent", "Payload log events delivered", registry=self.registry,
        )
