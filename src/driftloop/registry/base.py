"""The model registry port: one abstract store, one method per verb, backends chosen by URI.

Versions are numbered 1, 2, 3 … per model, never reused and never modified. Aliases (``production``,
``canary`` or any user-defined name) move between versions. Every change of state is one entry in an
append-only, hash-chained audit trail, and the state itself (aliases, archived versions) is the replay
of that trail: an alias move and its audit record can never disagree, and a backend only has to make
"append the next entry" atomic. Every stored file carries a sha256 that is checked before it is used.

Versions and audit entries are signed with the writer's Ed25519 key (:mod:`driftloop.signing`): a
version's ``version.json`` (every file's sha256, lineage, metrics) and its model directory's manifest,
and each audit entry's hash. Readers check a version's signature before they use any of its files, so
someone who can write the storage but does not hold the key can neither swap a model nor rewrite the
trail unnoticed. Versions and entries written before signing stay readable as "unsigned", unless the
reader's policy requires signatures; once a model's trail holds a signed entry, a later unsigned entry
or version is a removed signature, not an old one.

Readers keep each model's trail in memory and read only what was appended since (the backend's
``_read_trail`` resumes from a cursor), so following the aliases costs O(new entries); :meth:`verify`
always reads everything again.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from driftloop import model_dir as model_dir_layout
from driftloop import signing
from driftloop.errors import ConfigError, IntegrityError, ModelNotFoundError, RegistryError
from driftloop.registry import approvals
from driftloop.registry.approvals import ApprovalPolicy, PendingApproval
from driftloop.signing import AUDIT_DOMAIN, SIGNED, VERSION_DOMAIN, SignatureCheck, SigningKey, Trust
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
        signature: The writer's signature over the record (``version.json`` without this field); None for
            versions registered before signing.
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
    signature: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def record_payload(record: dict, name: str, version: int) -> bytes:
    """The signed bytes of a ``version.json`` record; the model's name and number are bound in, so a signed
    record cannot be copied to another version."""
    body = {k: v for k, v in record.items() if k != "signature"}
    return signing.canonical_json({"model": name, "version": version, "record": body})


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
    signature: str | None = None  # the writer's signature over ``hash``; None before signing

    @staticmethod
    def digest(fields: dict) -> str:
        body = {k: v for k, v in fields.items() if k not in ("hash", "signature")}
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def check_signature(self, trust: Trust, *, required: bool | None = None) -> SignatureCheck:
        """Verifies the signature over this entry's hash (which covers its content and its predecessor)."""
        return trust.check(AUDIT_DOMAIN, self.hash.encode(), self.signature, f"audit entry {self.seq} of {self.model}",
                           required=required)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RegistryState:
    """What the audit trail adds up to: where each alias points, which versions are archived, the model's
    approval policy and the canary waiting for approval."""

    aliases: dict[str, int] = field(default_factory=dict)
    archived: set[int] = field(default_factory=set)
    canary_percent: int | None = None  # KServe's canaryTrafficPercent while a canary is set
    approval_policy: ApprovalPolicy | None = None  # None: promotions need no approval
    pending_approval: PendingApproval | None = None

    def copy(self) -> RegistryState:
        return RegistryState(dict(self.aliases), set(self.archived), self.canary_percent, self.approval_policy,
                             self.pending_approval)


def replay(entries: Iterable[AuditEntry]) -> RegistryState:
    """Folds audit entries into the current state."""
    state = RegistryState()
    for entry in entries:
        apply(state, entry)
    return state


def apply(state: RegistryState, entry: AuditEntry) -> None:
    """Folds one more entry into ``state`` (what :func:`replay` does for each)."""
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
    if entry.action == approvals.APPROVAL_POLICY:
        policy = entry.evidence.get(approvals.POLICY_KEY)
        state.approval_policy = ApprovalPolicy.from_dict(policy) if policy else None
    elif entry.action == approvals.APPROVAL_REQUESTED:
        state.pending_approval = approvals.pending_from(entry.model, entry.seq, entry.evidence[approvals.REQUEST_KEY])
    if state.pending_approval is not None and state.aliases.get(CANARY) != state.pending_approval.version:
        # Whatever took the canary away (approved, rejected, expired, aborted, replaced) ended the wait.
        state.pending_approval = None


