"""Who may reach the drift monitor in a cluster (components/network-guard, components/istio-guard), checked
against the code on the other end: the monitor's own flag parser and start-up rule, the pod labels KServe
gives predictor pods, the ServiceAccounts the render contains and the token the monitor reads. No cluster
runs here: whether a CNI enforces the NetworkPolicy or Istio the AuthorizationPolicy is not checked."""

from __future__ import annotations

import pytest

from driftloop.cli import build_parser
from driftloop.errors import ConfigError
from driftloop.http_guard import LABELS
from driftloop.monitor.config import MonitorConfig
from driftloop.monitor.guard import check_monitor_exposure

from .manifests_render import OVERLAYS, monitor_yaml, one

KSERVE_PREDICTOR_LABEL = {"component": "predictor"}  # kserve pkg/constants KServiceComponentLabel


def _container(objects: list[dict]) -> dict:
    [container] = one(objects, "Deployment", "driftloop-monitor")["spec"]["template"]["spec"]["containers"]
    return container


def _predictor_pod_labels(objects: list[dict]) -> dict:
    """KServe's labels on a predictor pod (kserve predictor.go buildObjectMeta), as the observability test has them."""
    runtime, isvc = one(objects, "ServingRuntime", "driftloop"), one(objects, "InferenceService")
    return {**runtime["spec"]["labels"], **isvc["metadata"]["labels"], **KSERVE_PREDICTOR_LABEL,
            "serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}


def _ports(objects: list[dict]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in _container(objects)["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_monitor_starts_beyond_loopback_only_because_the_guard_is_declared(manifests_rendered, tmp_path,
                                                                               overlay) -> None:
    objects = manifests_rendered[overlay]
    container = _container(objects)
    args = build_parser().parse_args(container["command"][1:])
    config = MonitorConfig.from_dict(monitor_yaml(objects))
    token = tmp_path / "labels-token"
    token.write_text("test-labels-token-0123456789abcdef")
    environ = {LABELS.env + "_FILE": str(token)}
    assert args.host == "0.0.0.0" and args.trust_network_policy and args.events_port == _ports(objects)["events"]
    guarded = config.with_overrides(auth=type(config.auth)(network_guard=args.trust_network_policy))
    check_monitor_exposure(args.host, guarded, environ)  # starts
    with pytest.raises(ConfigError, match="refusing to serve /events on 0.0.0.0"):
        check_monitor_exposure(args.host, config, environ)  # the same pod without network-guard does not


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_monitor_reads_the_labels_token_from_the_generated_secret(manifests_rendered, overlay) -> None:
    objects = manifests_rendered[overlay]
    container, pod = _container(objects), one(objects, "Deployment")["spec"]["template"]["spec"]
    path = {e["name"]: e.get("value") for e in container["env"]}[LABELS.env + "_FILE"]
    directory, name = path.rsplit("/", 1)
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    [item] = volume["secret"]["items"]
    secret = one(objects, "Secret", volume["secret"]["secretName"])
    assert item["path"] == name and item["key"] in secret["data"] and mount["readOnly"] is True
    assert secret["metadata"]["name"].startswith("driftloop-monitor-tokens-")  # hashed: a new token rolls the pod


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_driftloops_predictor_pods_may_reach_the_events_port(manifests_rendered, overlay) -> None:
    objects = manifests_rendered[overlay]
    policy = one(objects, "NetworkPolicy", "driftloop-monitor")
    deployment = one(objects, "Deployment", "driftloop-monitor")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"][
        "labels"].items() and policy["spec"]["policyTypes"] == ["Ingress"]
    ports = _ports(objects)
    by_port = {p["port"]: rule["from"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert set(by_port) == set(ports)  # every port of the monitor is covered, by its name
    [events_peer] = by_port["events"]
    predictor = _predictor_pod_labels(objects)
    assert set(events_peer) == {"podSelector"}  # this namespace only
    assert events_peer["podSelector"]["matchLabels"].items() <= predictor.items()
    # Not any predictor: the runtime's own label is part of the selector.
    runtime_labels = one(objects, "ServingRuntime", "driftloop")["spec"]["labels"]
    assert runtime_labels.items() <= events_peer["podSelector"]["matchLabels"].items()
    # The predictors reach nothing else: no API peer selects a predictor pod of this namespace.
    for peer in by_port["http"]:
        if "namespaceSelector" not in peer:
            assert not peer["podSelector"]["matchLabels"].items() <= predictor.items(), peer
    # The logger posts to the port the policy opens: Service events port → container port "events".
    service = one(objects, "Service", "driftloop-monitor")
    [events_service_port] = [p for p in service["spec"]["ports"] if p["targetPort"] == "events"]
    logger_url = one(objects, "InferenceService")["spec"]["predictor"]["logger"]["url"]
    assert logger_url.endswith(f":{events_service_port['port']}/events")


def test_istio_admits_each_write_from_one_identity_only(manifests_rendered) -> None:
    objects, namespace = manifests_rendered["kubeflow"], OVERLAYS["kubeflow"]
    policy = one(objects, "AuthorizationPolicy", "driftloop-monitor")
    assert policy["apiVersion"] == "security.istio.io/v1" and policy["spec"]["action"] == "ALLOW"
    accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
    serving = one(objects, "InferenceService")["spec"]["predictor"]["serviceAccountName"]
    ports = _ports(objects)
    writes = {}
    for rule in policy["spec"]["rules"]:
        [operation] = [t["operation"] for t in rule["to"]]
        principals = [p for source in rule["from"] for p in source["source"].get("principals", [])]
        for principal in principals:  # the overlay's namespace was filled in
            assert principal.startswith(f"*/ns/{namespace}/sa/"), principal
        if "POST" in operation["methods"]:
            assert operation["methods"] == ["POST"] and len(principals) == 1
            [path] = operation["paths"]
            writes[path] = (principals[0].rsplit("/", 1)[1], operation["ports"])
        else:
            assert operation["methods"] == ["GET"] and operation["ports"] == [str(ports["http"])]
    assert writes == {"/events": (serving, [str(ports["events"])]), "/feedback": ("driftloop-labels", [str(ports["http"])])}
    assert {serving, "driftloop-labels"} <= accounts
    assert one(objects, "ServiceAccount", "driftloop-labels")["automountServiceAccountToken"] is False
