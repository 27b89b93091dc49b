"""Credentials and keys in the manifests, per role: which S3 Secret and which half of the signing key each
consumer gets, checked against the code that reads them (S3Settings, the signing module's loaders, the
pipeline's compiled IR, the runtime's flags) on the rendered objects, with each pod's environment and
mounted files materialised as the kubelet would. That no key material or credential is committed is checked
over every file git tracks. What MinIO makes of the policy documents is test_s3_policies.py's."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from driftloop.pipelines.ct_pipeline import (
    IR_PATH,
    S3_SECRET,
    S3_SECRET_KEYS,
    SIGNING_KEY,
    SIGNING_SECRET,
    VERIFY_CONFIG_MAP,
    VERIFY_KEY,
)
from driftloop.serving import runtime
from driftloop.signing import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    SIGNING_KEY_ENV,
    SigningKey,
    Trust,
    load_signing_key,
)
from driftloop.storage import S3Settings

from ..conftest import REPO_ROOT
from .manifests_render import (
    LOGGER_STORAGE,
    MANIFESTS,
    MONITOR_S3_SECRET,
    OVERLAYS,
    SERVING_S3_SECRET,
    USER_KEYS,
    USER_SECRETS,
    one,
)

KSERVE_S3_KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}  # KServe's credentials.s3 defaults
S3_ANNOTATIONS = {f"serving.kserve.io/s3-{key}" for key in ("endpoint", "usehttps", "verifyssl", "region")}
ROLES = {"pipeline": S3_SECRET, "monitor": MONITOR_S3_SECRET, "serving": SERVING_S3_SECRET}
PRIVATE_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*\n[A-Za-z0-9+/=]{16,}")


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def _data(secret: dict) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()}


def _secret(objects: list[dict], name: str) -> dict:
    """The Secret generated as ``name`` (with its hash suffix, if it has one)."""
    found = [o for o in objects if o["kind"] == "Secret" and re.fullmatch(f"{name}(-[a-z0-9]{{10}})?",
                                                                           o["metadata"]["name"])]
    assert len(found) == 1, name
    return found[0]


def _secret_references(obj: object) -> set[str]:
    """Every Secret an object names: ServiceAccount secrets, envFrom, env secretKeyRef, secret volumes."""
    found = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("secretRef", "secretKeyRef") and isinstance(value, dict):
                found.add(value["name"])
            elif key == "secret" and isinstance(value, dict) and "secretName" in value:
                found.add(value["secretName"])
            elif key == "secrets" and obj.get("kind") == "ServiceAccount":
                found |= {s["name"] for s in value}
            found |= _secret_references(value)
    elif isinstance(obj, list):
        for item in obj:
            found |= _secret_references(item)
    return found


def _materialise(objects: list[dict], container: dict, volumes: list[dict], root: Path) -> dict[str, str]:
    """The container's environment and mounted Secret/ConfigMap files as the kubelet gives them, with the
    files under ``root`` (and paths in the environment pointing there)."""
    config_maps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"]: _data(o) for o in objects if o["kind"] == "Secret"}
    by_name = {v["name"]: v for v in volumes}
    mounts = {}
    for mount in container.get("volumeMounts", []):
        volume = by_name[mount["name"]]
        local = root / mount["mountPath"].lstrip("/")
        if "emptyDir" in volume:
            local.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"]] = local
        source = volume.get("secret") or volume.get("configMap")
        if source is None:
            continue
        data = secrets[source["secretName"]] if "secret" in volume else config_maps[source["name"]]
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            target = local / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]])
        mounts[mount["mountPath"]] = local
    env = {}
    for source in container.get("envFrom", []):
        env.update(secrets[source["secretRef"]["name"]])
    for var in container.get("env", []):
        ref = var.get("valueFrom", {})
        if "value" in var:
            value = var["value"]
            for path, local in mounts.items():
                if value == path or value.startswith(path + "/"):
                    value = str(local) + value[len(path):]
            env[var["name"]] = value
        elif "configMapKeyRef" in ref:
            env[var["name"]] = config_maps[ref["configMapKeyRef"]["name"]][ref["configMapKeyRef"]["key"]]
        elif "secretKeyRef" in ref:
            env[var["name"]] = secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
    return env


def _the_test_key(tree: Path) -> SigningKey:
    """The pair the render was made with (manifests_render.copy_tree, as `driftloop models keygen` makes it)."""
    return SigningKey.from_pem((tree / "base" / PRIVATE_KEY_FILE).read_bytes(), "the test's key")


# --- S3 credentials per role -------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_role_gets_its_own_s3_user_and_driftloops_clients_find_the_endpoint(manifests_rendered, manifests_tree,
                                                                                 overlay) -> None:
    objects = manifests_rendered[overlay]
    endpoint = _env_file(MANIFESTS / "base" / "s3-endpoint.env")
    access_keys = {}
    for role, name in ROLES.items():
        secret = _secret(objects, name)
        data = _data(secret)
        example = _env_file(MANIFESTS / "base" / f"s3-{role}.env.example")
        assert data["AWS_ACCESS_KEY_ID"] == example["AWS_ACCESS_KEY_ID"]  # that role's file, not another's
        access_keys[role] = data["AWS_ACCESS_KEY_ID"]
        if role == "serving":  # KServe's storage initializer: keys in the data, settings in the annotations
            assert set(data) == KSERVE_S3_KEYS and S3_ANNOTATIONS <= set(secret["metadata"]["annotations"])
        else:  # driftloop's own clients: the keys the pipeline maps (S3_SECRET_KEYS), read by S3Settings
            assert set(data) == set(S3_SECRET_KEYS)
            settings = S3Settings.from_env(data)
            assert (settings.endpoint, settings.access_key) == (urlparse(endpoint["DRIFTLOOP_S3_ENDPOINT"]).netloc,
                                                                example["AWS_ACCESS_KEY_ID"])
    assert len(set(access_keys.values())) == len(ROLES)
    # The pipeline's name is the one its IR uses as is; the monitor's rolls it when the keys change.
    assert _secret(objects, S3_SECRET)["metadata"]["name"] == S3_SECRET
    assert _secret(objects, MONITOR_S3_SECRET)["metadata"]["name"] != MONITOR_S3_SECRET


def test_kserve_and_driftloop_reach_the_same_minio() -> None:
    """KServe reads the endpoint from the serving Secret's annotations, driftloop from s3-endpoint.env."""
    endpoint = urlparse(_env_file(MANIFESTS / "base" / "s3-endpoint.env")["DRIFTLOOP_S3_ENDPOINT"])
    kustomization = yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())
    [generator] = [g for g in kustomization["secretGenerator"] if g["name"] == SERVING_S3_SECRET]
    annotations = generator["options"]["annotations"]
    assert annotations["serving.kserve.io/s3-endpoint"] == endpoint.netloc
    assert annotations["serving.kserve.io/s3-usehttps"] == ("1" if endpoint.scheme == "https" else "0")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_who_holds_which_secret(manifests_rendered, overlay) -> None:
    objects = manifests_rendered[overlay]
    held = {f"{o['kind']}/{o['metadata']['name']}": {re.sub(r"-[a-z0-9]{10}$", "", s) for s in _secret_references(o)}
            for o in objects if _secret_references(o)}
    assert held == {
        "ServiceAccount/driftloop-serving": {SERVING_S3_SECRET},  # the predictor pods: read models
        "Deployment/driftloop-monitor": {MONITOR_S3_SECRET, "driftloop-monitor-tokens", SIGNING_SECRET},
    }  # the ServingRuntime holds none; the pipeline's Secrets are named by its IR (below)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_and_config_map_the_pipeline_names_is_rendered_with_its_keys(manifests_rendered,
                                                                                   overlay) -> None:
    objects = manifests_rendered[overlay]
    [_, platform] = list(yaml.safe_load_all(IR_PATH.read_text()))
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    named = set()
    for executor in executors.values():
        for source in executor.get("secretAsEnv", []):
            data = _data(one(objects, "Secret", source["secretName"]))  # as is: no hash suffix
            assert {k["secretKey"] for k in source["keyToEnv"]} <= set(data), source["secretName"]
            named.add(source["secretName"])
        for source in executor.get("configMapAsEnv", []):
            data = one(objects, "ConfigMap", source["configMapName"])["data"]
            assert {k["configMapKey"] for k in source["keyToEnv"]} <= set(data), source["configMapName"]
            named.add(source["configMapName"])
    assert named == {S3_SECRET, SIGNING_SECRET, VERIFY_CONFIG_MAP}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_payload_logs_through_minio_get_their_own_write_only_identity(manifests_rendered, overlay) -> None:
    """components/logger-storage: the ServiceAccount logger.storage names holds exactly its Secret, which has
    KServe's two keys (its example's, no other role's) and the s3-* annotations KServe's webhook turns into the
    agent's environment (credentials/s3 BuildSecretEnvs), path-style for MinIO; and the InferenceService's
    logger is what `driftloop deploy --logger-storage` builds, for the bucket and prefix the policies name."""
    from driftloop.deploy.inference_service import ServingConfig, build_inference_service, to_dict
    from driftloop.registry import ModelVersion

    objects = manifests_rendered[f"{overlay}+{LOGGER_STORAGE}"]
    plain = {(o["kind"], o["metadata"]["name"]) for o in manifests_rendered[overlay]}
    added = {(o["kind"], o["metadata"]["name"]) for o in objects} - plain
    assert added == {("ServiceAccount", "driftloop-logger"), ("Secret", "driftloop-s3-logger")}
    account = one(objects, "ServiceAccount", "driftloop-logger")
    assert account["automountServiceAccountToken"] is False and _secret_references(account) == {"driftloop-s3-logger"}
    assert not [b for b in objects if b["kind"] in ("RoleBinding", "ClusterRoleBinding")
                and any(s.get("name") == "driftloop-logger" for s in b.get("subjects", []))]
    secret = one(objects, "Secret", "driftloop-s3-logger")
    example = _env_file(MANIFESTS / "components" / LOGGER_STORAGE / "s3-logger.env.example")
    assert _data(secret) == {k: example[k] for k in KSERVE_S3_KEYS}
    assert example["AWS_ACCESS_KEY_ID"] not in {_env_file(MANIFESTS / "base" / f"s3-{r}.env.example")["AWS_ACCESS_KEY_ID"]
                                                for r in ROLES}
    annotations = secret["metadata"]["annotations"]
    serving = _secret(objects, SERVING_S3_SECRET)["metadata"]["annotations"]
    assert {k: annotations[k] for k in S3_ANNOTATIONS} == {k: serving[k] for k in S3_ANNOTATIONS}  # the same MinIO
    assert annotations["serving.kserve.io/s3-usevirtualbucket"] == "false"

    isvc = one(objects, "InferenceService", "churn")
    predictor = isvc["spec"]["predictor"]
    version = ModelVersion("churn", 1, "", predictor["model"]["modelFormat"]["name"], predictor["model"]["storageUri"], {})
    built = to_dict(build_inference_service(version, ServingConfig(
        namespace=isvc["metadata"]["namespace"], logger_storage="s3://driftloop/payload-logs")))
    assert predictor["logger"] == built["spec"]["predictor"]["logger"]
    assert predictor["logger"]["storage"]["serviceAccountName"] == account["metadata"]["name"]
    policy = json.loads((MANIFESTS / "minio-policies" / "logger.json").read_text())
    assert [s["Resource"] for s in policy["Statement"]] == [["arn:aws:s3:::driftloop/payload-logs/*"]]
    readme = (MANIFESTS / "README.md").read_text()
    assert "mc admin policy create $MINIO driftloop-logger manifests/minio-policies/logger.json" in readme
    assert "mc admin policy attach $MINIO driftloop-logger --user driftloop-logger" in readme