def parse_entry(data: bytes | str, where: str) -> AuditEntry:
    """One stored audit entry; :class:`IntegrityError` naming ``where`` when it is not one."""
    try:
        return AuditEntry(**json.loads(data))
    except (ValueError, TypeError):
        raise IntegrityError(f"{where} is not an audit entry (edited or damaged)") from None


@dataclass(frozen=True)
class TrailRead:
    """What a backend read of an audit trail returned.

    Attributes:
        entries: The entries after the cursor, oldest first (every entry when ``reset``).
        cursor: Where the next read resumes (backend-specific: a byte offset, the last key).
        reset: The stored trail no longer extends what the cursor had seen, so this is a full read.
    """

    entries: list[AuditEntry]
    cursor: object
    reset: bool = False


@dataclass
class _Trail:
    """One model's trail as read so far, with the state it adds up to and where signing began."""

    entries: list[AuditEntry] = field(default_factory=list)
    state: RegistryState = field(default_factory=RegistryState)
    cursor: object = None
    first_signed: int | None = None  # seq of the first signed entry: every later one must be signed too
    legacy_max: int | None = None  # the highest version registered before that

    def add(self, entry: AuditEntry, trust: Trust) -> SignatureCheck:
        """Appends ``entry`` once its signature checks out.

        Raises:
            IntegrityError: the signature fails or is by an untrusted key, or the entry is unsigned although
                an earlier one was signed (a removed signature); the entry is not appended.
        """
        check = entry.check_signature(trust, required=False)
        if check.status == SIGNED:
            self.first_signed = entry.seq if self.first_signed is None else self.first_signed
        elif self.first_signed is not None:
            raise IntegrityError(f"audit entry {entry.seq} of {entry.model} is unsigned but follows signed "
                                 "entries (its signature was removed)")
        elif entry.action == "register" and entry.to_version is not None:
            self.legacy_max = max(int(entry.to_version), self.legacy_max or 0)
        self.entries.append(entry)
        apply(self.state, entry)
        return check

    def allows_unsigned(self, version: int) -> bool:
        """Whether ``version`` may be unsigned: nothing is signed yet, or it was registered before signing."""
        return self.first_signed is None or (self.legacy_max is not None and version <= self.legacy_max)


@dataclass
class Verification:
    """What :meth:`ModelRegistry.verify_report` found for one model.

    Attributes:
        problems: Every problem, one line each (empty when the model is intact).
        signed_versions / unsigned_versions: Version numbers by signature status (problems excluded).
        signed_entries / unsigned_entries: Audit entries by signature status.
        key_ids: The keys that signed what verified.
        anchored: Whether every signature verified against a key this reader trusts on its own authority
            (not only one the registry published).
    """

    problems: list[str] = field(default_factory=list)
    signed_versions: list[int] = field(default_factory=list)
    unsigned_versions: list[int] = field(default_factory=list)
    signed_entries: int = 0
    unsigned_entries: int = 0
    key_ids: list[str] = field(default_factory=list)
    anchored: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    def note(self, check: SignatureCheck) -> None:
        if check.status == SIGNED:
            if check.key_id not in self.key_ids:
                self.key_ids.append(check.key_id)
            self.anchored = self.anchored and check.anchored


