"""The attack of issue #11, on both backends: someone who can write the registry's storage, but holds no
signing key, swaps ``model.joblib`` for a pickle that runs code, updates its sha256 in ``version.json`` and
the manifest, edits the register entry and recomputes the audit chain and head. ``verify`` reports it, the
gateway and the runtime refuse it, and nothing is unpickled."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from driftloop.errors import IntegrityError, RegistryError
from driftloop.model_dir import ModelManifest
from driftloop.registry import AuditEntry, ModelRegistry, open_registry
from driftloop.registry.base import AUDIT_DOMAIN, VERSION_DOMAIN, record_payload
from driftloop.serving import runtime
from driftloop.serving.gateway import Gateway
from driftloop.serving.versions import ServedVersion
from driftloop.signing import SigningKey, Trust
from driftloop.storage import S3Settings

from ..conftest import REPO_ROOT, run_cli

NAME = "churn"
VERSION_DIR = f"models/{NAME}/versions/2"


class _Payload:
    """Unpickling this creates the marker file: evidence that attacker code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@dataclass
class Store:
    """Raw read/write access to a registry's storage: what the attacker has (and a reader for checking)."""

    uri: str
    env: dict[str, str]
    read: Callable[[str], bytes]
    write: Callable[[str, bytes], None]
    audit: Callable[[], list[dict]]
    write_audit: Callable[[list[dict]], None]
    reader: Callable[..., ModelRegistry]


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> Store:
    if request.param == "local":
        root = tmp_path / "registry"

        def write(rel: str, data: bytes) -> None:
            path = root / rel
            if path.exists():
                path.chmod(0o644)  # stored files are read-only; their owner can change that
            path.write_bytes(data)

        audit_path = root / "models" / NAME / "audit.jsonl"

        def write_audit(entries: list[dict]) -> None:
            audit_path.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))
            head = {"seq": entries[-1]["seq"], "hash": entries[-1]["hash"]}
            (root / "models" / NAME / "audit.head").write_text(json.dumps(head))

        return Store(str(root), {}, lambda rel: (root / rel).read_bytes(), write,
                     lambda: [json.loads(line) for line in audit_path.read_text().splitlines()], write_audit,
                     lambda trust=None: open_registry(str(root), trust=trust))

    s3_server = request.getfixturevalue("s3_server")
    settings = S3Settings.from_env(s3_server.env)
    client = settings.client()
    bucket = f"sig-{uuid.uuid4().hex[:12]}"
    client.make_bucket(bucket)
    prefix = "team-a/registry"

    def s3_read(rel: str) -> bytes:
        response = client.get_object(bucket, f"{prefix}/{rel}")
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def s3_write(rel: str, data: bytes) -> None:
        client.put_object(bucket, f"{prefix}/{rel}", io.BytesIO(data), len(data))

    def s3_audit() -> list[dict]:
        keys = sorted(o.object_name for o in client.list_objects(bucket, f"{prefix}/models/{NAME}/audit/"))
        return [json.loads(s3_read(k[len(prefix) + 1:])) for k in keys]

    def s3_write_audit(entries: list[dict]) -> None:
        for entry in entries:
            s3_write(f"models/{NAME}/audit/{entry['seq']:010d}.json", json.dumps(entry, sort_keys=True).encode())
        s3_write(f"models/{NAME}/audit-head.json", json.dumps({"seq": entries[-1]["seq"],
                                                               "hash": entries[-1]["hash"]}).encode())

    uri = f"s3://{bucket}/{prefix}"
    return Store(uri, s3_server.env, s3_read, s3_write, s3_audit, s3_write_audit,
                 lambda trust=None: open_registry(uri, settings, trust=trust))


@pytest.fixture
def registered(store: Store, tmp_path: Path) -> Store:
    """v1 and v2 registered and signed by the session's key; v2 in production."""
    registry = store.reader()
    for payload in (b"model one", b"model two"):
        source = tmp_path / uuid.uuid4().hex
        source.mkdir()
        (source / "model.joblib").write_bytes(payload)
        registry.register(NAME, source, model_format="sklearn", lineage={"run_id": payload.decode()}, metrics={},
                          attachments={"spec.json": b"{}"}, actor="ct-pipeline")
    registry.promote(NAME, 1, actor="alice")
    registry.promote(NAME, 2, actor="alice")
    assert registry.verify(NAME) == []
    return store


