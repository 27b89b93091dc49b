"""components/observability: the Prometheus Operator monitors select the pods and Service driftloop runs
and label their series the way the alerts and the rollout read them (checked by running the monitors'
relabelings in a real Prometheus), the alerts pass `promtool check rules` and fire exactly on the
conditions in driftloop_alerts.promtool.yaml (`promtool test rules`), and every series the alerts and
the dashboard read is one the code exports. The Prometheus Operator's CRDs are not available offline:
the objects are checked for the monitoring.coreos.com/v1 fields they use."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from driftloop.monitor.metrics import MonitorMetrics
from driftloop.serving.metrics import GatewayMetrics

from ..conftest import REPO_ROOT, free_port
from .manifests_render import OBSERVABILITY, OVERLAYS, monitor_yaml, namespace_of, one

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERT_TESTS = Path(__file__).with_name("driftloop_alerts.promtool.yaml")
VARIANTS = [f"{overlay}+{OBSERVABILITY}" for overlay in OVERLAYS]
KSERVE_PREDICTOR_LABEL = {"component": "predictor"}  # kserve pkg/constants KServiceComponentLabel
# The fields of monitoring.coreos.com/v1 these objects may use (a subset of the CRDs' at operator 0.93).
ENDPOINT_FIELDS = {"port", "portNumber", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
                   "relabelings", "metricRelabelings"}
RELABEL_FIELDS = {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action"}
RELABEL_ACTIONS = {"replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep", "lowercase",
                   "uppercase", "keepequal", "dropequal"}
ANNOTATIONS = {"summary", "description", "runbook"}
# Exported by the monitor once the lead's rollout counter lands on main (issue #10).
# Series from outside driftloop's code: Prometheus' own and Knative's queue-proxy (CLUSTER_FACTS.md §7).
EXTERNAL = {"up", "kn_serving_invocation_duration_seconds_bucket", "kn_serving_invocation_duration_seconds_count"}
GRAFANA_VARIABLES = {"$namespace": "ml", "$model": "churn", "$__rate_interval": "2m"}

needs_promtool = pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool missing (Debian's prometheus)")
needs_prometheus = pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="prometheus missing (Debian's package)")


def _monitors(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["apiVersion"] == "monitoring.coreos.com/v1"]


def _rules(objects: list[dict]) -> list[dict]:
    return [rule for group in one(objects, "PrometheusRule", "driftloop")["spec"]["groups"] for rule in group["rules"]]


def _dashboard(objects: list[dict]) -> dict:
    [body] = one(objects, "ConfigMap", "driftloop-dashboard")["data"].values()
    return json.loads(body)


def _panel_queries(dashboard: dict) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def _without_grafana_variables(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _exported_series(registry) -> set[str]:
    """The series names a prometheus_client registry exposes, also for metrics with no sample yet."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]}


def _read_series(objects: list[dict]) -> set[str]:
    exprs = [rule["expr"] for rule in _rules(objects)] + _panel_queries(_dashboard(objects))
    return {name for expr in exprs for name in re.findall(r"\b(?:driftloop|kn_serving)_[a-z0-9_]+|\bup\b", expr)}


@pytest.fixture(scope="module")
def observed(manifests_rendered) -> list[dict]:
    return manifests_rendered[VARIANTS[0]]


# --- what the component adds, and its shape --------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_the_component_adds_the_monitors_rules_and_dashboard_in_the_overlays_namespace(manifests_rendered,
                                                                                      variant) -> None:
    overlay = variant.split("+")[0]
    added = [o for o in manifests_rendered[variant] if o not in manifests_rendered[overlay]]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in added) == [
        ("ConfigMap", "driftloop-dashboard"), ("PodMonitor", "driftloop-queue-proxy"),
        ("PodMonitor", "driftloop-runtime"), ("PrometheusRule", "driftloop"), ("ServiceMonitor", "driftloop-monitor")]
    assert all(o["metadata"]["namespace"] == namespace_of(variant) for o in added)


