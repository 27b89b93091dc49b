"""The rollout reads Prometheus: a real Prometheus scrapes emulated queue-proxies and driftloop runtimes.

One scenario serves the whole module, because Prometheus passes new targets on only every 5 s. Emulated
pods in five namespaces expose what their real counterparts expose (knative/serving
``pkg/queue/request_metric.go`` at knative-v1.18.0, v1.19.0 and v1.21.0; CLUSTER_FACTS.md section 7):

- Serverless, Knative ≥ 1.21: queue-proxies with ``kn_serving_invocation_duration_seconds`` (OTel
  exporter: seconds, ``http_response_status_code``, ``otel_scope_*`` labels, Knative's buckets) and the
  runtime containers next to them; stable on two pods, a canary whose series are all born after the mark.
- Serverless, Knative 1.19/1.20: ``kn_queueproxy_app_duration_seconds``.
- Serverless, Knative ≤ 1.18: ``revision_request_count`` and ``revision_request_latencies`` in whole ms.
- Standard mode, runtime pods only, in a namespace named with a quote and a backslash, next to another
  model's pod with the same versions.
- One runtime pod that restarts (counters back to 0) in the middle of the window.

Each pod serves some requests before the mark (which must not count), then a known mix of 2xx, 4xx and
5xx with known latencies. The expected windows are derived from those requests, and must match exactly:
the backend counts raw samples, so there is no extrapolation to allow for.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import pytest
from prometheus_client import generate_latest

from driftloop.errors import DriftloopError
from driftloop.rollout.metrics import ServingTarget, Window
from driftloop.rollout.prometheus import PrometheusMetrics
from driftloop.serving.metrics import GatewayMetrics
from tests.prometheus_server import ExporterServer

MODEL = "churn"
KNATIVE_BOUNDS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
LEGACY_BOUNDS_MS = (5, 10, 20, 40, 60, 80, 100, 150, 200, 250, 300, 350, 400, 450, 500, 600, 700, 800, 900, 1000,
                    2000, 5000, 10000, 20000, 50000, 100000)

Request = tuple[int, float]  # (HTTP status, seconds)


def label_text(labels: dict[str, str]) -> str:
    escaped = (v.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n") for v in labels.values())
    return "{" + ",".join(f'{k}="{v}"' for k, v in zip(labels, escaped)) + "}"


def histogram_text(name: str, labels: dict[str, str], bounds: tuple[float, ...], values: list[float]) -> list[str]:
    """A histogram's samples as client_golang writes them (cumulative buckets, +Inf, _sum, _count)."""
    lines = [f"{name}_bucket{label_text({**labels, 'le': f'{b:g}'})} {sum(v <= b for v in values)}" for b in bounds]
    lines.append(f"{name}_bucket{label_text({**labels, 'le': '+Inf'})} {len(values)}")
    lines.append(f"{name}_sum{label_text(labels)} {sum(values)!r}")
    lines.append(f"{name}_count{label_text(labels)} {len(values)}")
    return lines


@dataclass
class OtelQueueProxy:
    """A Knative ≥ 1.19 queue-proxy's /metrics: one histogram in seconds per response status (OTel exporter)."""

    metric: str  # kn_serving_invocation_duration_seconds (≥ 1.21) | kn_queueproxy_app_duration_seconds (1.19, 1.20)
    pod: str
    namespace: str
    revision: str
    served: dict[int, list[float]] = field(default_factory=dict)

    def serve(self, status: int, seconds: float) -> None:
        self.served.setdefault(status, []).append(seconds)

    def render(self) -> str:
        lines = [f"# HELP {self.metric} The duration of task execution", f"# TYPE {self.metric} histogram"]
        for status, values in sorted(self.served.items()):
            scope = {"otel_scope_name": "knative.dev/serving/pkg/queue", "otel_scope_schema_url": "",
                     "otel_scope_version": ""}
            lines += histogram_text(self.metric, {"http_response_status_code": str(status), **scope},
                                    KNATIVE_BOUNDS_S, values)
        # Resource attributes go to target_info, not onto the series (hence the relabelled revision label).
        lines += ["# HELP target_info Target metadata", "# TYPE target_info gauge",
                  "target_info" + label_text({"k8s_namespace_name": self.namespace, "k8s_pod_name": self.pod,
                                              "kn_revision_name": self.revision, "service_name": "queue-proxy"})
                  + " 1"]
        return "\n".join(lines) + "\n"


