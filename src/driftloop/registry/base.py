"""The model registry port: one abstract store, one method per verb, backends chosen by URI.

Versions are numbered 1, 2, 3 … per model, never reused and never modified. Aliases (``production``,
``canary`` or any user-defined name) move between versions. Every change of state is one entry in an
append-only, hash-chained audit trail, and the state itself (aliases, archived versions) is the replay
of that trail: an alias move and its audit record can never disagree, and a backend only has to make
"append the next entry" atomic. Every stored file carries a sha256 that is checked before it is used.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from driftloop import model_dir as model_dir_layout
from driftloop.errors import ConfigError, IntegrityError, ModelNotFoundError, RegistryError
from driftloop.storage import sha256_bytes

PRODUCTION = "production"
CANARY = "canary"
MODEL_DIR = "model"
TRAFFIC_KEY = "canary_traffic_percent"  # evidence key of entries that set the canary's traffic share
VERSION_FILE = "version.json"
# A model name becomes an InferenceService name, so it follows DNS-1123 label rules.
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,43}[a-z0-9])?$")
_ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_ATTACHMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


def check_model_name(name: str) -> str:
    """Returns ``name`` if it is a valid model name, else raises :class:`ConfigError`."""
    if not _NAME_RE.match(name or ""):
        raise ConfigError(f"invalid model name '{name}': use lowercase letters, digits and '-', at most 45 characters")
    return name


def check_alias(alias: str) -> str:
    if not _ALIAS_RE.match(alias or ""):
        raise ConfigError(f"invalid alias '{alias}': start with a letter; use lowercase letters, digits, '-' and '_'")
    return alias


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ModelVersion:
    """One immutable registered version.

    Attributes:
        name: Registered model name.
        version: Version number (1, 2, …).
        created_at: ISO-8601 UTC time of registration.
        model_format: KServe model format of the model directory ("sklearn" or "xgboost-pipeline").
        storage_uri: Where the model directory lives (a path, or ``s3://…/`` ending in a slash): KServe's
            storageUri.
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
    layout: int = 1  # model directory layout: 2 = self-contained (manifest inside model/); 1 = before that

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AuditEntry:
    """One append-only audit record, chained to its predecessor by ``prev_hash``.

    ``alias``/``from_version``/``to_version`` describe the main change for people; ``moves`` holds every
    alias change the entry applies (alias → [from, to]), which is what state replay uses.
    """

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
    moves: dict = field(default_factory=dict)

    @staticmethod
    def digest(fields: dict) -> str:
        body = {k: v for k, v in fields.items() if k != "hash"}
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RegistryState:
    """What the audit trail adds up to: where each alias points and which versions are archived."""

    aliases: dict[str, int] = field(default_factory=dict)
    archived: set[int] = field(default_factory=set)
    canary_percent: int | None = None  # KServe's canaryTrafficPercent while a canary is set


def replay(entries: Iterable[AuditEntry]) -> RegistryState:
    """Folds audit entries into the current state."""
    state = RegistryState()
    for entry in entries:
        for alias, (_, to) in entry.moves.items():
            if to is None:
                state.aliases.pop(alias, None)
            else:
                state.aliases[alias] = int(to)
        if entry.action == "archive" and entry.to_version is not None:
            state.archived.add(int(entry.to_version))
        if CANARY in entry.moves or TRAFFIC_KEY in entry.evidence:
            # A canary that moves without a stated share gets none until someone sets it.
            state.canary_percent = int(entry.evidence.get(TRAFFIC_KEY, 0)) if CANARY in state.aliases else None
    return state


def chain_entry(previous: AuditEntry | None, entry_fields: dict) -> AuditEntry:
    """Numbers and hashes a new entry after ``previous``."""
    fields = {"moves": {}, **entry_fields}
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


# Builds the fields of the next audit entry from the trail so far (or raises to refuse the change).
EntryBuilder = Callable[[list[AuditEntry]], dict]
# Builds a version's files and its version.json record for a given version number.
FilesBuilder = Callable[[int], tuple[dict[str, bytes], dict]]


class ModelRegistry(ABC):
    """The registry port.

    Backends implement storage primitives (publish a version, read a file, read and append the audit
    trail); every verb below is written once on top of them, so all backends behave the same.
    """

    uri: str

    # -- backend primitives ---------------------------------------------------------------------

    @abstractmethod
    def _publish(self, name: str, files_for: FilesBuilder, version: int | None) -> int:
        """Stores a complete version atomically under the next free number (or exactly ``version``,
        raising :class:`VersionExistsError` if taken) and returns the number. ``files_for(n)`` gives the
        files and the ``version.json`` record for number ``n`` (the model's manifest names its number)."""

    @abstractmethod
    def _version_numbers(self, name: str) -> list[int]:
        """Numbers of the complete (visible) versions of ``name``, ascending."""

    @abstractmethod
    def _read_record(self, name: str, version: int) -> dict | None:
        """The stored ``version.json`` of a version, or None."""

    @abstractmethod
    def _read_raw(self, name: str, version: int, relpath: str) -> bytes:
        """The stored bytes of one file of a version, unverified."""

    @abstractmethod
    def _storage_uri(self, name: str, version: int) -> str:
        """The model directory's URI (KServe's storageUri)."""

    @abstractmethod
    def _model_names(self) -> list[str]:
        """Names that have any stored state."""

    @abstractmethod
    def history(self, name: str) -> list[AuditEntry]:
        """The audit trail of ``name``, oldest first."""

    @abstractmethod
    def _audit_head(self, name: str) -> dict | None:
        """The ``{"seq", "hash"}`` of the newest entry as recorded after each append, or None.

        It lets :meth:`verify` notice the newest entries being deleted, which a hash chain alone cannot.
        """

    @abstractmethod
    def _commit(self, name: str, build: EntryBuilder) -> AuditEntry:
        """Atomically appends the entry ``build`` makes from the current trail.

        If another writer appended first, ``build`` runs again on the new state.
        """

    # -- versions ---------------------------------------------------------------------------------

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
        version: int | None = None,
        spec: dict | None = None,
    ) -> ModelVersion:
        """Stores a new immutable version: the model directory plus attachments (spec, profile, card …).

        The stored ``model/`` is self-contained (layout 2): the registry adds the manifest
        ``driftloop-model.json`` (number, format, ``spec``, the libraries in ``lineage``, every file's sha256,
        the lineage) so a server that sees only that directory can check and serve it.

        Args:
            spec: The dataset spec as a dict (default: the ``spec.json`` attachment).
            version: Register under exactly this number (e.g. when mirroring another registry);
                refused with :class:`VersionExistsError` when taken. Default: the next free number.
        """
        check_model_name(name)
        model_dir = Path(model_dir)
        model_files = ({p.relative_to(model_dir).as_posix(): p.read_bytes()
                        for p in sorted(model_dir.rglob("*")) if p.is_file()} if model_dir.is_dir() else {})
        model_files.pop(model_dir_layout.MANIFEST_FILE, None)  # ours to write
        if not model_files:
            raise RegistryError(f"model directory {model_dir} holds no files")
        for rel in attachments:
            if rel in (VERSION_FILE, MODEL_DIR) or not _ATTACHMENT_RE.match(rel):
                raise RegistryError(f"invalid attachment name '{rel}'")
        if spec is None:
            spec = json.loads(attachments["spec.json"]) if "spec.json" in attachments else {}
        created_at = utc_now()

        def files_for(number: int) -> tuple[dict[str, bytes], dict]:
            manifest = model_dir_layout.build_manifest(
                model_files, model=name, version=number, model_format=model_format, spec=spec,
                libraries=lineage.get("libraries") or {}, lineage=lineage)
            files = {f"{MODEL_DIR}/{rel}": data for rel, data in model_files.items()}
            files[f"{MODEL_DIR}/{model_dir_layout.MANIFEST_FILE}"] = manifest.to_json().encode()
            files.update(attachments)
            record = {
                "created_at": created_at,
                "model_format": model_format,
                "layout": model_dir_layout.LAYOUT,
                "files": {rel: sha256_bytes(data) for rel, data in sorted(files.items())},
                "lineage": lineage,
                "metrics": metrics,
            }
            return files, record

        number = self._publish(name, files_for, version)
        self._commit(name, lambda entries: _fields(
            name, "register", actor, reason, to_version=number, from_version=lineage.get("parent_version"),
            evidence={"run_id": lineage.get("run_id"), "metrics": metrics},
        ))
        return self.get_version(name, number)

    def list_models(self) -> list[str]:
        """Names of all models with at least one version, sorted."""
        # Stray entries (a "churn.bak" folder, say) are not models; they must not break the listing.
        return sorted(n for n in self._model_names() if _NAME_RE.match(n) and self._version_numbers(n))

    def require_model(self, name: str) -> None:
        """Raises :class:`ModelNotFoundError` unless ``name`` has at least one version."""
        if not self._version_numbers(check_model_name(name)):
            raise ModelNotFoundError(f"no registered model named '{name}'")

    def list_versions(self, name: str) -> list[ModelVersion]:
        """All complete versions of ``name``, oldest first."""
        return [self.get_version(name, n) for n in self._version_numbers(check_model_name(name))]

    def get_version(self, name: str, version: int) -> ModelVersion:
        """One version; raises :class:`ModelNotFoundError` when absent."""
        record = self._read_record(check_model_name(name), int(version))
        if record is None:
            if not self._version_numbers(name):
                raise ModelNotFoundError(f"no registered model named '{name}'")
            raise ModelNotFoundError(f"model '{name}' has no version {version}")
        return ModelVersion(name=name, version=int(version), storage_uri=self._storage_uri(name, int(version)),
                            **record)

    def read_file(self, name: str, version: int, relpath: str) -> bytes:
        """Reads one file of a version and checks it against the recorded sha256."""
        mv = self.get_version(name, version)
        if relpath not in mv.files:
            raise ModelNotFoundError(f"{name} v{version} has no file '{relpath}'")
        data = self._read_raw(name, version, relpath)
        if sha256_bytes(data) != mv.files[relpath]:
            raise IntegrityError(
                f"checksum mismatch for {name} v{version} {relpath}: the stored file was changed or damaged"
            )
        return data

    def fetch_model(self, name: str, version: int, dest: Path) -> Path:
        """Copies the version's model directory to ``dest`` after verifying every file."""
        mv = self.get_version(name, version)
        blobs = {rel: self.read_file(name, version, rel) for rel in mv.files if rel.startswith(MODEL_DIR + "/")}
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for rel, data in blobs.items():
            target = dest / rel[len(MODEL_DIR) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return dest

    def verify(self, name: str) -> list[str]:
        """Every problem found: a broken audit chain, and stored files that fail their checksum."""
        entries = self.history(name)
        problems = [f"audit: {p}" for p in verify_chain(entries) + check_head(entries, self._audit_head(name))]
        for mv in self.list_versions(name):
            for rel in mv.files:
                try:
                    self.read_file(name, mv.version, rel)
                except (IntegrityError, ModelNotFoundError) as exc:
                    problems.append(f"v{mv.version}: {exc}")
        return problems

    # -- aliases ----------------------------------------------------------------------------------

    def state(self, name: str) -> RegistryState:
        return replay(self.history(check_model_name(name)))

    def aliases(self, name: str) -> dict[str, int]:
        """Alias → version for ``name``."""
        return dict(self.state(name).aliases)

    def get_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` points at, or None."""
        version = self.aliases(name).get(alias)
        return None if version is None else self.get_version(name, version)

    def set_alias(self, name: str, alias: str, version: int, *, actor: str, reason: str = "",
                  evidence: dict | None = None, action: str = "set-alias") -> AuditEntry:
        """Points ``alias`` at an existing, non-archived ``version``."""
        check_alias(alias)
        self.get_version(name, version)

        def build(entries: list[AuditEntry]) -> dict:
            state = replay(entries)
            if version in state.archived:
                raise RegistryError(f"{name} v{version} is archived; it cannot take an alias")
            return _fields(name, action, actor, reason, alias=alias, from_version=state.aliases.get(alias),
                           to_version=version, evidence=evidence, moves={alias: [state.aliases.get(alias), version]})

        return self._commit(name, build)

    def remove_alias(self, name: str, alias: str, *, actor: str, reason: str = "", evidence: dict | None = None,
                     action: str = "remove-alias", expect: int | None = None) -> AuditEntry:
        """Removes ``alias`` (only if it still points at ``expect``, when given)."""
        check_alias(alias)

        def build(entries: list[AuditEntry]) -> dict:
            state = replay(entries)
            if alias not in state.aliases:
                raise RegistryError(f"model '{name}' has no alias '{alias}'")
            if expect is not None and state.aliases[alias] != expect:
                raise RegistryError(f"'{alias}' of '{name}' moved to v{state.aliases[alias]}; not removing it")
            return _fields(name, action, actor, reason, alias=alias, from_version=state.aliases[alias],
                           evidence=evidence, moves={alias: [state.aliases[alias], None]})

        return self._commit(name, build)

    def promote(self, name: str, version: int | None = None, *, actor: str, reason: str = "",
                evidence: dict | None = None, expect_canary: int | None = None) -> AuditEntry:
        """Makes ``version`` (default: the canary) production in one step; a canary on it is cleared.

        With ``expect_canary`` the promotion happens only if the canary is still that version (a
        rollout must not promote what an operator aborted meanwhile).
        """
        def build(entries: list[AuditEntry]) -> dict:
            state = replay(entries)
            if expect_canary is not None and state.aliases.get(CANARY) != expect_canary:
                raise RegistryError(f"the canary of '{name}' is no longer v{expect_canary}; not promoting")
            target = version if version is not None else state.aliases.get(CANARY)
            if target is None:
                raise RegistryError(f"model '{name}' has no canary to promote; name a version")
            if target in state.archived:
                raise RegistryError(f"{name} v{target} is archived; it cannot be promoted")
            current = state.aliases.get(PRODUCTION)
            moves = {PRODUCTION: [current, target]}
            if state.aliases.get(CANARY) == target:
                moves[CANARY] = [target, None]
            return _fields(name, "promote", actor, reason, alias=PRODUCTION, from_version=current,
                           to_version=target, evidence=evidence, moves=moves)

        if version is not None:
            self.get_version(name, version)
        return self._commit(name, build)

    def rollback(self, name: str, *, actor: str, reason: str = "", evidence: dict | None = None) -> AuditEntry:
        """Returns production to the version it replaced, and clears any canary, in one step.

        Repeated rollbacks walk further back through the promotions, never forward again.
        """
        check_model_name(name)

        def build(entries: list[AuditEntry]) -> dict:
            state = replay(entries)
            current = state.aliases.get(PRODUCTION)
            if current is None:
                raise RegistryError(f"model '{name}' has nothing in production to roll back")
            target = previous_production(entries, current)
            if target is None:
                raise RegistryError(f"{name} v{current} replaced no earlier version; nothing to roll back to")
            moves = {PRODUCTION: [current, target]}
            if CANARY in state.aliases:
                moves[CANARY] = [state.aliases[CANARY], None]
            return _fields(name, "rollback", actor, reason, alias=PRODUCTION, from_version=current,
                           to_version=target, evidence=evidence, moves=moves)

        return self._commit(name, build)

    def set_canary_traffic(self, name: str, percent: int, *, actor: str, reason: str = "",
                           evidence: dict | None = None, action: str = "set-traffic") -> AuditEntry:
        """Sets the share of requests (0–100) the canary receives; the rest go to production."""
        if not 0 <= int(percent) <= 100:
            raise ConfigError(f"canary traffic must be within 0..100, got {percent}")

        def build(entries: list[AuditEntry]) -> dict:
            state = replay(entries)
            if CANARY not in state.aliases:
                raise RegistryError(f"model '{name}' has no canary")
            return _fields(name, action, actor, reason, alias=CANARY, from_version=state.aliases[CANARY],
                           to_version=state.aliases[CANARY],
                           evidence={**(evidence or {}), TRAFFIC_KEY: int(percent),
                                     "previous_percent": state.canary_percent})

        return self._commit(check_model_name(name), build)

    def archive(self, name: str, version: int, *, actor: str, reason: str = "") -> AuditEntry:
        """Retires a version: it keeps its files and lineage but can no longer take an alias."""
        self.get_version(name, version)

        def build(entries: list[AuditEntry]) -> dict:
            state = replay(entries)
            holders = sorted(a for a, v in state.aliases.items() if v == version)
            if holders:
                raise RegistryError(f"{name} v{version} is {', '.join(holders)}; move the alias first")
            if version in state.archived:
                raise RegistryError(f"{name} v{version} is already archived")
            return _fields(name, "archive", actor, reason, to_version=version)

        return self._commit(name, build)

    def record(self, name: str, action: str, *, actor: str, reason: str = "", version: int | None = None,
               evidence: dict | None = None) -> AuditEntry:
        """Appends an audit entry that moves nothing (a run's outcome, a refused trigger, …)."""
        return self._commit(check_model_name(name),
                            lambda entries: _fields(name, action, actor, reason, to_version=version, evidence=evidence))

    def find_version_by_run(self, name: str, run_id: str) -> ModelVersion | None:
        """The version a pipeline run registered, if any."""
        for mv in reversed(self.list_versions(name)):
            if mv.lineage.get("run_id") == run_id:
                return mv
        return None


def check_head(entries: list[AuditEntry], head: dict | None) -> list[str]:
    """Compares the trail with its recorded head. A head one entry behind is a writer that died
    between appending and recording the head: harmless. A head ahead means entries were removed."""
    if head is None:
        return []
    last = entries[-1] if entries else None
    if last is None or head["seq"] > last.seq:
        newest = "none" if last is None else f"#{last.seq}"
        return [f"the newest entries were removed: the head records #{head['seq']}, the trail ends at {newest}"]
    recorded = next((e for e in entries if e.seq == head["seq"]), None)
    if recorded is not None and recorded.hash != head["hash"]:
        return [f"entry {head['seq']}: does not match the recorded head (replaced)"]
    return []


def previous_production(history: list[AuditEntry], current: int) -> int | None:
    """The version that production held before ``current`` was promoted, skipping rollbacks."""
    for entry in reversed(history):
        move = entry.moves.get(PRODUCTION)
        if move and entry.action != "rollback" and move[1] == current:
            return move[0]
    return None


def _fields(name: str, action: str, actor: str, reason: str, *, alias: str | None = None,
            from_version: int | None = None, to_version: int | None = None, evidence: dict | None = None,
            moves: dict | None = None) -> dict:
    return {"at": utc_now(), "actor": actor, "action": action, "model": name, "alias": alias,
            "from_version": from_version, "to_version": to_version, "reason": reason,
            "evidence": evidence or {}, "moves": moves or {}}