def _attack(store: Store, marker: Path, how: str, attacker: SigningKey | None = None, trail: bool = True) -> None:
    """Swaps v2's model for the payload and makes every hash agree with it again; with ``trail``, also the
    register entry's record of the files, the chain after it and the head.

    ``how``: ``stale`` leaves the old signatures in place; ``stripped`` removes them from what it rewrote;
    ``forged`` signs with the attacker's own key and publishes it in the registry.
    """
    payload = pickle.dumps(_Payload(marker))
    digest = hashlib.sha256(payload).hexdigest()
    store.write(f"{VERSION_DIR}/model/model.joblib", payload)

    manifest = ModelManifest.from_json(store.read(f"{VERSION_DIR}/model/driftloop-model.json"))
    manifest = ModelManifest(**{**json.loads(manifest.to_json()), "files": {"model.joblib": digest}})
    if how == "stripped":
        manifest = ModelManifest(**{**json.loads(manifest.to_json()), "signature": None})
    elif how == "forged":
        manifest = manifest.signed(attacker)
    manifest_bytes = manifest.to_json().encode()
    store.write(f"{VERSION_DIR}/model/driftloop-model.json", manifest_bytes)

    record = json.loads(store.read(f"{VERSION_DIR}/version.json"))
    record["files"].update({"model/model.joblib": digest,
                            "model/driftloop-model.json": hashlib.sha256(manifest_bytes).hexdigest()})
    if how == "stripped":
        record.pop("signature")
    elif how == "forged":
        record["signature"] = attacker.sign(VERSION_DOMAIN, record_payload(record, NAME, 2))
    store.write(f"{VERSION_DIR}/version.json", json.dumps(record, indent=2, sort_keys=True).encode())
    if how == "forged":
        store.write(f"keys/{attacker.key_id}.pub", attacker.public_pem())
    if not trail:
        return

    entries = store.audit()
    edited = next(i for i, e in enumerate(entries) if e["action"] == "register" and e["to_version"] == 2)
    entries[edited]["evidence"]["files"] = record["files"]
    for i in range(edited, len(entries)):  # recompute the chain from the edit on, and the head
        entries[i]["prev_hash"] = entries[i - 1]["hash"] if i else ""
        entries[i]["hash"] = AuditEntry.digest(entries[i])
        if how == "stripped":
            entries[i]["signature"] = None
        elif how == "forged":
            entries[i]["signature"] = attacker.sign(AUDIT_DOMAIN, entries[i]["hash"].encode())
    store.write_audit(entries)


def _copy_model_dir(store: Store, dest: Path) -> Path:
    """The model directory as KServe's storage initializer copies it: the bytes, unchecked."""
    dest.mkdir()
    for name in ("model.joblib", "driftloop-model.json"):
        (dest / name).write_bytes(store.read(f"{VERSION_DIR}/model/{name}"))
    return dest


EXPECTED = {  # what verify says about v2, and about the register entry the attack edited
    "stale": ("signature does not match the content", "audit entry 1 of churn: signature does not match"),
    "stripped": ("signature was removed", "audit entry 1 of churn is unsigned but follows signed entries"),
    "forged": ("which this reader does not trust", "audit entry 1 of churn is signed by key"),
}