@dataclass
class OpenCensusQueueProxy:
    """A Knative ≤ 1.18 queue-proxy's /metrics: a request counter and a latency histogram in whole milliseconds."""

    pod: str
    namespace: str
    revision: str
    served: dict[int, list[float]] = field(default_factory=dict)

    def serve(self, status: int, seconds: float) -> None:
        self.served.setdefault(status, []).append(int(seconds * 1000))  # Go's Duration.Milliseconds() truncates

    def render(self) -> str:
        counts, latencies = ["# TYPE revision_request_count counter"], ["# TYPE revision_request_latencies histogram"]
        for status, values in sorted(self.served.items()):
            labels = {"configuration_name": self.revision.rsplit("-", 1)[0], "container_name": "queue-proxy",
                      "namespace_name": self.namespace, "pod_name": self.pod, "response_code": str(status),
                      "response_code_class": f"{status // 100}xx", "revision_name": self.revision,
                      "route_tag": "default", "service_name": self.revision.rsplit("-", 1)[0]}
            counts.append(f"revision_request_count{label_text(labels)} {len(values)}")
            latencies += histogram_text("revision_request_latencies", labels, LEGACY_BOUNDS_MS, values)
        return "\n".join(counts + latencies) + "\n"


@dataclass
class RuntimePod:
    """driftloop's serving runtime's /metrics, from the collectors the runtime itself uses."""

    model: str
    version: int
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)

    def serve(self, status: int, seconds: float) -> None:
        labels = (self.model, str(self.version), "kserve")
        outcome = "invalid" if 400 <= status < 500 else "error" if status >= 500 else "ok"
        self.metrics.requests.labels(*labels, outcome).inc()
        if outcome == "ok":
            self.metrics.latency.labels(*labels).observe(seconds)

    def restart(self) -> None:
        self.metrics = GatewayMetrics()

    def render(self) -> str:
        return generate_latest(self.metrics.registry).decode()


def requests(ok: int, invalid: int, errors: int, base_s: float) -> list[Request]:
    """A mix of answers with latencies spread around ``base_s``; errors alternate between 500 and 503."""
    answers = ([(200, base_s * (1 + i % 7 / 10)) for i in range(ok)] + [(400, 0.002)] * invalid
               + [(500 + 3 * (i % 2), 0.004) for i in range(errors)])
    return answers


def expected(served: list[Request], whole_ms: bool = False) -> Window:
    """The window a version's requests make: 4xx are the callers', 5xx errors, latency of the successful ones."""
    ok = [seconds for status, seconds in served if status < 400]
    if whole_ms:
        ok = [int(s * 1000) / 1000 for s in ok]
    errors = sum(status >= 500 for status, _ in served)
    return Window(len(ok) + errors, errors, sum(ok), len(ok))


@dataclass
class Pod:
    name: str
    version: int
    revision: str
    exporters: list  # what runs in the pod and exposes metrics: a queue-proxy, the runtime, or both
    labels: dict[str, str]  # the target labels the cluster's scrape config gives its targets
    before: list[Request]
    during: list[Request]
    restart_after: int | None = None  # the runtime restarts after serving this many of ``during``


@dataclass
class Scenario:
    mark: float
    namespaces: dict[str, str]  # case -> namespace
    pods: dict[str, list[Pod]]  # case -> pods

    def targets(self, case: str, extra: tuple[ServingTarget, ...] = ()) -> list[ServingTarget]:
        """The model's versions in ``case`` as a deployment backend reports them."""
        serving = {(p.version, p.revision) for p in self.pods[case] if _model_of(p) == MODEL}
        return [ServingTarget(version, 50, revision) for version, revision in sorted(serving)] + list(extra)

    def expected(self, case: str, whole_ms: bool = False) -> dict[int, Window]:
        by_version: dict[int, list[Request]] = {}
        for pod in self.pods[case]:
            if _model_of(pod) == MODEL:
                by_version.setdefault(pod.version, []).extend(pod.during)
        return {v: expected(served, whole_ms) for v, served in by_version.items()}


def _model_of(pod: Pod) -> str:
    runtimes = [e for e in pod.exporters if isinstance(e, RuntimePod)]
    return runtimes[0].model if runtimes else MODEL


def knative_pod(metric: str, namespace: str, revision: str, name: str, version: int, before: list[Request],
                during: list[Request], with_runtime: bool = True) -> Pod:
    proxy = OtelQueueProxy(metric, name, namespace, revision)
    exporters = [proxy, RuntimePod(MODEL, version)] if with_runtime else [proxy]
    return Pod(name, version, revision, exporters, knative_labels(namespace, revision, name), before, during)


