"""One registry test suite, run unchanged against every backend: a local directory and S3.

The S3 backend talks to a real S3-compatible server on 127.0.0.1 through the real minio client.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import random
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from driftloop.errors import IntegrityError, RegistryError, VersionExistsError
from driftloop.registry import CANARY, PRODUCTION, LocalRegistry, ModelRegistry, open_registry
from driftloop.storage import S3Settings

N_WRITERS = 8


@dataclass
class Backend:
    """A registry plus raw access to its storage, for tampering the way a person or a crash would."""

    registry: ModelRegistry
    uri: str
    env: dict[str, str]
    overwrite: Callable[[str, bytes], None]
    delete: Callable[[str], None]
    abandoned: Callable[[], int]  # registrations that died part-way (invisible leftovers)


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path) -> Backend:
    if request.param == "local":
        root = tmp_path / "registry"
        registry = open_registry(str(root))

        def overwrite(rel: str, data: bytes) -> None:
            path = root / rel
            path.chmod(0o644)
            path.write_bytes(data)

        def abandoned() -> int:
            staging = root / "models/churn/.staging"
            return len(list(staging.iterdir())) if staging.is_dir() else 0

        return Backend(registry, str(root), {}, overwrite, lambda rel: (root / rel).unlink(), abandoned)

    s3_server = request.getfixturevalue("s3_server")
    settings = S3Settings.from_env(s3_server.env)
    bucket = f"reg-{uuid.uuid4().hex[:12]}"
    uri = f"s3://{bucket}/team-a/registry"
    registry = open_registry(uri, settings)
    registry.ensure_bucket()
    client = settings.client()

    def s3_overwrite(rel: str, data: bytes) -> None:
        import io

        client.put_object(bucket, f"team-a/registry/{rel}", io.BytesIO(data), len(data))

    def s3_abandoned() -> int:
        return len(set(registry._claimed_numbers("churn")) - set(registry._version_numbers("churn")))

    return Backend(registry, uri, s3_server.env, s3_overwrite,
                   lambda rel: client.remove_object(bucket, f"team-a/registry/{rel}"), s3_abandoned)


def _model_dir(path: Path, payload: bytes) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.joblib").write_bytes(payload)
    return path


def _register(registry: ModelRegistry, tmp_path: Path, payload: bytes, name: str = "churn", **kwargs):
    model_dir = _model_dir(tmp_path / uuid.uuid4().hex, payload)
    return registry.register(name, model_dir, model_format="sklearn", lineage={"run_id": "r"}, metrics={"roc_auc": 0.8},
                             attachments={"spec.json": b"{}"}, actor="tester", **kwargs)


def test_versions_are_numbered_and_hold_exactly_the_model_and_checksums(backend, tmp_path) -> None:
    first = _register(backend.registry, tmp_path, b"model-one")
    second = _register(backend.registry, tmp_path, b"model-two")
    assert (first.version, second.version) == (1, 2)
    assert first.files["model/model.joblib"] == hashlib.sha256(b"model-one").hexdigest()
    assert set(first.files) == {"model/model.joblib", "model/driftloop-model.json", "spec.json"}
    # An s3:// storageUri ends in "/": KServe's storage initializer copies every key with that string prefix.
    assert first.storage_uri.rstrip("/").endswith("models/churn/versions/1/model")
    assert first.storage_uri.endswith("/") == first.storage_uri.startswith("s3://")
    fetched = backend.registry.fetch_model("churn", 2, tmp_path / "fetched")
    assert sorted(p.name for p in fetched.iterdir()) == ["driftloop-model.json", "model.joblib"]
    assert (fetched / "model.joblib").read_bytes() == b"model-two"
    manifest = json.loads((fetched / "driftloop-model.json").read_text())
    assert (manifest["version"], manifest["files"]) == (2, {"model.joblib": hashlib.sha256(b"model-two").hexdigest()})
    assert backend.registry.list_models() == ["churn"]


def test_promote_rollback_archive_and_history(backend, tmp_path) -> None:
    registry = backend.registry
    for payload in (b"a", b"b", b"c"):
        _register(registry, tmp_path, payload)
    registry.promote("churn", 1, actor="alice", reason="first")
    registry.set_alias("churn", CANARY, 2, actor="ct-pipeline", reason="canary")
    registry.promote("churn", actor="flagger-like", reason="canary healthy")  # promotes the canary
    assert registry.aliases("churn") == {PRODUCTION: 2}
    registry.promote("churn", 3, actor="alice")
    registry.set_alias("churn", "shadow", 1, actor="bob")

    registry.rollback("churn", actor="oncall", reason="bad v3")
    assert registry.aliases("churn") == {PRODUCTION: 2, "shadow": 1}
    registry.rollback("churn", actor="oncall", reason="v2 too")
    assert registry.aliases("churn")[PRODUCTION] == 1  # walks back, never forward again
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback("churn", actor="oncall")

    with pytest.raises(RegistryError, match="move the alias first"):
        registry.archive("churn", 1, actor="alice")
    registry.archive("churn", 3, actor="alice", reason="retired")
    with pytest.raises(RegistryError, match="archived"):
        registry.set_alias("churn", CANARY, 3, actor="alice")

    history = registry.history("churn")
    rollbacks = [e for e in history if e.action == "rollback"]
    assert [(e.from_version, e.to_version, e.actor, e.reason) for e in rollbacks] == [
        (3, 2, "oncall", "bad v3"), (2, 1, "oncall", "v2 too")]
    assert [e.action for e in history].count("register") == 3
    assert all(e.at for e in history)
    assert registry.verify("churn") == []


def test_writing_over_an_existing_version_is_refused(backend, tmp_path) -> None:
    _register(backend.registry, tmp_path, b"original")
    with pytest.raises(VersionExistsError):
        _register(backend.registry, tmp_path, b"impostor", version=1)
    assert backend.registry.read_file("churn", 1, "model/model.joblib") == b"original"
    assert [v.version for v in backend.registry.list_versions("churn")] == [1]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_model_file_is_detected_before_loading(backend, tmp_path, damage) -> None:
    _register(backend.registry, tmp_path, b"0123456789" * 100)
    rel = "models/churn/versions/1/model/model.joblib"
    data = bytearray(b"0123456789" * 100)
    if damage == "flip":
        data[500] ^= 0x01
    else:
        data = data[:300]
    backend.overwrite(rel, bytes(data))
    with pytest.raises(IntegrityError, match="checksum mismatch for churn v1 model/model.joblib"):
        backend.registry.fetch_model("churn", 1, tmp_path / "out")
    assert not (tmp_path / "out" / "model.joblib").exists()
    assert any("checksum mismatch" in p for p in backend.registry.verify("churn"))


def test_audit_chain_detects_edited_and_deleted_entries(backend, tmp_path) -> None:
    registry = backend.registry
    _register(registry, tmp_path, b"a")
    _register(registry, tmp_path, b"b")
    registry.promote("churn", 1, actor="alice")
    registry.promote("churn", 2, actor="alice")
    assert registry.verify("churn") == []
    entries = registry.history("churn")
    if isinstance(registry, LocalRegistry):
        path = Path(backend.uri) / "models/churn/audit.jsonl"
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:2] + [lines[2].replace('"alice"', '"mallory"')] + lines[3:]))
        assert any("entry 2" in p and "edited" in p for p in registry.verify("churn"))
        path.write_text("".join(lines[:1] + lines[2:]))
    else:
        import json

        edited = entries[2].to_dict() | {"actor": "mallory"}
        backend.overwrite("models/churn/audit/0000000002.json", json.dumps(edited).encode())
        assert any("entry 2" in p and "edited" in p for p in registry.verify("churn"))
        backend.overwrite("models/churn/audit/0000000002.json", json.dumps(entries[2].to_dict()).encode())
        assert registry.verify("churn") == []
        backend.delete("models/churn/audit/0000000001.json")
    assert any("removed" in p or "does not follow" in p for p in registry.verify("churn"))


def _writer(uri: str, env: dict, index: int, workdir: str, queue) -> None:
    os.environ.update(env)
    registry = open_registry(uri)
    payload = f"writer-{index}-".encode() + os.urandom(64 * 1024)
    model_dir = _model_dir(Path(workdir) / f"w{index}", payload)
    version = registry.register("churn", model_dir, model_format="sklearn", lineage={"run_id": str(index)},
                                metrics={}, attachments={}, actor=f"writer-{index}")
    queue.put((index, version.version, hashlib.sha256(payload).hexdigest()))


def test_concurrent_writers_get_distinct_consecutive_versions(backend, tmp_path) -> None:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    writers = [ctx.Process(target=_writer, args=(backend.uri, backend.env, i, str(tmp_path), queue))
               for i in range(N_WRITERS)]
    for process in writers:
        process.start()
    results = [queue.get(timeout=120) for _ in writers]
    for process in writers:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert sorted(version for _, version, _ in results) == list(range(1, N_WRITERS + 1))
    for _, version, digest in results:
        assert backend.registry.get_version("churn", version).files["model/model.joblib"] == digest
        data = backend.registry.read_file("churn", version, "model/model.joblib")
        assert hashlib.sha256(data).hexdigest() == digest
    registers = [e for e in backend.registry.history("churn") if e.action == "register"]
    assert sorted(e.to_version for e in registers) == list(range(1, N_WRITERS + 1))
    assert backend.registry.verify("churn") == []


def _endless_writer(uri: str, env: dict, workdir: str, started) -> None:
    os.environ.update(env)
    registry = open_registry(uri)
    payload = os.urandom(4 * 1024 * 1024)  # large enough that a kill often lands mid-write
    model_dir = _model_dir(Path(workdir) / f"endless-{os.getpid()}", payload)
    started.set()
    while True:
        registry.register("churn", model_dir, model_format="sklearn", lineage={}, metrics={},
                          attachments={"profile.json": payload[:1024]}, actor="endless")


def test_sigkill_at_any_point_leaves_no_partial_version(backend, tmp_path) -> None:
    ctx = mp.get_context("spawn")
    rng = random.Random(7)
    kills = 0
    # At least 6 kills, and more (up to 15) until one has landed inside a registration.
    while kills < 6 or (backend.abandoned() == 0 and kills < 15):
        started = ctx.Event()
        process = ctx.Process(target=_endless_writer, args=(backend.uri, backend.env, str(tmp_path), started))
        process.start()
        assert started.wait(timeout=120), "writer did not start"
        # Somewhere inside a registration; on a loaded machine the first one starts late, so later
        # attempts wait longer.
        time.sleep(rng.uniform(0.05, 1.5 if kills < 6 else 4.0))
        os.kill(process.pid, signal.SIGKILL)
        kills += 1
        process.join()
        versions = backend.registry.list_versions("churn")  # listing never fails
        for version in versions:
            for rel in version.files:
                backend.registry.read_file("churn", version.version, rel)  # complete and intact
    assert backend.abandoned() >= 1, "no kill landed inside a registration; the test proved nothing"
    assert backend.registry.verify("churn") == []
    survivor = _register(backend.registry, tmp_path, b"after the crashes")
    assert survivor.version > max((v.version for v in versions), default=0)
    assert backend.registry.read_file("churn", survivor.version, "model/model.joblib") == b"after the crashes"