@pytest.mark.parametrize("how", ["stale", "stripped", "forged"])
def test_a_swapped_model_with_recomputed_hashes_and_chain_is_refused_and_never_unpickled(
        registered: Store, tmp_path: Path, how: str) -> None:
    marker = tmp_path / "pwned"
    _attack(registered, marker, how, attacker=SigningKey.generate())
    reader = registered.reader()  # holds the session's key as its anchor (DRIFTLOOP_SIGNING_KEY_FILE)

    problems = reader.verify(NAME)
    version_problem, entry_problem = EXPECTED[how]
    assert any(p.startswith("v2: ") and version_problem in p for p in problems), problems
    assert any(p.startswith("audit: ") and entry_problem in p for p in problems), problems
    # The hash chain alone would have passed: the attack recomputed it.
    assert not any("does not match its hash" in p or "does not follow" in p for p in problems)

    with pytest.raises(IntegrityError):
        reader.fetch_model(NAME, 2, tmp_path / "fetched")
    assert not (tmp_path / "fetched" / "model.joblib").exists()
    with pytest.raises(IntegrityError):
        ServedVersion.load(registered.reader(), NAME, 2)  # what the gateway and the monitor load with
    with pytest.raises(IntegrityError, match="the audit trail of churn cannot be trusted"):
        registered.reader().aliases(NAME)  # nothing follows the forged trail's alias moves
    gateway = Gateway(registered.reader())
    asyncio.run(gateway.sync())
    assert NAME not in gateway.models

    directory = _copy_model_dir(registered, tmp_path / "mnt-models")
    flags = ["--require_signatures"] if how == "stripped" else []  # a bare directory cannot tell stripped from old
    assert runtime.main(["--model_name=churn", f"--model_dir={directory}", "--http_port=0", *flags]) == \
        runtime.EXIT_CANNOT_SERVE
    assert not marker.exists(), "the payload was unpickled"


@pytest.mark.parametrize("how", ["stripped", "forged"])
def test_with_the_trail_untouched_the_gateway_refuses_the_version_itself(registered: Store, tmp_path: Path,
                                                                          how: str) -> None:
    marker = tmp_path / "pwned"
    _attack(registered, marker, how, attacker=SigningKey.generate(), trail=False)
    problems = registered.reader().verify(NAME)
    assert any(p.startswith("v2: ") and EXPECTED[how][0] in p for p in problems), problems
    assert "v2: its files differ from the hashes its register entry recorded" in problems
    gateway = Gateway(registered.reader())
    asyncio.run(gateway.sync())
    assert NAME not in gateway.models  # production is the tampered v2: nothing of it serves
    assert 'driftloop_model_load_failures_total{model="churn",version="2"} 1.0' in \
        generate_latest(gateway.metrics.registry).decode()
    assert not marker.exists(), "the payload was unpickled"