def knative_labels(namespace: str, revision: str, pod: str) -> dict[str, str]:
    service = revision.rsplit("-", 1)[0]
    return {"namespace": namespace, "revision": revision, "configuration": service, "service": service, "pod": pod}


def runtime_pod(namespace: str, deployment: str, name: str, model: str, version: int, before: list[Request],
                during: list[Request], restart_after: int | None = None) -> Pod:
    return Pod(name, version, deployment, [RuntimePod(model, version)],
               {"namespace": namespace, "deployment": deployment, "pod": name}, before, during, restart_after)


@pytest.fixture(scope="module")
def scenario(prometheus) -> Scenario:
    tag = uuid.uuid4().hex[:6]
    ns = {"knative": f"serving-{tag}", "knative-1.19": f"kn119-{tag}", "legacy": f"legacy-{tag}",
          "standard": f'team "a" \\ {tag}', "reset": f"reset-{tag}"}
    rev = {n: f"{MODEL}-predictor-{n:05d}" for n in range(1, 6)}
    new, old = "kn_serving_invocation_duration_seconds", "kn_queueproxy_app_duration_seconds"
    pods = {
        "knative": [
            knative_pod(new, ns["knative"], rev[1], f"{rev[1]}-deployment-a", 1, requests(30, 0, 0, 0.02),
                        requests(40, 3, 2, 0.02)),
            knative_pod(new, ns["knative"], rev[1], f"{rev[1]}-deployment-b", 1, requests(20, 1, 1, 0.02),
                        requests(35, 0, 1, 0.03)),
            knative_pod(new, ns["knative"], rev[2], f"{rev[2]}-deployment-a", 2, [], requests(25, 2, 4, 0.3)),
        ],
        "knative-1.19": [
            knative_pod(old, ns["knative-1.19"], rev[3], f"{rev[3]}-deployment-a", 3, requests(10, 0, 0, 0.05),
                        requests(22, 1, 3, 0.05), with_runtime=False),
        ],
        "legacy": [
            Pod(f"{rev[4]}-deployment-a", 4, rev[4], [OpenCensusQueueProxy(f"{rev[4]}-deployment-a", ns["legacy"], rev[4])],
                knative_labels(ns["legacy"], rev[4], f"{rev[4]}-deployment-a"), requests(12, 1, 0, 0.1),
                requests(30, 2, 2, 0.1234)),
            Pod(f"{rev[5]}-deployment-a", 5, rev[5], [OpenCensusQueueProxy(f"{rev[5]}-deployment-a", ns["legacy"], rev[5])],
                knative_labels(ns["legacy"], rev[5], f"{rev[5]}-deployment-a"), [], requests(18, 0, 5, 0.0456)),
        ],
        "standard": [
            runtime_pod(ns["standard"], f"{MODEL}-v6-predictor", "v6-a", MODEL, 6, requests(15, 0, 1, 0.01),
                        requests(33, 4, 1, 0.01)),
            runtime_pod(ns["standard"], f"{MODEL}-v7-predictor", "v7-a", MODEL, 7, requests(5, 0, 0, 0.01),
                        requests(21, 0, 2, 0.015)),
            # Another model with the same version numbers in the same namespace: none of its requests count.
            runtime_pod(ns["standard"], "other-v6-predictor", "other-a", "other", 6, requests(9, 0, 0, 0.01),
                        requests(50, 0, 50, 0.01)),
        ],
        "reset": [
            runtime_pod(ns["reset"], f"{MODEL}-v8-predictor", "v8-a", MODEL, 8, requests(20, 0, 0, 0.01),
                        requests(10, 0, 0, 0.01) + requests(4, 1, 1, 0.02), restart_after=10),
        ],
    }
    all_pods = [p for case in pods.values() for p in case]
    with ExporterServer() as exporters:
        groups, urls = [], set()
        for i, pod in enumerate(all_pods):
            for exporter in pod.exporters:
                for status, seconds in pod.before:
                    exporter.serve(status, seconds)
                path = f"/{tag}/{i}/{type(exporter).__name__}"
                urls.add(exporters.serve(path, exporter.render))
                groups.append({"targets": [exporters.address], "labels": {**pod.labels, "__metrics_path__": path}})
        prometheus.publish_targets(f"rollout-{tag}", groups)
        try:
            prometheus.wait_for_targets_up(urls)
            mark = PrometheusMetrics(prometheus.url, ns["knative"], MODEL).mark()
            exporters.wait_scrapes(1)  # every later scrape starts after the mark
            drive(exporters, all_pods, first_part=True)
            exporters.wait_scrapes(2)  # the restarting pod's counters before the restart are stored
            drive(exporters, all_pods, first_part=False)
            exporters.wait_scrapes(2)  # everything driven is stored
        finally:
            prometheus.withdraw_targets(f"rollout-{tag}")
    return Scenario(mark, ns, pods)