def test_the_monitors_have_the_operators_shape(observed) -> None:
    for monitor in _monitors(observed):
        spec = monitor["spec"]
        if monitor["kind"] == "PrometheusRule":
            for group in spec["groups"]:
                assert group["name"] and group["rules"]
                assert all(rule["expr"] and ("alert" in rule) != ("record" in rule) for rule in group["rules"])
            continue
        assert spec["selector"]["matchLabels"], monitor["metadata"]["name"]
        endpoints = spec["podMetricsEndpoints" if monitor["kind"] == "PodMonitor" else "endpoints"]
        assert set(spec) == {"selector", "podMetricsEndpoints" if monitor["kind"] == "PodMonitor" else "endpoints"}
        for endpoint in endpoints:
            assert set(endpoint) <= ENDPOINT_FIELDS, set(endpoint) - ENDPOINT_FIELDS
            for relabel in (*endpoint.get("relabelings", []), *endpoint.get("metricRelabelings", [])):
                assert set(relabel) <= RELABEL_FIELDS and relabel.get("action", "replace") in RELABEL_ACTIONS, relabel


def test_the_pod_monitors_select_the_predictor_pods_kserve_makes_for_driftloops_runtime(observed) -> None:
    """KServe labels a predictor pod with component: predictor, the ServingRuntime's spec.labels, the
    InferenceService's labels and the predictor's (kserve predictor.go buildObjectMeta)."""
    runtime = one(observed, "ServingRuntime", "driftloop")
    isvc = one(observed, "InferenceService")
    pod_labels = {**runtime["spec"]["labels"], **isvc["metadata"]["labels"],
                  **isvc["spec"]["predictor"].get("labels", {}), **KSERVE_PREDICTOR_LABEL,
                  "serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}
    for monitor in (o for o in observed if o["kind"] == "PodMonitor"):
        assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(), monitor["metadata"]["name"]
    # Not every pod of the namespace: the runtime's own label is part of the selector.
    assert all(runtime["spec"]["labels"].items() <= m["spec"]["selector"]["matchLabels"].items()
               for m in observed if m["kind"] == "PodMonitor")


def test_the_service_monitor_scrapes_the_monitors_service(observed) -> None:
    monitor = one(observed, "ServiceMonitor", "driftloop-monitor")
    service = one(observed, "Service", "driftloop-monitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    assert [e["path"] for e in monitor["spec"]["endpoints"]] == ["/metrics"]


# --- relabelling, run by a real Prometheus ---------------------------------------------------------

def _as_prometheus(relabelings: list[dict]) -> list[dict]:
    keys = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return [{keys.get(key, key): value for key, value in relabel.items()} for relabel in relabelings]


def _pod(address: str, container: str, port: int, pod: str, replica_set: str, revision: str | None,
         port_name: str = "") -> dict:
    """A target as Prometheus' Kubernetes pod discovery describes it (its __meta_kubernetes_* labels)."""
    labels = {"__meta_kubernetes_namespace": "ml", "__meta_kubernetes_pod_name": pod,
              "__meta_kubernetes_pod_container_name": container,
              "__meta_kubernetes_pod_container_port_number": str(port),
              "__meta_kubernetes_pod_container_port_name": port_name,
              "__meta_kubernetes_pod_controller_kind": "ReplicaSet",
              "__meta_kubernetes_pod_controller_name": replica_set,
              "__meta_kubernetes_pod_label_serving_kserve_io_inferenceservice": "churn"}
    if revision:
        labels["__meta_kubernetes_pod_label_serving_knative_dev_revision"] = revision
    return {"targets": [address], "labels": labels}


KNATIVE_POD = dict(pod="churn-predictor-00002-deployment-6b5f7d9c8d-x2x9k",
                   replica_set="churn-predictor-00002-deployment-6b5f7d9c8d", revision="churn-predictor-00002")
STANDARD_POD = dict(pod="churn-v2-predictor-7c9d8b5f4-q8w7z", replica_set="churn-v2-predictor-7c9d8b5f4",
                    revision=None)


@pytest.fixture(scope="module")
def relabelled(observed, tmp_path_factory) -> dict[str, list[dict]]:
    """Each monitor's relabelings applied by Prometheus to pods of both KServe modes: job → the labels
    of its active targets (those not kept are dropped)."""
    if not Path(PROMETHEUS).exists():
        pytest.skip("prometheus missing (Debian's package)")
    monitors = {m["metadata"]["name"]: m for m in observed if m["kind"] in ("PodMonitor", "ServiceMonitor")}
    [runtime] = monitors["driftloop-runtime"]["spec"]["podMetricsEndpoints"]
    [proxy] = monitors["driftloop-queue-proxy"]["spec"]["podMetricsEndpoints"]
    [service] = monitors["driftloop-monitor"]["spec"]["endpoints"]
    pods = [
        _pod("127.0.0.1:1", "kserve-container", 8080, **KNATIVE_POD),
        _pod("127.0.0.1:2", "queue-proxy", 9091, port_name="http-usermetric", **KNATIVE_POD),
        _pod("127.0.0.1:3", "agent", 9081, **KNATIVE_POD),
        _pod("127.0.0.1:4", "kserve-container", 8080, **STANDARD_POD),
    ]
    # The operator keeps a `port:` endpoint's targets by port name before the monitor's own relabelings
    # (prometheus-operator pkg/prometheus/promcfg.go); the emulation does the same.
    by_port_name = [{"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                     "regex": proxy["port"]}]
    service_target = {"targets": ["127.0.0.1:5"], "labels": {"__meta_kubernetes_namespace": "ml",
                                                              "__meta_kubernetes_pod_name": "driftloop-monitor-5d8f-abcde"}}
    config = {"global": {"scrape_interval": "1h"}, "scrape_configs": [
        {"job_name": "runtime", "static_configs": pods, "relabel_configs": _as_prometheus(runtime["relabelings"])},
        {"job_name": "proxy", "static_configs": pods,
         "relabel_configs": by_port_name + _as_prometheus(proxy["relabelings"])},
        {"job_name": "monitor", "static_configs": [service_target],
         "relabel_configs": _as_prometheus(service["relabelings"])},
    ]}
    work = tmp_path_factory.mktemp("prometheus")
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen([PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
                                f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # the scrape manager takes up new target sets every 5 s
            try:
                data = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", params={"state": "any"}).json()["data"]
                if len(data["activeTargets"]) + len(data["droppedTargets"]) == 2 * len(pods) + 1:
                    break
            except (httpx.TransportError, ValueError):  # not listening yet, or not ready ("Service Unavailable")
                pass
            assert time.monotonic() < deadline, "Prometheus did not discover the targets within 60 s"
            time.sleep(0.5)
    finally:
        process.terminate()
        process.wait(timeout=30)
    active: dict[str, list[dict]] = {}
    for target in data["activeTargets"]:
        active.setdefault(target["scrapePool"], []).append(target["labels"])
    return active


def test_the_runtime_monitor_keeps_the_model_server_and_labels_it_for_the_rollout(relabelled) -> None:
    common = {"job": "driftloop-runtime", "namespace": "ml", "inferenceservice": "churn", "instance": "127.0.0.1:1"}
    knative, standard = sorted(relabelled["runtime"], key=lambda labels: labels["instance"])
    assert knative == {**common, "pod": KNATIVE_POD["pod"], "revision": "churn-predictor-00002",
                       "deployment": "churn-predictor-00002-deployment"}
    assert standard == {**common, "instance": "127.0.0.1:4", "pod": STANDARD_POD["pod"],
                        "deployment": "churn-v2-predictor"}  # Standard mode has no revision


def test_the_queue_proxy_monitor_keeps_only_the_proxys_metrics_port(relabelled) -> None:
    [proxy] = relabelled["proxy"]
    assert proxy == {"job": "driftloop-queue-proxy", "namespace": "ml", "inferenceservice": "churn",
                     "instance": "127.0.0.1:2", "pod": KNATIVE_POD["pod"], "revision": "churn-predictor-00002",
                     "deployment": "churn-predictor-00002-deployment"}


def test_every_job_the_alerts_and_dashboard_name_is_a_monitors(observed, relabelled) -> None:
    jobs = {labels["job"] for targets in relabelled.values() for labels in targets}
    exprs = [rule["expr"] for rule in _rules(observed)] + _panel_queries(_dashboard(observed))
    named = {job for expr in exprs for job in re.findall(r'job="([^"]+)"', expr)}
    assert named and named <= jobs


# --- alerts --------------------------------------------------------------------------------------

@needs_promtool
def test_the_rules_pass_promtool_check(observed, tmp_path) -> None:
    rules = tmp_path / "driftloop-rules.yaml"
    rules.write_text(yaml.safe_dump(one(observed, "PrometheusRule")["spec"]))
    done = _promtool("check", "rules", str(rules), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules(observed))} rules found" in done.stdout


@needs_promtool
def test_each_alert_fires_on_its_condition_and_stays_quiet_otherwise(observed, tmp_path) -> None:
    """driftloop_alerts.promtool.yaml, run by `promtool test rules`. Annotations are left out there:
    their templates are checked by `promtool check rules`, their wording is not a condition."""
    spec = copy.deepcopy(one(observed, "PrometheusRule")["spec"])  # the rendered objects are shared
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "driftloop-rules.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(ALERT_TESTS, tmp_path)
    done = _promtool("test", "rules", ALERT_TESTS.name, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_quiet(observed) -> None:
    cases = [case for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for rule in _rules(observed):
        outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == rule["alert"]}
        assert outcomes == {True, False}, f"{rule['alert']} needs a case where it fires and one where it does not"


def test_every_alert_says_how_long_how_bad_what_and_where_to_look(observed) -> None:
    readme = (REPO_ROOT / "manifests" / "README.md").read_text()
    for rule in _rules(observed):
        assert re.fullmatch(r"\d+[mh]", rule["for"]), rule["alert"]
        assert rule["labels"] == {"severity": rule["labels"]["severity"]}
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert set(rule["annotations"]) == ANNOTATIONS and all(rule["annotations"].values()), rule["alert"]
        assert f"\n### {rule['alert']}\n" in readme, f"manifests/README.md has no runbook for {rule['alert']}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_drift_alert_uses_the_monitors_drift_share(manifests_rendered, variant) -> None:
    objects = manifests_rendered[variant]
    [rule] = [r for r in _rules(objects) if r["alert"] == "DriftloopDriftSustained"]
    [threshold] = re.findall(r">=\s*([0-9.]+)\s*$", rule["expr"])
    assert float(threshold) == monitor_yaml(objects)["drift"]["drift_share"]


# --- the dashboard -------------------------------------------------------------------------------

def test_the_dashboard_is_a_configmap_grafanas_sidecar_loads(observed) -> None:
    config_map = one(observed, "ConfigMap", "driftloop-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = _dashboard(observed)
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]


@needs_promtool
def test_every_dashboard_query_parses(observed, tmp_path) -> None:
    """Each panel's PromQL (Grafana's variables filled in), checked by promtool as a recording rule."""
    queries = _panel_queries(_dashboard(observed))
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{n}", "expr": _without_grafana_variables(q)} for n, q in enumerate(queries)]}]}
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump(rules))
    done = _promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_shows_the_loop(observed) -> None:
    """Requests, errors and p99 per version, revisions at the proxy, drift, accuracy, triggers,
    rollouts and payload-log drops."""
    shown = {name for expr in _panel_queries(_dashboard(observed))
             for name in re.findall(r"\b(?:driftloop|kn_serving)_[a-z0-9_]+", expr)}
    assert {"driftloop_requests_total", "driftloop_request_latency_seconds_bucket",
            "kn_serving_invocation_duration_seconds_count", "driftloop_monitor_drift_share",
            "driftloop_monitor_feature_drift_score", "driftloop_monitor_realised_accuracy",
            "driftloop_monitor_trigger_decisions_total", "driftloop_rollouts_total",
            "driftloop_payload_log_dropped_total"} <= shown


# --- the series exist ------------------------------------------------------------------------------

def test_every_series_the_alerts_and_dashboard_read_is_exported(observed) -> None:
    """The model server exports driftloop.serving.metrics' series (CONTRACT), the monitor its own."""
    exported = _exported_series(GatewayMetrics().registry) | _exported_series(MonitorMetrics().registry)
    assert _read_series(observed) - exported - EXTERNAL == set()


def test_the_rollout_counter_is_exported() -> None:
    assert "driftloop_rollouts_total" in _exported_series(MonitorMetrics().registry)