def test_verify_and_the_runtime_say_so_in_one_line(registered: Store, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _attack(registered, marker, "stale")
    verify = run_cli("models", "verify", "--registry", registered.uri, env=registered.env)
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert "v2: churn v2 version.json: signature does not match the content" in verify.stdout
    served = subprocess.run(
        [sys.executable, "-m", "driftloop.serving.runtime", "--model_name=churn",
         f"--model_dir={_copy_model_dir(registered, tmp_path / 'mnt-models')}", "--http_port=0"],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert served.returncode == runtime.EXIT_CANNOT_SERVE
    assert served.stderr.strip().count("\n") == 0 and "manifest: signature does not match" in served.stderr
    assert not marker.exists()


def test_with_every_signature_stripped_only_the_require_policy_tells_it_from_an_old_registry(
        registered: Store, tmp_path: Path) -> None:
    """Stripping every signature in the registry makes it look written before signing: a reader that
    requires signatures refuses it; one that does not lists every version as unsigned."""
    marker = tmp_path / "pwned"
    _attack(registered, marker, "stripped")
    v1 = "models/churn/versions/1"
    manifest = json.dumps({**json.loads(registered.read(f"{v1}/model/driftloop-model.json")), "signature": None})
    registered.write(f"{v1}/model/driftloop-model.json", manifest.encode())
    record = json.loads(registered.read(f"{v1}/version.json"))
    record.pop("signature")
    record["files"]["model/driftloop-model.json"] = hashlib.sha256(manifest.encode()).hexdigest()
    registered.write(f"{v1}/version.json", json.dumps(record).encode())
    entries = registered.audit()
    for entry in entries:
        entry["signature"] = None
    entries[0]["evidence"]["files"] = record["files"]
    for i, entry in enumerate(entries):
        entry["prev_hash"] = entries[i - 1]["hash"] if i else ""
        entry["hash"] = AuditEntry.digest(entry)
    registered.write_audit(entries)

    lenient = registered.reader().verify_report(NAME)
    assert lenient.problems == [] and lenient.unsigned_versions == [1, 2] and lenient.signed_entries == 0

    strict = registered.reader(trust=Trust.from_env(require=True))
    problems = strict.verify(NAME)
    assert any(p.startswith("v2: ") and "requires signatures" in p for p in problems)
    with pytest.raises(IntegrityError, match="this reader requires signatures"):
        strict.fetch_model(NAME, 2, tmp_path / "fetched")
    gateway = Gateway(strict)
    asyncio.run(gateway.sync())
    assert NAME not in gateway.models
    directory = _copy_model_dir(registered, tmp_path / "mnt-models")
    assert runtime.main(["--model_name=churn", f"--model_dir={directory}", "--http_port=0",
                         "--require_signatures"]) == runtime.EXIT_CANNOT_SERVE
    assert not marker.exists()


def test_versions_from_before_signing_stay_usable_and_signing_once_begun_cannot_lapse(
        s3_server, tmp_path: Path, monkeypatch, capsys) -> None:
    """An S3 registry written without a key (as before signing), then by a writer with the key."""
    session_key = os.environ["DRIFTLOOP_SIGNING_KEY_FILE"]
    monkeypatch.delenv("DRIFTLOOP_SIGNING_KEY_FILE")
    monkeypatch.setenv("HOME", str(tmp_path))  # no key at the default path either
    settings = S3Settings.from_env(s3_server.env)
    bucket = f"legacy-{uuid.uuid4().hex[:12]}"
    settings.client().make_bucket(bucket)
    uri = f"s3://{bucket}/registry"

    def register(registry: ModelRegistry, payload: bytes):
        source = tmp_path / uuid.uuid4().hex
        source.mkdir()
        (source / "model.joblib").write_bytes(payload)
        return registry.register(NAME, source, model_format="sklearn", lineage={}, metrics={}, attachments={},
                                 actor="ct-pipeline")

    keyless = open_registry(uri, settings)
    assert register(keyless, b"old").signature is None
    keyless.promote(NAME, 1, actor="alice")
    assert capsys.readouterr().err.count("writing unsigned versions and audit entries") == 1

    monkeypatch.setenv("DRIFTLOOP_SIGNING_KEY_FILE", session_key)
    signer = open_registry(uri, settings)
    assert register(signer, b"new").signature.startswith("ed25519:")
    signer.set_alias(NAME, "canary", 2, actor="ct-pipeline")

    reader = open_registry(uri, settings)
    assert reader.fetch_model(NAME, 1, tmp_path / "v1").joinpath("model.joblib").read_bytes() == b"old"
    report = reader.verify_report(NAME)
    assert report.problems == []
    assert (report.unsigned_versions, report.signed_versions) == ([1], [2])
    assert (report.unsigned_entries, report.signed_entries) == (2, 2)

    strict = open_registry(uri, settings, trust=Trust.from_env(require=True))
    assert strict.aliases(NAME) == {"production": 1, "canary": 2}  # the old entries are history, not a lapse
    with pytest.raises(IntegrityError, match="churn v1 version.json is unsigned, and this reader requires"):
        strict.fetch_model(NAME, 1, tmp_path / "strict-v1")
    assert strict.fetch_model(NAME, 2, tmp_path / "strict-v2").joinpath("model.joblib").read_bytes() == b"new"

    monkeypatch.delenv("DRIFTLOOP_SIGNING_KEY_FILE")
    with pytest.raises(RegistryError, match="the audit trail of 'churn' is signed and this process has no signing"):
        open_registry(uri, settings).promote(NAME, 2, actor="mallory")
    with pytest.raises(RegistryError, match="is signed and this process has no signing key"):
        register(open_registry(uri, settings), b"sneaked in")
    assert [v.version for v in reader.list_versions(NAME)] == [1, 2]