def drive(exporters: ExporterServer, pods: list[Pod], first_part: bool) -> None:
    with exporters.driving():
        for pod in pods:
            split = pod.restart_after if pod.restart_after is not None else len(pod.during)
            if not first_part and pod.restart_after is not None:
                for exporter in pod.exporters:
                    exporter.restart()
            for status, seconds in (pod.during[:split] if first_part else pod.during[split:]):
                for exporter in pod.exporters:
                    exporter.serve(status, seconds)


def assert_windows(actual: dict[int, Window], wanted: dict[int, Window]) -> None:
    assert set(actual) == set(wanted)
    for version, window in wanted.items():
        got = actual[version]
        assert (got.requests, got.errors, got.latency_count) == (window.requests, window.errors,
                                                                  window.latency_count), f"v{version}: {got}"
        assert got.latency_sum == pytest.approx(window.latency_sum, rel=1e-9), f"v{version}: {got}"


@pytest.mark.parametrize(("case", "series"), [
    ("knative", "knative"), ("knative", "runtime"), ("knative-1.19", "knative"), ("legacy", "knative-legacy"),
    ("standard", "runtime"), ("reset", "runtime"),
])
def test_counts_each_versions_requests_errors_and_latency_since_the_mark(scenario, prometheus, case, series):
    metrics = PrometheusMetrics(prometheus.url, scenario.namespaces[case], MODEL, series=series)
    windows = metrics.since(scenario.mark, scenario.targets(case))
    assert_windows(windows, scenario.expected(case, whole_ms=series == "knative-legacy"))


@pytest.mark.parametrize(("case", "family"), [
    ("knative", "knative"), ("knative-1.19", "knative"), ("legacy", "knative-legacy"), ("standard", "runtime"),
])
def test_auto_reads_the_first_family_with_series(scenario, prometheus, case, family, caplog):
    metrics = PrometheusMetrics(prometheus.url, scenario.namespaces[case], MODEL)
    with caplog.at_level("INFO", logger="driftloop.rollout.prometheus"):
        windows = metrics.since(scenario.mark, scenario.targets(case))
    assert metrics.family == family
    assert f"reading {family} series" in caplog.text
    assert_windows(windows, scenario.expected(case, whole_ms=family == "knative-legacy"))


def test_a_revision_without_series_yet_gets_an_empty_window(scenario, prometheus):
    fresh = ServingTarget(9, 10, f"{MODEL}-predictor-00009")
    metrics = PrometheusMetrics(prometheus.url, scenario.namespaces["knative"], MODEL, series="knative")
    windows = metrics.since(scenario.mark, scenario.targets("knative", extra=(fresh,)))
    assert windows[9] == Window()
    assert_windows({v: w for v, w in windows.items() if v != 9}, scenario.expected("knative"))


def test_nothing_anywhere_leaves_auto_undecided(scenario, prometheus, caplog):
    metrics = PrometheusMetrics(prometheus.url, "no-such-namespace", MODEL)
    targets = [ServingTarget(1, 90, f"{MODEL}-predictor-00001"), ServingTarget(2, 10, f"{MODEL}-predictor-00002")]
    with caplog.at_level("WARNING", logger="driftloop.rollout.prometheus"):
        assert metrics.since(scenario.mark, targets) == {1: Window(), 2: Window()}
    assert metrics.family is None
    assert "no knative or knative-legacy or runtime series" in caplog.text


@pytest.mark.parametrize("hostile", ['x"} or vector(1) or {__name__="y', 'x\\"} or vector(1) #', "a\nb"])
def test_a_quote_in_a_name_cannot_inject_promql(scenario, prometheus, hostile):
    """A name that would close the string and add ``or vector(1)`` if pasted in unescaped finds nothing."""
    for series in ("knative", "runtime"):
        metrics = PrometheusMetrics(prometheus.url, hostile, hostile, series=series)
        assert metrics.since(scenario.mark, [ServingTarget(1, 100, hostile)]) == {1: Window()}


def test_a_promql_error_is_one_line_with_prometheus_text(prometheus):
    metrics = PrometheusMetrics(prometheus.url, "serving", MODEL)
    with pytest.raises(DriftloopError, match=r"rejected the query sum\(: bad_data: .*parse error") as caught:
        metrics._query("sum(", time.time())
    assert "\n" not in str(caught.value)