# --- the signing key ---------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_monitor_signs_with_the_key_from_a_file_and_trusts_its_public_half(manifests_rendered, manifests_tree,
                                                                              tmp_path, overlay) -> None:
    objects = manifests_rendered[overlay]
    key = _the_test_key(manifests_tree)
    pod = one(objects, "Deployment", "driftloop-monitor")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = _materialise(objects, container, pod["volumes"], tmp_path)
    assert SIGNING_KEY_ENV not in env  # a file, never the environment
    assert load_signing_key(env).key_id == key.key_id
    trust = Trust.from_env({VERIFY_KEY: env[VERIFY_KEY]})  # the ConfigMap alone anchors it
    assert trust.anchored and trust.check("d", b"x", key.sign("d", b"x"), "entry").key_id == key.key_id
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "signing-key"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "signing-key"]
    assert mount["readOnly"] is True and volume["secret"]["secretName"] == SIGNING_SECRET
    assert volume["secret"]["defaultMode"] == 0o400


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_model_server_gets_the_public_key_only_and_optionally(manifests_rendered, manifests_tree, tmp_path,
                                                                 overlay) -> None:
    objects = manifests_rendered[overlay]
    key = _the_test_key(manifests_tree)
    spec = one(objects, "ServingRuntime", "driftloop")["spec"]
    [container] = spec["containers"]
    env = _materialise(objects, container, spec.get("volumes", []), tmp_path)
    assert load_signing_key(env) is None  # nothing in its spec could sign
    trust = Trust.from_env(env)
    assert trust.anchored and trust.check("d", b"x", key.sign("d", b"x"), "manifest").key_id == key.key_id
    [var] = [v for v in container["env"] if v["name"] == VERIFY_KEY]
    assert var["valueFrom"]["configMapKeyRef"] == {"name": VERIFY_CONFIG_MAP, "key": VERIFY_KEY, "optional": True}
    # The generated pair is the one keygen wrote: the Secret's private key, the ConfigMap's public key.
    assert SigningKey.from_pem(_data(one(objects, "Secret", SIGNING_SECRET))[SIGNING_KEY].encode(), "secret").key_id \
        == key.key_id


