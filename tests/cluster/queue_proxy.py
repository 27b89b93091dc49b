"""Knative's queue-proxy request metrics for one revision pod, as Knative ≥ 1.21 exposes them to Prometheus.

Follows knative/serving ``pkg/queue/request_metric.go`` @ knative-v1.21.0…HEAD: the histogram
``kn.serving.invocation.duration`` (seconds, buckets 0.005…10, attribute ``http.response.status_code``) is
recorded around the user container (after the logger agent, which sits in front of it), probes excluded.
The OpenTelemetry Prometheus exporter (``vendor/knative.dev/pkg/observability/metrics/prometheus_enabled.go``,
underscore escaping with unit suffixes) exposes it as ``kn_serving_invocation_duration_seconds_{bucket,sum,
count}{http_response_status_code}``; the revision's identity is on ``target_info`` (resource attributes), not on
the series: Prometheus gets ``namespace``, ``revision``, … from the PodMonitor's relabelling (here: the
file_sd labels of ``scrape_targets.py``). The exporter's ``otel_scope_*`` labels and ``kn_serving_queue_depth``
(only recorded with a containerConcurrency limit) are left out. Each revision pod serves its metrics on its own
port, like queue-proxy's ``:9091/metrics``.
"""

from __future__ import annotations

import bisect
import threading

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

LATENCY_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
METRIC = "kn_serving_invocation_duration_seconds"


class RevisionMetrics:
    """The queue-proxy of one revision pod: records requests, serves ``/metrics`` on 127.0.0.1."""

    def __init__(self, namespace: str, service: str, configuration: str, revision: str, pod: str) -> None:
        self._resource = {"k8s_namespace_name": namespace, "k8s_pod_name": pod, "k8s_container_name": "queue-proxy",
                          "service_name": "queue-proxy", "kn_service_name": service,
                          "kn_configuration_name": configuration, "kn_revision_name": revision}
        self._lock = threading.Lock()
        self._series: dict[str, list] = {}  # status code -> [bucket counts..., count, sum]
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)
        self._server, self._thread = start_http_server(0, addr="127.0.0.1", registry=self._registry)
        self.port = self._server.server_port

    def record(self, status_code: int, seconds: float) -> None:
        with self._lock:
            series = self._series.setdefault(str(status_code), [0] * len(LATENCY_BOUNDS) + [0, 0.0])
            index = bisect.bisect_left(LATENCY_BOUNDS, seconds)  # bucket "le" is inclusive
            if index < len(LATENCY_BOUNDS):
                series[index] += 1
            series[-2] += 1
            series[-1] += seconds

    def collect(self):
        target = GaugeMetricFamily("target_info", "Target metadata", labels=list(self._resource))
        target.add_metric(list(self._resource.values()), 1)
        yield target
        family = HistogramMetricFamily(METRIC, "The duration of task execution", labels=["http_response_status_code"])
        with self._lock:
            for code, series in sorted(self._series.items()):
                cumulative, buckets = 0, []
                for bound, count in zip(LATENCY_BOUNDS, series):
                    cumulative += count
                    buckets.append((repr(float(bound)), cumulative))
                buckets.append(("+Inf", series[-2]))
                family.add_metric([code], buckets, sum_value=series[-1])
        yield family

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
