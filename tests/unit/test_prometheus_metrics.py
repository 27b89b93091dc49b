"""PrometheusMetrics without a Prometheus: its settings, its PromQL, its counting, and every way a request fails.

Counting against a real Prometheus is in tests/integration/test_prometheus_metrics.py.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from driftloop.errors import ConfigError, UnavailableError
from driftloop.rollout.metrics import ServingTarget
from driftloop.rollout.prometheus import FAMILIES, PrometheusError, PrometheusMetrics, counter_increase
from tests.conftest import free_port


@contextmanager
def http_answering(status: int, body: bytes, content_type: str) -> Iterator[tuple[str, list[dict]]]:
    """An HTTP server on 127.0.0.1 giving one fixed answer (a web UI, an auth proxy); yields its URL and the
    headers of the requests it got."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(dict(self.headers))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("url", ["prometheus-k8s.monitoring:9090", "http://", "ftp://prometheus:9090"])
def test_a_url_without_http_scheme_and_host_is_refused(url):
    with pytest.raises(ConfigError, match=f"Prometheus URL must start with http:// or https:// .*got '{url}'"):
        PrometheusMetrics(url, "serving", "churn")


def test_an_unknown_series_family_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="unknown Prometheus series 'istio'; choose one of: knative, "
                                          "knative-legacy, runtime, auto"):
        PrometheusMetrics("http://prometheus:9090", "serving", "churn", series="istio")


def test_unreachable_prometheus_is_one_line():
    metrics = PrometheusMetrics(f"http://127.0.0.1:{free_port()}", "serving", "churn")
    with pytest.raises(UnavailableError, match=r"^cannot reach Prometheus at http://127\.0\.0\.1:\d+: .*refused"):
        metrics.mark()


def test_a_prometheus_that_never_answers_times_out():
    with socket.socket() as silent:  # accepts connections (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        metrics = PrometheusMetrics(f"http://127.0.0.1:{silent.getsockname()[1]}", "serving", "churn", timeout=0.3)
        with pytest.raises(PrometheusError, match=r"did not answer within 0\.3 s"):
            metrics.since(0.0, [ServingTarget(1, 100, "churn-predictor-00001")])


def test_a_url_that_is_not_prometheus_says_so():
    with http_answering(200, b"<!doctype html>\n<html><title>Grafana</title></html>", "text/html") as (url, _):
        metrics = PrometheusMetrics(url, "serving", "churn", series="knative")
        with pytest.raises(PrometheusError, match=r"does not answer like Prometheus' HTTP API \(HTTP 200, text/html\): "
                                                  r"'<!doctype html> <html>") as caught:
            metrics.since(0.0, [ServingTarget(1, 100, "churn-predictor-00001")])
    assert "\n" not in str(caught.value)


def test_an_auth_proxy_gets_the_bearer_token_and_a_refusal_names_it():
    with http_answering(401, b"Unauthorized\n", "text/plain") as (url, seen):
        metrics = PrometheusMetrics(url, "serving", "churn", bearer_token="s3cret-token")
        with pytest.raises(ConfigError, match=r"refused the query \(HTTP 401\); does it need a bearer token") as caught:
            metrics.mark()
    assert seen[0]["Authorization"] == "Bearer s3cret-token"
    assert "s3cret" not in str(caught.value)


def test_selectors_escape_names_and_scope_each_family():
    hostile = 'x"} or vector(1) #\\'
    assert FAMILIES["knative"].selector(hostile, "churn", "churn-predictor-00002") == (
        '{__name__=~"kn_queueproxy_app_duration_seconds_count|kn_queueproxy_app_duration_seconds_sum'
        '|kn_serving_invocation_duration_seconds_count|kn_serving_invocation_duration_seconds_sum", '
        'namespace="x\\"} or vector(1) #\\\\", revision="churn-predictor-00002"}')
    assert FAMILIES["knative-legacy"].selector("serving", "churn", "a\nb") == (
        '{__name__=~"revision_request_count|revision_request_latencies_count|revision_request_latencies_sum", '
        'namespace_name="serving", revision_name="a\\nb"}')
    assert FAMILIES["runtime"].selector("serving", 'ch"urn', "3") == (
        '{__name__=~"driftloop_request_latency_seconds_count|driftloop_request_latency_seconds_sum'
        '|driftloop_requests_total", namespace="serving", model="ch\\"urn", version="3"}')


@pytest.mark.parametrize(("samples", "rise"), [
    ([(1, 5), (2, 5), (3, 8), (4, 12)], 7),  # from the last sample at or before the mark (t=2)
    ([(3, 8), (4, 12)], 12),                 # a series born after the mark starts from 0
    ([(1, 5), (3, 9), (4, 2), (5, 6)], 10),  # the counter restarted at t=4: 9-5, then 2, then 6-2
    ([(1, 5), (2, 7)], 0),                   # nothing after the mark
    ([(0, 9), (1, 3), (3, 4)], 1),           # a restart before the mark only moves the start
])
def test_counter_increase_counts_exactly_across_restarts(samples, rise):
    assert counter_increase([(float(t), float(v)) for t, v in samples], mark=2.0) == rise