def chain_entry(previous: AuditEntry | None, entry_fields: dict, key: SigningKey | None = None) -> AuditEntry:
    """Numbers and hashes a new entry after ``previous``, and signs its hash with ``key`` when given."""
    fields = {"moves": {}, **entry_fields}
    fields["seq"] = 0 if previous is None else previous.seq + 1
    fields["prev_hash"] = "" if previous is None else previous.hash
    fields["hash"] = AuditEntry.digest(fields)
    if key is not None:
        fields["signature"] = key.sign(AUDIT_DOMAIN, fields["hash"].encode())
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
    trail, store public keys); every verb below is written once on top of them, so all backends behave the
    same. A backend's constructor calls :meth:`_init_signing`.
    """

    uri: str
    trust: Trust

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
    def _read_trail(self, name: str, cursor: object) -> TrailRead:
        """The audit entries stored after ``cursor`` (all of them for None), unverified.

        A backend returns a full read with ``reset`` when it can tell the stored trail no longer extends
        what the cursor saw; :meth:`history` also starts over when new entries do not link to the old.
        """

    @abstractmethod
    def _audit_head(self, name: str) -> dict | None:
        """The ``{"seq", "hash"}`` of the newest entry as recorded after each append, or None.

        It lets :meth:`verify` notice the newest entries being deleted, which a hash chain alone cannot.
        """

    @abstractmethod
    def _commit(self, name: str, build: EntryBuilder) -> AuditEntry:
        """Atomically appends the entry ``build`` makes from the current trail, made with
        :meth:`_next_entry` (numbered, hashed and signed).

        If another writer appended first, ``build`` runs again on the new state.
        """

    @abstractmethod
    def _read_public_key(self, key_id: str) -> bytes | None:
        """The PEM a writer published as ``keys/<key_id>.pub``, or None."""

    @abstractmethod
    def _publish_public_key(self, key_id: str, pem: bytes) -> None:
        """Stores ``keys/<key_id>.pub`` unless it exists (readers check it against the id)."""

    # -- signing ----------------------------------------------------------------------------------

    def _init_signing(self, trust: Trust | None, signing_key: SigningKey | None, *, create_key: bool) -> None:
        """Sets up the reader's trust and, lazily, the writer's key.

        Args:
            trust: Keys and policy for reading (default: :meth:`Trust.from_env`); the registry's published
                keys are added as a convenience (see :mod:`driftloop.signing` for when they count).
            signing_key: The key to write with (default: from the environment, loaded at the first write).
            create_key: Create the default key file at the first write when there is none (local registries).
        """
        self.trust = (trust if trust is not None else Trust.from_env()).with_published(self._published_key)
        self._given_key = signing_key
        self._create_key = create_key
        self._writer_key: SigningKey | None = None
        self._writer_key_loaded = False
        self._trails: dict[str, _Trail] = {}
        self._verified: dict[tuple[str, int], tuple[ModelVersion, SignatureCheck]] = {}
        self._lock = threading.RLock()

    def _published_key(self, key_id: str) -> bytes | None:
        return self._read_public_key(key_id)

    def _signing_key(self) -> SigningKey | None:
        """The key this process writes with, published in the registry on first use; None without one."""
        with self._lock:
            if not self._writer_key_loaded:
                key = self._given_key or signing.load_signing_key(create=self._create_key)
                if key is not None:
                    self._publish_public_key(key.key_id, key.public_pem())
                    self.trust.add_own_key(key)  # a writer checks what it wrote, as Trust.from_env would
                self._writer_key, self._writer_key_loaded = key, True
            return self._writer_key

    def _check_unsigned_write(self, name: str, trail_signed: bool) -> None:
        """Refuses to write unsigned where signatures are expected; otherwise warns once."""
        hint = f"set {signing.SIGNING_KEY_FILE_ENV} (a mounted Secret) or {signing.SIGNING_KEY_ENV}"
        if self.trust.require:
            raise RegistryError(f"registry {self.uri} requires signatures and this process has no signing key: {hint}")
        if trail_signed:
            raise RegistryError(f"the audit trail of '{name}' is signed and this process has no signing key: {hint}")
        if not getattr(self, "_warned_unsigned", False):
            self._warned_unsigned = True
            print(f"driftloop: warning: no signing key ({hint}): writing unsigned versions and audit entries to "
                  f"{self.uri}", file=sys.stderr, flush=True)

    def _next_entry(self, previous: AuditEntry | None, entry_fields: dict) -> AuditEntry:
        """The entry that follows ``previous``: numbered, chained and signed with the writer's key."""
        key = self._signing_key()
        if key is None:
            self._check_unsigned_write(entry_fields.get("model", ""), bool(previous and previous.signature))
        return chain_entry(previous, entry_fields, key)

    def _check_record(self, name: str, version: int, record: dict, *, required: bool | None = None) -> SignatureCheck:
        """Checks a stored ``version.json``'s signature; an unsigned record must predate the model's signing.

        Raises:
            IntegrityError: the signature fails or is untrusted; or the record is unsigned although the model
                was signed when it was registered (a removed signature), or the policy requires signatures.
        """
        what = f"{name} v{version} version.json"
        check = self.trust.check(VERSION_DOMAIN, record_payload(record, name, version), record.get("signature"),
                                 what, required=required)
        if check.status != SIGNED:
            with self._lock:
                trail = self._trail(name)
            if not trail.allows_unsigned(version):
                raise IntegrityError(f"{what} is unsigned, but {name}'s trail is signed since entry "
                                     f"{trail.first_signed}: its signature was removed")
        return check

    # -- the audit trail, read incrementally -------------------------------------------------------

    def _trail(self, name: str) -> _Trail:
        """This process's copy of the trail, brought up to date by reading (and checking) only what was
        appended since the last call."""
        with self._lock:
            trail = self._trails.pop(name, None) or _Trail()
            read = self._read_trail(name, trail.cursor)
            new = read.entries
            if read.reset:
                trail = _Trail()
            elif new and trail.entries and (new[0].seq != trail.entries[-1].seq + 1
                                           or new[0].prev_hash != trail.entries[-1].hash):
                read = self._read_trail(name, None)  # rewritten under us: start over
                trail, new = _Trail(), read.entries
            try:
                for entry in new:
                    trail.add(entry, self.trust)
                if self.trust.require and trail.entries:
                    self._check_trail_policy(name, trail.first_signed)
            except IntegrityError as exc:  # the copy is dropped: the next call reads (and refuses) again
                raise IntegrityError(f"the audit trail of {name} cannot be trusted: {exc}") from None
            trail.cursor = read.cursor
            self._trails[name] = trail
            return trail

    def _check_trail_policy(self, name: str, first_signed: int | None) -> None:
        """Where signatures are required, a trail must hold a signed entry (from the first on, every entry is
        signed): entries from before signing stay readable, a trail stripped of every signature does not."""
        if first_signed is None:
            raise IntegrityError(f"no entry is signed, and this reader requires signatures "
                                 f"({signing.REQUIRE_SIGNATURES_ENV}); any signed write to '{name}' starts signing")
        if not self.trust.anchored:
            raise IntegrityError(f"signatures are required, but this reader trusts no key of its own (set "
                                 f"{signing.VERIFY_KEY_ENV} or {signing.TRUSTED_KEY_IDS_ENV})")

    def history(self, name: str) -> list[AuditEntry]:
        """The audit trail of ``name``, oldest first.

        Every signature is checked as the entry is first read: an entry whose signature fails, is by an
        untrusted key, or is missing after signed entries makes this (and :meth:`state`) raise
        :class:`IntegrityError`, so nothing follows a forged alias move; :meth:`verify` lists every
        problem, including edits to entries this process had already read.
        """
        with self._lock:
            return list(self._trail(check_model_name(name)).entries)

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
        the lineage) so a server that sees only that directory can check and serve it. With a signing key
        (see :mod:`driftloop.signing`) the manifest and ``version.json`` are signed, and the ``register``
        audit entry, signed too, records every file's sha256.

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
        key = self._signing_key()
        if key is None:  # refuse before anything is published, not at the audit entry
            entries = self.history(name)
            self._check_unsigned_write(name, bool(entries and entries[-1].signature))
        created_at = utc_now()
        published: dict = {}

        def files_for(number: int) -> tuple[dict[str, bytes], dict]:
            manifest = model_dir_layout.build_manifest(
                model_files, model=name, version=number, model_format=model_format, spec=spec,
                libraries=lineage.get("libraries") or {}, lineage=lineage)
            if key is not None:
                manifest = manifest.signed(key)
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
            if key is not None:
                record["signature"] = key.sign(VERSION_DOMAIN, record_payload(record, name, number))
            published["files"] = record["files"]
            return files, record

        number = self._publish(name, files_for, version)
        self._commit(name, lambda entries: _fields(
            name, "register", actor, reason, to_version=number, from_version=lineage.get("parent_version"),
            evidence={"run_id": lineage.get("run_id"), "metrics": metrics, "files": published["files"]},
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
        """One version, its record's signature checked (an unsigned one is returned as such whatever the
        policy: loading its files is what the policy refuses).

        Raises:
            ModelNotFoundError: no such version.
            IntegrityError: the record's signature fails, is untrusted, or was removed.
        """
        return self._version(name, int(version), required=False)

    def _version(self, name: str, version: int, *, required: bool | None = None) -> ModelVersion:
        """The checked version; with ``required`` (default: the reader's policy) it must be signed by a key
        this reader trusts on its own authority."""
        check_model_name(name)
        cached = self._verified.get((name, version))
        if cached is None:
            record = self._read_record(name, version)
            if record is None:
                if not self._version_numbers(name):
                    raise ModelNotFoundError(f"no registered model named '{name}'")
                raise ModelNotFoundError(f"model '{name}' has no version {version}")
            check = self._check_record(name, version, record, required=False)
            mv = ModelVersion(name=name, version=version, storage_uri=self._storage_uri(name, version), **record)
            # Versions are immutable: once checked, this record is the one files are compared with.
            cached = self._verified[(name, version)] = (mv, check)
        mv, check = cached
        if (self.trust.require if required is None else required) and not (check.status == SIGNED and check.anchored):
            # Re-run the check under the policy for its one-line reason (unsigned, or unanchored).
            self._check_record(name, version, self._read_record(name, version) or {}, required=True)
            raise IntegrityError(f"{name} v{version} is not signed by a key this reader trusts")
        return mv

    def read_file(self, name: str, version: int, relpath: str) -> bytes:
        """Reads one file of a version and checks it against the recorded (signed) sha256.

        Raises:
            IntegrityError: the file or the record was changed; or the version is unsigned where the policy
                requires signatures.
        """
        return self._read_checked(self._version(name, int(version)), relpath)

    def _read_checked(self, mv: ModelVersion, relpath: str) -> bytes:
        if relpath not in mv.files:
            raise ModelNotFoundError(f"{mv.name} v{mv.version} has no file '{relpath}'")
        data = self._read_raw(mv.name, mv.version, relpath)
        if sha256_bytes(data) != mv.files[relpath]:
            raise IntegrityError(
                f"checksum mismatch for {mv.name} v{mv.version} {relpath}: the stored file was changed or damaged"
            )
        return data

    def fetch_model(self, name: str, version: int, dest: Path) -> Path:
        """Copies the version's model directory to ``dest`` after checking its signature and every file.

        Nothing is written to ``dest`` unless all of it checks out, so nothing unverified can be unpickled.
        """
        mv = self._version(name, int(version))
        blobs = {rel: self._read_checked(mv, rel) for rel in mv.files if rel.startswith(MODEL_DIR + "/")}
        manifest_bytes = blobs.get(f"{MODEL_DIR}/{model_dir_layout.MANIFEST_FILE}")
        if manifest_bytes is not None:
            self._check_manifest(mv, model_dir_layout.ModelManifest.from_json(manifest_bytes))
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for rel, data in blobs.items():
            target = dest / rel[len(MODEL_DIR) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return dest

    def _check_manifest(self, mv: ModelVersion, manifest: model_dir_layout.ModelManifest) -> SignatureCheck:
        """The manifest a signed version holds is signed too, names this version, and lists its files."""
        check = manifest.check_signature(self.trust)
        if mv.signature and check.status != SIGNED:
            raise IntegrityError(f"{mv.name} v{mv.version} manifest is unsigned in a signed version")
        listed = {f"{MODEL_DIR}/{rel}": digest for rel, digest in manifest.files.items()}
        recorded = {rel: d for rel, d in mv.files.items()
                    if rel.startswith(MODEL_DIR + "/") and rel != f"{MODEL_DIR}/{model_dir_layout.MANIFEST_FILE}"}
        if (manifest.model, manifest.version) != (mv.name, mv.version) or listed != recorded:
            raise IntegrityError(f"{mv.name} v{mv.version} manifest does not match the version's record")
        return check

    def verify(self, name: str) -> list[str]:
        """Every problem found (see :meth:`verify_report`)."""
        return self.verify_report(name).problems

    def verify_report(self, name: str) -> Verification:
        """Reads everything again and checks it: the audit chain and its head, every entry's and every
        version's signature, every stored file's checksum, each manifest against its version, and each
        version's files against the hashes its ``register`` entry recorded."""
        report = Verification()
        try:
            entries = self._read_trail(check_model_name(name), None).entries
        except IntegrityError as exc:
            report.problems.append(f"audit: {exc}")
            entries = []
        report.problems += [f"audit: {p}" for p in verify_chain(entries) + check_head(entries, self._audit_head(name))]
        trail = _Trail()
        for entry in entries:
            try:
                check = trail.add(entry, self.trust)
            except IntegrityError as exc:
                report.problems.append(f"audit: {exc}")
                continue
            report.note(check)
            if check.status == SIGNED:
                report.signed_entries += 1
            else:
                report.unsigned_entries += 1
        if self.trust.require and entries:
            try:
                self._check_trail_policy(name, trail.first_signed)
            except IntegrityError as exc:
                report.problems.append(f"audit: {exc}")
        registered = {e.to_version: e for e in entries if e.action == "register"}
        for number in self._version_numbers(name):
            report.problems += [f"v{number}: {p}" for p in self._verify_version(
                name, number, registered.get(number), report, must_be_signed=not trail.allows_unsigned(number))]
        return report

    def _verify_version(self, name: str, number: int, register_entry: AuditEntry | None, report: Verification,
                        must_be_signed: bool) -> list[str]:
        record = self._read_record(name, number)
        if record is None:
            return ["version.json vanished while verifying"]
        problems = []
        try:
            check = self.trust.check(VERSION_DOMAIN, record_payload(record, name, number), record.get("signature"),
                                     f"{name} v{number} version.json")
            report.note(check)
            if check.status != SIGNED and must_be_signed:
                problems.append(f"version.json is unsigned, but {name} was signed when it was registered "
                                "(its signature was removed)")
            (report.signed_versions if check.status == SIGNED else report.unsigned_versions).append(number)
        except IntegrityError as exc:
            problems.append(str(exc))
        try:
            mv = ModelVersion(name=name, version=number, storage_uri=self._storage_uri(name, number), **record)
        except TypeError:
            return [*problems, "version.json is not a version record"]
        for rel in mv.files:
            try:
                data = self._read_checked(mv, rel)
            except (IntegrityError, ModelNotFoundError) as exc:
                problems.append(str(exc))
                continue
            if rel == f"{MODEL_DIR}/{model_dir_layout.MANIFEST_FILE}":
                try:
                    report.note(self._check_manifest(mv, model_dir_layout.ModelManifest.from_json(data)))
                except IntegrityError as exc:
                    problems.append(str(exc))
        recorded = (register_entry.evidence or {}).get("files") if register_entry else None
        if recorded is not None and recorded != mv.files:
            problems.append("its files differ from the hashes its register entry recorded")
        return problems

    # -- aliases ----------------------------------------------------------------------------------

    def state(self, name: str) -> RegistryState:
        """Aliases, archived versions and the canary's share: the replay of the trail, kept up to date
        incrementally (each call reads only entries appended since the last)."""
        with self._lock:
            return self._trail(check_model_name(name)).state.copy()

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
            if alias == PRODUCTION:
                approvals.check_production_move(name, state.approval_policy, state.pending_approval,
                                                state.aliases.get(PRODUCTION), version, action)
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
                evidence: dict | None = None, expect_canary: int | None = None,
                action: str = "promote") -> AuditEntry:
        """Makes ``version`` (default: the canary) production in one step; a canary on it is cleared.

        With ``expect_canary`` the promotion happens only if the canary is still that version (a
        rollout must not promote what an operator aborted meanwhile). Under an approval policy only an
        ``approve`` entry (``action``) promotes a new version (:func:`~driftloop.registry.approvals.check_production_move`).
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
            approvals.check_production_move(name, state.approval_policy, state.pending_approval, current, target,
                                            action)
            moves = {PRODUCTION: [current, target]}
            if state.aliases.get(CANARY) == target:
                moves[CANARY] = [target, None]
            return _fields(name, action, actor, reason, alias=PRODUCTION, from_version=current,
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
        from driftloop.ct_params import check_value  # the one definition of a canary's share

        percent = check_value("canary_percent", percent)

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

    def set_approval_policy(self, name: str, policy: ApprovalPolicy | None, *, actor: str,
                            reason: str = "") -> AuditEntry:
        """Sets (or with None switches off) the model's approval policy; the change is an audit entry."""
        self.require_model(name)

        def build(entries: list[AuditEntry]) -> dict:
            previous = replay(entries).approval_policy
            return _fields(name, approvals.APPROVAL_POLICY, actor,
                           reason or (policy.describe() if policy else "approval no longer required"),
                           evidence={approvals.POLICY_KEY: policy.to_dict() if policy else None,
                                     "previous": previous.to_dict() if previous else None})

        return self._commit(name, build)

    def request_approval(self, name: str, version: int, *, actor: str, reason: str = "", evidence: dict | None = None,
                         serving: dict | None = None) -> AuditEntry:
        """Records that the canary ``version`` passed its analysis and waits for approval under the policy.

        The entry names who registered the version and what triggered its run (for four eyes) and fixes the
        deadline from the policy's timeout; ``serving`` says where it serves (the deployment's description).
        """
        lineage = self.get_version(name, version).lineage

        def build(entries: list[AuditEntry]) -> dict:
            state = replay(entries)
            if state.approval_policy is None:
                raise RegistryError(f"model '{name}' has no approval policy; nothing to request")
            if state.aliases.get(CANARY) != version:
                raise RegistryError(f"{name} v{version} is not the canary; it cannot wait for approval")
            register = next((e for e in entries if e.action == "register" and e.to_version == version), None)
            at = utc_now()
            record = approvals.request_record(
                version=version, stable_version=state.aliases.get(PRODUCTION), at=at,
                timeout_seconds=state.approval_policy.timeout_seconds,
                registered_by=register.actor if register else None, triggered_by=lineage.get("triggered_by"),
                serving=serving or {})
            fields = _fields(name, approvals.APPROVAL_REQUESTED, actor, reason, to_version=version,
                             evidence={**(evidence or {}), approvals.REQUEST_KEY: record,
                                       approvals.POLICY_KEY: state.approval_policy.to_dict()})
            return {**fields, "at": at}

        return self._commit(check_model_name(name), build)

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
