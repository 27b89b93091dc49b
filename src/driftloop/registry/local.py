"""The registry on a local directory (the embedded default).

Layout under the root::

    models/<name>/versions/<n>/model/model.joblib   the directory KServe would serve
    models/<name>/versions/<n>/version.json         checksums, lineage, metrics (never inside model/)
    models/<name>/versions/<n>/<attachments>        spec.json, profile.json, model_card.md, …
    models/<name>/aliases.json                      alias -> version, replaced atomically
    models/<name>/audit.jsonl                       append-only, hash-chained
    models/<name>/.staging/                         versions being written; never listed

A version is written completely under ``.staging`` and then renamed to ``versions/<n>``: a directory
rename is atomic and fails if ``<n>`` already exists, so a crash leaves nothing visible and two
writers can never share a number (the loser retries with the next one).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from driftloop.errors import ModelNotFoundError, RegistryError, VersionExistsError
from driftloop.registry.base import (
    MODEL_DIR,
    AuditEntry,
    ModelRegistry,
    ModelVersion,
    chain_entry,
    check_model_name,
    sha256_file,
    utc_now,
)

VERSION_FILE = "version.json"


class LocalRegistry(ModelRegistry):
    """A registry rooted at a directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    # -- paths --------------------------------------------------------------------------------

    def _model_root(self, name: str) -> Path:
        return self.root / "models" / check_model_name(name)

    def _version_dir(self, name: str, version: int) -> Path:
        return self._model_root(name) / "versions" / str(int(version))

    @contextmanager
    def _locked(self, name: str) -> Iterator[Path]:
        """Serialises alias and audit updates of one model across processes."""
        model_root = self._model_root(name)
        model_root.mkdir(parents=True, exist_ok=True)
        with open(model_root / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield model_root
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- versions -----------------------------------------------------------------------------

    def register(self, name, model_dir, *, model_format, lineage, metrics, attachments, actor, reason=""):
        model_root = self._model_root(name)
        model_dir = Path(model_dir)
        model_files = sorted(p for p in model_dir.rglob("*") if p.is_file())
        if not model_files:
            raise RegistryError(f"model directory {model_dir} holds no files")
        staging = model_root / ".staging" / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            files: dict[str, str] = {}
            for source in model_files:
                rel = f"{MODEL_DIR}/{source.relative_to(model_dir).as_posix()}"
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                files[rel] = sha256_file(target)
            for rel, data in sorted(attachments.items()):
                if rel == VERSION_FILE or rel.startswith(MODEL_DIR + "/"):
                    raise RegistryError(f"attachment name '{rel}' is reserved")
                (staging / rel).write_bytes(data)
                files[rel] = sha256_file(staging / rel)
            record = {
                "created_at": utc_now(),
                "model_format": model_format,
                "files": files,
                "lineage": lineage,
                "metrics": metrics,
            }
            _write_durably(staging / VERSION_FILE, json.dumps(record, indent=2, sort_keys=True).encode())
            for path in staging.rglob("*"):
                if path.is_file():
                    path.chmod(0o444)
            version = self._publish(name, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        mv = self.get_version(name, version)
        self._append_audit(
            name,
            {"at": mv.created_at, "actor": actor, "action": "register", "model": name, "alias": None,
             "from_version": lineage.get("parent_version"), "to_version": version, "reason": reason,
             "evidence": {"run_id": lineage.get("run_id"), "metrics": metrics}},
        )
        return mv

    def _publish(self, name: str, staging: Path, version: int | None = None) -> int:
        """Renames a complete staging directory to the next free version number (or ``version``)."""
        versions = self._model_root(name) / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        while True:
            number = version if version is not None else max(self._numbers(name), default=0) + 1
            try:
                os.rename(staging, versions / str(number))
                _fsync_dir(versions)
                return number
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                if version is not None:
                    raise VersionExistsError(f"{name} v{version} already exists; versions are immutable") from None

    def _numbers(self, name: str) -> list[int]:
        versions = self._model_root(name) / "versions"
        if not versions.is_dir():
            return []
        return sorted(int(p.name) for p in versions.iterdir() if p.name.isdigit() and (p / VERSION_FILE).is_file())

    def list_models(self) -> list[str]:
        models = self.root / "models"
        if not models.is_dir():
            return []
        return sorted(p.name for p in models.iterdir() if (p / "versions").is_dir() and self._numbers(p.name))

    def list_versions(self, name: str) -> list[ModelVersion]:
        return [self.get_version(name, n) for n in self._numbers(name)]

    def get_version(self, name: str, version: int) -> ModelVersion:
        path = self._version_dir(name, version) / VERSION_FILE
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            if not self._numbers(name):
                raise ModelNotFoundError(f"no registered model named '{name}'") from None
            raise ModelNotFoundError(f"model '{name}' has no version {version}") from None
        return ModelVersion(
            name=name,
            version=int(version),
            storage_uri=str(self._version_dir(name, version) / MODEL_DIR),
            **record,
        )

    def _read_raw(self, name: str, version: int, relpath: str) -> bytes:
        try:
            return (self._version_dir(name, version) / relpath).read_bytes()
        except FileNotFoundError:
            raise ModelNotFoundError(f"{name} v{version}: file '{relpath}' is missing from storage") from None

    # -- aliases and audit ----------------------------------------------------------------------

    def aliases(self, name: str) -> dict[str, int]:
        path = self._model_root(name) / "aliases.json"
        try:
            return {k: int(v) for k, v in json.loads(path.read_text()).items()}
        except FileNotFoundError:
            return {}

    def _move_alias(self, name, alias, version, *, action, actor, reason, evidence):
        with self._locked(name) as model_root:
            current = self.aliases(name)
            previous = current.get(alias)
            if version is None:
                current.pop(alias, None)
            else:
                current[alias] = int(version)
            _write_durably(model_root / "aliases.json", json.dumps(current, indent=2, sort_keys=True).encode())
            return self._append_locked(
                model_root,
                {"at": utc_now(), "actor": actor, "action": action, "model": name, "alias": alias,
                 "from_version": previous, "to_version": version, "reason": reason, "evidence": evidence},
            )

    def _append_audit(self, name: str, entry_fields: dict) -> AuditEntry:
        with self._locked(name) as model_root:
            return self._append_locked(model_root, entry_fields)

    def _append_locked(self, model_root: Path, entry_fields: dict) -> AuditEntry:
        entries = _read_audit(model_root / "audit.jsonl")
        entry = chain_entry(entries[-1] if entries else None, entry_fields)
        with open(model_root / "audit.jsonl", "a") as handle:
            handle.write(json.dumps(asdict(entry), sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return entry

    def history(self, name: str) -> list[AuditEntry]:
        return _read_audit(self._model_root(name) / "audit.jsonl")


def _read_audit(path: Path) -> list[AuditEntry]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        if line.strip():
            entries.append(AuditEntry(**json.loads(line)))
    return entries


def _write_durably(path: Path, data: bytes) -> None:
    """Writes via a temporary file and an atomic rename, so readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