def test_require_signatures_is_the_runtimes_documented_switch(manifests_rendered) -> None:
    """The ServingRuntime carries `--require_signatures` commented out; uncommented, the runtime requires them."""
    text = (MANIFESTS / "base" / "serving-runtime.yaml").read_text()
    assert re.search(r"^    # - --require_signatures$", text, re.MULTILINE)
    [container] = one(manifests_rendered["kubeflow"], "ServingRuntime")["spec"]["containers"]
    args = [a.replace("{{.Name}}", "churn") for a in container["args"]]
    assert runtime.build_parser().parse_args(args).require_signatures is None  # the environment decides
    assert runtime.build_parser().parse_args([*args, "--require_signatures"]).require_signatures is True


# --- nothing secret is committed -----------------------------------------------------------------

def test_no_key_material_or_credentials_are_committed() -> None:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        path = REPO_ROOT / name
        if not path.is_file() or path.suffix in (".png", ".ipynb", ".parquet", ".joblib"):
            continue
        text = path.read_text(errors="replace")
        assert not PRIVATE_PEM.search(text), f"{name} holds a private key"
        assert Path(name).name not in (*USER_SECRETS, *USER_KEYS), f"{name} is a user's secret file"
    for path in MANIFESTS.rglob("*"):
        if not path.is_file() or path.name in (*USER_SECRETS, *USER_KEYS):
            continue
        text = path.read_text()
        if path.suffix == ".yaml":
            assert all(doc.get("kind") != "Secret" for doc in yaml.safe_load_all(text) if doc), \
                f"{path}: Secrets are generated from git-ignored files, never written into a manifest"
        for line in text.splitlines():
            key, _, value = line.strip().partition("=")
            if key in KSERVE_S3_KEYS:
                assert value.startswith("<") and value.endswith(">"), f"{path}: {key} is not a placeholder"
        for default in ("minio123", "minioadmin"):  # well-known default keys
            assert default not in text, path
    # What a user makes stays out of git: each secret file beside its example, the key pair where keygen puts it.
    made = [example.with_suffix("") for name in USER_SECRETS for example in MANIFESTS.rglob(f"{name}.example")]
    made += [MANIFESTS / "base" / name for name in USER_KEYS] + [REPO_ROOT / PRIVATE_KEY_FILE]
    assert {p.name for p in made} >= {*USER_SECRETS, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE}
    for path in made:
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path.relative_to(REPO_ROOT))], cwd=REPO_ROOT)
        assert ignored.returncode == 0, f"{path.relative_to(REPO_ROOT)} is not git-ignored"


def test_the_readme_creates_and_attaches_each_roles_policy() -> None:
    readme = (MANIFESTS / "README.md").read_text()
    for role in ROLES:
        policy = json.loads((MANIFESTS / "minio-policies" / f"{role}.json").read_text())
        assert policy["Version"] == "2012-10-17"
        assert f"mc admin policy create $MINIO driftloop-{role} manifests/minio-policies/{role}.json" in readme
        assert f"mc admin policy attach $MINIO driftloop-{role} --user driftloop-{role}" in readme
