"""The local-directory model registry: versions, checksums, aliases, the audit chain, concurrency."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import re
import stat
import threading
from pathlib import Path

import pytest

from driftloop.errors import ConfigError, IntegrityError, ModelNotFoundError, RegistryError
from driftloop.registry import CANARY, PRODUCTION, AuditEntry, LocalRegistry, open_registry, verify_chain

NAME = "churn"


@pytest.fixture
def registry(tmp_path: Path) -> LocalRegistry:
    return LocalRegistry(tmp_path / "registry")


def _model_dir(path: Path, payload: bytes) -> Path:
    """A model directory with the model file and a nested extra file."""
    (path / "extra").mkdir(parents=True, exist_ok=True)
    (path / "model.joblib").write_bytes(payload)
    (path / "extra" / "settings.json").write_text('{"threshold": 0.5}')
    return path


def _register(registry: LocalRegistry, tmp_path: Path, payload: bytes, name: str = NAME, run_id: str = "run-1"):
    model_dir = _model_dir(tmp_path / f"src-{hashlib.sha256(payload).hexdigest()[:8]}", payload)
    return registry.register(
        name, model_dir, model_format="sklearn", lineage={"run_id": run_id}, metrics={"roc_auc": 0.8},
        attachments={"spec.json": b'{"target": "churned"}', "model_card.md": b"# card\n"}, actor="tester",
        reason="test",
    )


def _stored(registry: LocalRegistry, version: int, relpath: str, name: str = NAME) -> Path:
    return registry.root / "models" / name / "versions" / str(version) / relpath


# -- versions ------------------------------------------------------------------------------------


def test_register_numbers_versions_and_records_checksums(registry: LocalRegistry, tmp_path: Path) -> None:
    v1 = _register(registry, tmp_path, b"model one", run_id="run-1")
    v2 = _register(registry, tmp_path, b"model two", run_id="run-2")

    assert (v1.version, v2.version) == (1, 2)
    assert [mv.version for mv in registry.list_versions(NAME)] == [1, 2]
    assert registry.list_models() == [NAME]
    assert set(v1.files) == {"model/model.joblib", "model/extra/settings.json", "model/driftloop-model.json",
                             "spec.json", "model_card.md"}
    assert (v1.layout, v2.layout) == (2, 2)
    assert v1.files["model/model.joblib"] == hashlib.sha256(b"model one").hexdigest()
    assert v2.files["model/model.joblib"] == hashlib.sha256(b"model two").hexdigest()
    assert v1.metrics == {"roc_auc": 0.8}
    assert v2.lineage == {"run_id": "run-2"}
    assert registry.get_version(NAME, 2) == v2
    # The storage URI is the directory KServe serves: the model files and their manifest, nothing else.
    served = Path(v2.storage_uri)
    assert sorted(p.relative_to(served).as_posix() for p in served.rglob("*") if p.is_file()) == [
        "driftloop-model.json", "extra/settings.json", "model.joblib",
    ]
    manifest = json.loads((served / "driftloop-model.json").read_text())
    assert (manifest["model"], manifest["version"], manifest["layout"]) == (NAME, 2, 2)
    assert manifest["files"] == {"model.joblib": hashlib.sha256(b"model two").hexdigest(),
                                 "extra/settings.json": v2.files["model/extra/settings.json"]}
    assert manifest["spec"] == {"target": "churned"} and manifest["lineage"] == {"run_id": "run-2"}
    assert registry.find_version_by_run(NAME, "run-2") == v2
    assert registry.find_version_by_run(NAME, "run-9") is None


def test_stored_files_are_read_only(registry: LocalRegistry, tmp_path: Path) -> None:
    _register(registry, tmp_path, b"model one")

    for relpath in ("model/model.joblib", "spec.json", "version.json"):
        assert stat.S_IMODE(_stored(registry, 1, relpath).stat().st_mode) == 0o444


def test_unknown_model_or_version_raises_not_found(registry: LocalRegistry, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no registered model named 'churn'"):
        registry.get_version(NAME, 1)
    _register(registry, tmp_path, b"model one")
    with pytest.raises(ModelNotFoundError, match="model 'churn' has no version 5"):
        registry.get_version(NAME, 5)
    with pytest.raises(ModelNotFoundError, match="has no file 'notes.txt'"):
        registry.read_file(NAME, 1, "notes.txt")


def test_empty_model_directory_is_refused(registry: LocalRegistry, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    with pytest.raises(RegistryError, match="holds no files"):
        registry.register(NAME, tmp_path / "empty", model_format="sklearn", lineage={}, metrics={},
                          attachments={}, actor="tester")
    assert registry.list_models() == []


@pytest.mark.parametrize(
    "attachment", ["version.json", "model/extra.bin", "reports/evaluation.html", "../escape.txt", ".hidden", ""]
)
def test_unusable_attachment_names_are_refused_and_nothing_is_left(
    registry: LocalRegistry, tmp_path: Path, attachment: str
) -> None:
    model_dir = _model_dir(tmp_path / "src", b"model")

    with pytest.raises(RegistryError, match=f"attachment name '{re.escape(attachment)}'"):
        registry.register(NAME, model_dir, model_format="sklearn", lineage={}, metrics={},
                          attachments={attachment: b"x"}, actor="tester")

    assert registry.list_versions(NAME) == []
    assert registry.history(NAME) == []
    written = [p for p in registry.root.rglob("*") if p.is_file() and p.name != ".lock"]
    assert written == []


def test_attachment_named_like_the_model_directory_is_refused(registry: LocalRegistry, tmp_path: Path) -> None:
    model_dir = _model_dir(tmp_path / "src", b"model")

    with pytest.raises(RegistryError, match="attachment name 'model'"):
        registry.register(NAME, model_dir, model_format="sklearn", lineage={}, metrics={},
                          attachments={"model": b"x"}, actor="tester")


@pytest.mark.parametrize(
    "bad_name", ["Churn", "-churn", "churn-", "ch_urn", "churn.v2", "../etc", "a" * 46, "", "churn model"]
)
def test_invalid_model_names_raise_config_error(registry: LocalRegistry, tmp_path: Path, bad_name: str) -> None:
    with pytest.raises(ConfigError, match="invalid model name"):
        _register(registry, tmp_path, b"model", name=bad_name)
    with pytest.raises(ConfigError, match="invalid model name"):
        registry.list_versions(bad_name)
    assert not (registry.root / "models").exists() or registry.list_models() == []


@pytest.mark.parametrize("good_name", ["a", "churn", "churn-v2", "7up", "a" * 45])
def test_valid_model_names_register(registry: LocalRegistry, tmp_path: Path, good_name: str) -> None:
    assert _register(registry, tmp_path, b"model", name=good_name).version == 1
    assert registry.list_models() == [good_name]


def test_open_registry_picks_the_local_backend(tmp_path: Path) -> None:
    assert isinstance(open_registry(f"file://{tmp_path}"), LocalRegistry)
    with pytest.raises(ConfigError, match="no registry URI"):
        open_registry("")


# -- checksums -----------------------------------------------------------------------------------


def test_read_file_returns_verified_bytes(registry: LocalRegistry, tmp_path: Path) -> None:
    _register(registry, tmp_path, b"model one")

    assert registry.read_file(NAME, 1, "model/model.joblib") == b"model one"
    assert registry.read_file(NAME, 1, "spec.json") == b'{"target": "churned"}'


@pytest.mark.parametrize("relpath", ["model/model.joblib", "spec.json"])
def test_a_flipped_byte_raises_integrity_error(registry: LocalRegistry, tmp_path: Path, relpath: str) -> None:
    _register(registry, tmp_path, b"model one")
    stored = _stored(registry, 1, relpath)
    stored.chmod(0o644)
    data = bytearray(stored.read_bytes())
    data[3] ^= 0x01
    stored.write_bytes(bytes(data))

    with pytest.raises(IntegrityError, match=f"checksum mismatch for churn v1 {relpath}"):
        registry.read_file(NAME, 1, relpath)


def test_a_deleted_file_is_reported(registry: LocalRegistry, tmp_path: Path) -> None:
    _register(registry, tmp_path, b"model one")
    _stored(registry, 1, "spec.json").unlink()

    with pytest.raises(ModelNotFoundError, match="'spec.json' is missing from storage"):
        registry.read_file(NAME, 1, "spec.json")


def test_fetch_model_copies_only_the_model_directory(registry: LocalRegistry, tmp_path: Path) -> None:
    _register(registry, tmp_path, b"model one")

    dest = registry.fetch_model(NAME, 1, tmp_path / "fetched")

    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == ["driftloop-model.json", "extra/settings.json", "model.joblib"]
    assert (dest / "model.joblib").read_bytes() == b"model one"


def test_fetch_model_refuses_a_tampered_model(registry: LocalRegistry, tmp_path: Path) -> None:
    _register(registry, tmp_path, b"model one")
    stored = _stored(registry, 1, "model/model.joblib")
    stored.chmod(0o644)
    stored.write_bytes(b"model 0ne")

    with pytest.raises(IntegrityError):
        registry.fetch_model(NAME, 1, tmp_path / "fetched")


# -- aliases and audit ---------------------------------------------------------------------------


@pytest.fixture
def two_versions(registry: LocalRegistry, tmp_path: Path) -> LocalRegistry:
    _register(registry, tmp_path, b"model one", run_id="run-1")
    _register(registry, tmp_path, b"model two", run_id="run-2")
    return registry


def test_alias_moves_are_recorded_with_from_and_to(two_versions: LocalRegistry) -> None:
    registry = two_versions
    registry.set_alias(NAME, PRODUCTION, 1, actor="alice", action="promote", reason="first")
    registry.set_alias(NAME, CANARY, 2, actor="bob", reason="try it")
    registry.set_alias(NAME, PRODUCTION, 2, actor="bob", action="promote", reason="canary was good")
    registry.remove_alias(NAME, CANARY, actor="bob", reason="promoted")

    assert registry.aliases(NAME) == {PRODUCTION: 2}
    assert registry.get_alias(NAME, PRODUCTION).version == 2
    assert registry.get_alias(NAME, CANARY) is None
    moves = [(e.action, e.alias, e.from_version, e.to_version, e.actor) for e in registry.history(NAME)]
    assert moves == [
        ("register", None, None, 1, "tester"),
        ("register", None, None, 2, "tester"),
        ("promote", PRODUCTION, None, 1, "alice"),
        ("set-alias", CANARY, None, 2, "bob"),
        ("promote", PRODUCTION, 1, 2, "bob"),
        ("remove-alias", CANARY, 2, None, "bob"),
    ]
    assert [e.seq for e in registry.history(NAME)] == list(range(6))


def test_alias_must_point_at_an_existing_version(two_versions: LocalRegistry) -> None:
    with pytest.raises(ModelNotFoundError):
        two_versions.set_alias(NAME, PRODUCTION, 3, actor="alice")
    assert two_versions.aliases(NAME) == {}
    assert [e.action for e in two_versions.history(NAME)] == ["register", "register"]


@pytest.mark.parametrize("alias", ["Production", "1st", "prod!", "", "p" * 41])
def test_invalid_alias_raises_config_error(two_versions: LocalRegistry, alias: str) -> None:
    with pytest.raises(ConfigError, match="invalid alias"):
        two_versions.set_alias(NAME, alias, 1, actor="alice")


@pytest.fixture
def audited(two_versions: LocalRegistry) -> LocalRegistry:
    two_versions.set_alias(NAME, PRODUCTION, 1, actor="alice", action="promote")
    two_versions.set_alias(NAME, PRODUCTION, 2, actor="alice", action="promote")
    two_versions.record(NAME, "run-finished", actor="ct-pipeline", version=2, reason="run run-2 succeeded")
    return two_versions


def _stored_trail(registry: LocalRegistry) -> list[AuditEntry]:
    """The trail as stored now (a reader that has read it before reads only what follows, and refuses
    entries whose signatures fail)."""
    return [AuditEntry(**json.loads(line)) for line in _audit_lines(registry)[1]]


def _audit_lines(registry: LocalRegistry) -> tuple[Path, list[str]]:
    path = registry.root / "models" / NAME / "audit.jsonl"
    return path, path.read_text().splitlines()


def test_intact_audit_chain_verifies(audited: LocalRegistry) -> None:
    history = audited.history(NAME)

    assert len(history) == 5
    assert verify_chain(history) == []
    assert history[-1].action == "run-finished" and history[-1].reason == "run run-2 succeeded"


def test_an_edited_audit_line_is_detected(audited: LocalRegistry) -> None:
    path, lines = _audit_lines(audited)
    entry = json.loads(lines[2])
    entry["actor"] = "mallory"
    lines[2] = json.dumps(entry, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")

    problems = verify_chain(_stored_trail(audited))

    assert problems == ["entry 2: content does not match its hash (edited)"]


def test_an_edited_line_with_a_recomputed_hash_breaks_the_next_link(audited: LocalRegistry) -> None:
    path, lines = _audit_lines(audited)
    entry = json.loads(lines[2])
    entry["to_version"] = 2
    entry["hash"] = AuditEntry.digest(entry)
    lines[2] = json.dumps(entry, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")

    assert verify_chain(_stored_trail(audited)) == ["entry 3: does not follow the entry before it"]


def test_registry_verify_reports_chain_and_file_problems(audited: LocalRegistry) -> None:
    assert audited.verify(NAME) == []
    stored = _stored(audited, 2, "spec.json")
    stored.chmod(0o644)
    stored.write_bytes(b'{"target": "churn"}')
    path, lines = _audit_lines(audited)
    path.write_text("\n".join(lines[:1] + lines[2:]) + "\n")

    problems = audited.verify(NAME)

    assert any(p.startswith("audit: ") and "removed" in p for p in problems)
    assert any(p.startswith("v2: ") and "checksum mismatch" in p and "spec.json" in p for p in problems)


def test_a_deleted_audit_line_is_detected(audited: LocalRegistry) -> None:
    path, lines = _audit_lines(audited)
    del lines[1]
    path.write_text("\n".join(lines) + "\n")

    problems = verify_chain(_stored_trail(audited))

    assert any("an entry was removed" in p for p in problems)
    assert any("does not follow the entry before it" in p for p in problems)


def test_a_deleted_last_audit_line_is_detected(two_versions: LocalRegistry) -> None:
    two_versions.set_alias(NAME, PRODUCTION, 1, actor="alice", action="promote")
    two_versions.set_alias(NAME, PRODUCTION, 2, actor="alice", action="promote")
    path, lines = _audit_lines(two_versions)
    path.write_text("\n".join(lines[:-1]) + "\n")

    assert two_versions.verify(NAME) != []


# -- crash leftovers and concurrency ---------------------------------------------------------------


def test_leftover_staging_directory_is_never_listed(registry: LocalRegistry, tmp_path: Path) -> None:
    _register(registry, tmp_path, b"model one")
    for name in (NAME, "ghost"):  # a crashed second version, and a crashed first version of a new model
        leftover = registry.root / "models" / name / ".staging" / "0123456789abcdef"
        (leftover / "model").mkdir(parents=True)
        (leftover / "model" / "model.joblib").write_bytes(b"half")
        (leftover / "version.json").write_text(json.dumps({"created_at": "", "model_format": "sklearn",
                                                           "files": {}, "lineage": {}, "metrics": {}}))

    assert registry.list_models() == [NAME]
    assert [mv.version for mv in registry.list_versions(NAME)] == [1]
    with pytest.raises(ModelNotFoundError):
        registry.get_version("ghost", 1)
    assert _register(registry, tmp_path, b"model two").version == 2
    assert registry.read_file(NAME, 2, "model/model.joblib") == b"model two"


def test_register_finishes_despite_a_damaged_version_directory(registry: LocalRegistry, tmp_path: Path) -> None:
    """A versions/<n> without version.json (a partial copy, a hand-deleted record) is skipped, not retried."""
    _register(registry, tmp_path, b"model one")
    damaged = _stored(registry, 2, "model")
    damaged.mkdir(parents=True)
    (damaged / "model.joblib").write_bytes(b"partial copy")
    outcome: dict = {}
    model_dir = _model_dir(tmp_path / "src-two", b"model two")

    def register() -> None:
        outcome["version"] = registry.register(NAME, model_dir, model_format="sklearn", lineage={}, metrics={},
                                               attachments={}, actor="tester").version

    worker = threading.Thread(target=register, daemon=True)
    worker.start()
    worker.join(timeout=10)
    hung = worker.is_alive()
    if hung:  # unblock a retry loop so the thread ends
        (damaged.parent / "version.json").write_text(_stored(registry, 1, "version.json").read_text())
        worker.join(timeout=30)

    assert not hung, "register() was still retrying after 10 s"
    assert outcome["version"] == 3
    assert [mv.version for mv in registry.list_versions(NAME)] == [1, 3]
    assert registry.read_file(NAME, 3, "model/model.joblib") == b"model two"


def _register_concurrently(root: str, model_dir: str, writer: int, barrier, results) -> None:
    barrier.wait(timeout=120)
    mv = LocalRegistry(root).register(
        NAME, Path(model_dir), model_format="sklearn", lineage={"run_id": f"writer-{writer}"}, metrics={},
        attachments={"writer.txt": str(writer).encode()}, actor=f"writer-{writer}",
    )
    results.put((writer, mv.version))


def test_concurrent_registrations_get_distinct_versions_and_keep_their_bytes(tmp_path: Path) -> None:
    writers = 8
    root = tmp_path / "registry"
    payloads = {w: f"model of writer {w}\n".encode() * (20_000 + w) for w in range(writers)}
    dirs = {w: _model_dir(tmp_path / f"writer-{w}", payloads[w]) for w in range(writers)}
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(writers), context.Queue()
    processes = [
        context.Process(target=_register_concurrently, args=(str(root), str(dirs[w]), w, barrier, results))
        for w in range(writers)
    ]
    for process in processes:
        process.start()
    reported = dict(results.get(timeout=120) for _ in range(writers))
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * writers

    registry = LocalRegistry(root)
    versions = registry.list_versions(NAME)
    assert [mv.version for mv in versions] == list(range(1, writers + 1))
    assert sorted(reported.values()) == list(range(1, writers + 1))
    for mv in versions:
        writer = int(mv.lineage["run_id"].removeprefix("writer-"))
        assert reported[writer] == mv.version
        assert registry.read_file(NAME, mv.version, "model/model.joblib") == payloads[writer]
        assert registry.read_file(NAME, mv.version, "writer.txt") == str(writer).encode()
    history = registry.history(NAME)
    assert sorted(e.to_version for e in history) == list(range(1, writers + 1))
    assert verify_chain(history) == []
    assert list((root / "models" / NAME / ".staging").iterdir()) == []


def test_stray_folders_under_models_do_not_break_listing(registry: LocalRegistry, tmp_path: Path) -> None:
    _register(registry, tmp_path, b"one")
    (registry.root / "models" / "churn.bak" / "versions" / "1").mkdir(parents=True)
    assert registry.list_models() == [NAME]
