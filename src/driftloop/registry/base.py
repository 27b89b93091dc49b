"""The model registry port: one abstract store, one method per verb, backends chosen by URI.

Versions are numbered 1, 2, 3 … per model, never reused and never modified. Aliases (``production``,
``canary`` or any user-defined name) move between versions; every move is appended to a
tamper-evident audit trail. Every stored file carries a sha256 that is checked before it is used.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from driftloop.errors import ConfigError, IntegrityError, ModelNotFoundError

PRODUCTION = "production"
CANARY = "canary"
MODEL_DIR = "model"
# A model name becomes an InferenceService name, so it follows DNS-1123 label rules.
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,43}[a-z0-9])?$")
_ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def check_model_name(name: str) -> str:
    """Returns ``name`` if it is a valid model name, else raises :class:`ConfigError`."""
    if not _NAME_RE.match(name or ""):
        raise ConfigError(
            f"invalid model name '{name}': use lowercase letters, digits and '-', at most 45 characters"
        )
    return name


def check_alias(alias: str) -> str:
    if not _ALIAS_RE.match(alias or ""):
        raise ConfigError(f"invalid alias '{alias}': use lowercase letters, digits, '-' and '_'")
    return alias


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelVersion:
    """One immutable registered version.

    Attributes:
        name: Registered model name.
        version: Version number (1, 2, …).
        created_at: ISO-8601 UTC time of registration.
        model_format: KServe model format of the model directory ("sklearn" or "xgboost").
        storage_uri: Where the model directory lives (a path or ``s3://…``): KServe's storageUri.
        files: sha256 of every stored file, by path relative to the version.
        lineage: Run id, data URI and hash, parameters, code and library versions, parent version, …
        metrics: Holdout metrics at registration.
    """

    name: str
    version: int
    created_at: str
    model_format: str
    storage_uri: str
    files: dict[str, str]
    lineage: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AuditEntry:
    """One append-only audit record, chained to its predecessor by ``prev_hash``."""

    seq: int
    at: str
    actor: str
    action: str
    model: str
    alias: str | None
    from_version: int | None
    to_version: int | None
    reason: str
    evidence: dict
    prev_hash: str
    hash: str

    @staticmethod
    def digest(fields: dict) -> str:
        body = {k: v for k, v in fields.items() if k != "hash"}
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class ModelRegistry(ABC):
    """The registry port. Backends: :class:`LocalRegistry` (a directory), and S3 (a bucket)."""

    uri: str

    @abstractmethod
    def register(
        self,
        name: str,
        model_dir: Path,
        *,
        model_format: str,
        lineage: dict,
        metrics: dict,
        attachments: dict[str, bytes],
        actor: str,
        reason: str = "",
    ) -> ModelVersion:
        """Stores a new version: the model directory plus attachments (spec, profile, card, …).

        The number is the next free one; concurrent writers get distinct numbers and nobody sees a
        half-written version.
        """

    @abstractmethod
    def list_models(self) -> list[str]:
        """Names of all registered models, sorted."""

    @abstractmethod
    def list_versions(self, name: str) -> list[ModelVersion]:
        """All complete versions of ``name``, oldest first."""

    @abstractmethod
    def get_version(self, name: str, version: int) -> ModelVersion:
        """One version; raises :class:`ModelNotFoundError` when absent."""

    @abstractmethod
    def _read_raw(self, name: str, version: int, relpath: str) -> bytes:
        """The stored bytes of one file of a version, unverified."""

    @abstractmethod
    def aliases(self, name: str) -> dict[str, int]:
        """Alias → version for ``name``."""

    @abstractmethod
    def _move_alias(
        self, name: str, alias: str, version: int | None, *, action: str, actor: str, reason: str, evidence: dict
    ) -> AuditEntry:
        """Atomically points ``alias`` at ``version`` (None removes it) and appends the audit entry."""

    @abstractmethod
    def history(self, name: str) -> list[AuditEntry]:
        """The audit trail of ``name``, oldest first."""

    @abstractmethod
    def _append_audit(self, name: str, entry_fields: dict) -> AuditEntry:
        """Appends one audit entry (chained) and returns it."""

    # -- verbs built on the primitives ------------------------------------------------------

    def read_file(self, name: str, version: int, relpath: str) -> bytes:
        """Reads one file of a version and checks it against the recorded sha256."""
        mv = self.get_version(name, version)
        if relpath not in mv.files:
            raise ModelNotFoundError(f"{name} v{version} has no file '{relpath}'")
        data = self._read_raw(name, version, relpath)
        if hashlib.sha256(data).hexdigest() != mv.files[relpath]:
            raise IntegrityError(
                f"checksum mismatch for {name} v{version} {relpath}: the stored file was changed or damaged"
            )
        return data

    def fetch_model(self, name: str, version: int, dest: Path) -> Path:
        """Copies the version's model directory to ``dest`` after verifying every file."""
        mv = self.get_version(name, version)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for relpath in mv.files:
            if relpath.startswith(MODEL_DIR + "/"):
                target = dest / relpath[len(MODEL_DIR) + 1 :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.read_file(name, version, relpath))
        return dest

    def get_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` points at, or None."""
        version = self.aliases(name).get(alias)
        return None if version is None else self.get_version(name, version)

    def set_alias(
        self, name: str, alias: str, version: int, *, actor: str, reason: str = "", evidence: dict | None = None,
        action: str = "set-alias",
    ) -> AuditEntry:
        """Points ``alias`` at an existing ``version``."""
        check_alias(alias)
        self.get_version(name, version)
        return self._move_alias(name, alias, version, action=action, actor=actor, reason=reason, evidence=evidence or {})

    def remove_alias(self, name: str, alias: str, *, actor: str, reason: str = "", evidence: dict | None = None,
                     action: str = "remove-alias") -> AuditEntry:
        """Removes ``alias`` (no-op entry if it was not set)."""
        return self._move_alias(name, alias, None, action=action, actor=actor, reason=reason, evidence=evidence or {})

    def record(self, name: str, action: str, *, actor: str, reason: str = "", version: int | None = None,
               evidence: dict | None = None) -> AuditEntry:
        """Appends an audit entry that moves nothing (a run's outcome, a refused trigger, …)."""
        return self._append_audit(
            name,
            {"at": utc_now(), "actor": actor, "action": action, "model": name, "alias": None,
             "from_version": None, "to_version": version, "reason": reason, "evidence": evidence or {}},
        )

    def find_version_by_run(self, name: str, run_id: str) -> ModelVersion | None:
        """The version a pipeline run registered, if any."""
        for mv in reversed(self.list_versions(name)):
            if mv.lineage.get("run_id") == run_id:
                return mv
        return None


def chain_entry(previous: AuditEntry | None, entry_fields: dict) -> AuditEntry:
    """Numbers and hashes a new entry after ``previous``."""
    fields = dict(entry_fields)
    fields["seq"] = 0 if previous is None else previous.seq + 1
    fields["prev_hash"] = "" if previous is None else previous.hash
    fields["hash"] = AuditEntry.digest(fields)
    return AuditEntry(**fields)


def verify_chain(entries: list[AuditEntry]) -> list[str]:
    """Problems found in an audit chain (empty when intact)."""
    problems = []
    previous = None
    for entry in entries:
        expected_seq = 0 if previous is None else previous.seq + 1
        if entry.seq != expected_seq:
            problems.append(f"entry {entry.seq}: expected sequence number {expected_seq} (an entry was removed)")
        if entry.prev_hash != ("" if previous is None else previous.hash):
            problems.append(f"entry {entry.seq}: does not follow the entry before it")
        if AuditEntry.digest(asdict(entry)) != entry.hash:
            problems.append(f"entry {entry.seq}: content does not match its hash (edited)")
        previous = entry
    return problems


