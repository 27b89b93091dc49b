"""Ed25519 signatures for registry versions and audit entries: who holds which key, and what a reader trusts.

The private key lives only where versions and audit entries are written: locally a key file outside any
registry (``~/.config/driftloop/signing-key``, or ``DRIFTLOOP_SIGNING_KEY_FILE``; mode 0600, created on
first use by a local registry), in a cluster a Kubernetes Secret, mounted as that file or given as PEM in
``DRIFTLOOP_SIGNING_KEY``. A key is named by its id, a fingerprint of the public key, so a public key
fetched from anywhere can be checked against an id a reader pinned.

What a reader trusts (its anchors), in this order:

1. ``DRIFTLOOP_VERIFY_KEY`` (PEM, one or more public keys) and ``DRIFTLOOP_VERIFY_KEY_FILE``;
2. ``DRIFTLOOP_TRUSTED_KEY_IDS`` (comma-separated ids): the public keys the writer published in
   ``<registry>/keys/<id>.pub``, accepted only when they hash to the pinned id;
3. the public half of the signing key this process would write with, if one is configured (a machine
   that writes the registry can check what it wrote).

The keys a registry publishes are a convenience, never an anchor on their own: anyone who can write the
registry can also replace them. A reader with no anchor still checks signatures against the published
keys (which catches careless edits) but reports itself unanchored, and a policy that requires
signatures (``DRIFTLOOP_REQUIRE_SIGNATURES=1``) refuses to work without an anchor.

Signatures are ``ed25519:<key id>:<base64>`` over a domain label and the object's canonical JSON, so a
signature made for one kind of object never verifies as another. Nothing here ever prints key material.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from driftloop.errors import ConfigError, IntegrityError

SIGNING_KEY_ENV = "DRIFTLOOP_SIGNING_KEY"
SIGNING_KEY_FILE_ENV = "DRIFTLOOP_SIGNING_KEY_FILE"
VERIFY_KEY_ENV = "DRIFTLOOP_VERIFY_KEY"
VERIFY_KEY_FILE_ENV = "DRIFTLOOP_VERIFY_KEY_FILE"
TRUSTED_KEY_IDS_ENV = "DRIFTLOOP_TRUSTED_KEY_IDS"
REQUIRE_SIGNATURES_ENV = "DRIFTLOOP_REQUIRE_SIGNATURES"
ALGORITHM = "ed25519"
# The key pair `driftloop models keygen` writes (and manifests/base's generators read): one name each.
PRIVATE_KEY_FILE = "signing-key.pem"
PUBLIC_KEY_FILE = "signing-key.pub"
KEY_ID_HEX = 32  # 128 bits of the public key's sha256: a pin nobody can match with another key
_KEY_ID_RE = re.compile(f"[0-9a-f]{{{KEY_ID_HEX}}}")

# Domain labels: what a signature was made for.
MANIFEST_DOMAIN = "driftloop/model-manifest/v1"
VERSION_DOMAIN = "driftloop/version-record/v1"
AUDIT_DOMAIN = "driftloop/audit-entry/v1"

SIGNED = "signed"
UNSIGNED = "unsigned"


def canonical_json(value: object) -> bytes:
    """The bytes a signature covers: sorted keys, no spaces, ASCII, after a JSON round trip (what a reader
    parses back from storage is what the writer signed)."""
    plain = json.loads(json.dumps(value, default=str))
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def key_id(public_key) -> str:
    """The id of an Ed25519 public key: a prefix of the sha256 of its raw 32 bytes."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX]


def public_pem(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_keys(pem: bytes, source: str) -> list:
    """Every Ed25519 public key in a PEM text (one or more ``PUBLIC KEY`` blocks)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    marker = b"-----END PUBLIC KEY-----"
    blocks = [block + marker for block in pem.split(marker) if block.strip()]
    keys = []
    for block in blocks:
        try:
            key = serialization.load_pem_public_key(block.strip() + b"\n")
        except ValueError:
            key = None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"{source} does not hold Ed25519 public keys in PEM")
        keys.append(key)
    if not keys:
        raise ConfigError(f"{source} holds no public key")
    return keys


class SigningKey:
    """An Ed25519 private key. Its ``repr`` and every message name only the key id."""

    def __init__(self, private_key) -> None:
        self._private = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"

    @classmethod
    def generate(cls) -> SigningKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes, source: str) -> SigningKey:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            key = None  # the library's message is not repeated: it is about the key's bytes
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{source} is not an unencrypted Ed25519 private key in PEM")
        return cls(key)

    def private_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())

    def public_pem(self) -> bytes:
        return public_pem(self.public_key)

    def sign(self, domain: str, payload: bytes) -> str:
        """``ed25519:<key id>:<base64 signature>`` over ``domain`` and ``payload``."""
        signature = self._private.sign(_message(domain, payload))
        return f"{ALGORITHM}:{self.key_id}:{base64.b64encode(signature).decode()}"


def default_key_path(environ: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/driftloop/signing-key``, by default ``~/.config/driftloop/signing-key``."""
    config = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return Path(config).expanduser() / "driftloop" / "signing-key"


def key_file_path(environ: Mapping[str, str]) -> Path:
    return Path(environ[SIGNING_KEY_FILE_ENV]).expanduser() if environ.get(SIGNING_KEY_FILE_ENV) \
        else default_key_path(environ)


def load_signing_key(environ: Mapping[str, str] | None = None, *, create: bool = False) -> SigningKey | None:
    """The key this process writes with: ``DRIFTLOOP_SIGNING_KEY`` (PEM), else the key file; None if neither.

    Args:
        create: Generate the key file (mode 0600) when it does not exist, and say so once on stderr.
            Local registries create; an S3 registry's writers get their key from a Secret.
    """
    env = os.environ if environ is None else environ
    if env.get(SIGNING_KEY_ENV):
        return SigningKey.from_pem(env[SIGNING_KEY_ENV].encode(), SIGNING_KEY_ENV)
    path = key_file_path(env)
    if path.is_file():
        return _read_key_file(path)
    if env.get(SIGNING_KEY_FILE_ENV) and not create:
        raise ConfigError(f"signing key file {path} ({SIGNING_KEY_FILE_ENV}) does not exist")
    if not create:
        return None
    return _create_key_file(path)


def _read_key_file(path: Path) -> SigningKey:
    try:
        return SigningKey.from_pem(path.read_bytes(), f"signing key file {path}")
    except OSError as exc:
        raise ConfigError(f"cannot read signing key file {path}: {exc.strerror}") from None


def _create_key_file(path: Path) -> SigningKey:
    """Writes a new key with mode 0600; of two processes creating it at once, both end with the same key."""
    key = SigningKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.private_pem())
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)  # fails if another process created it first: use theirs
    except FileExistsError:
        return _read_key_file(path)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"driftloop: created signing key {path} (key id {key.key_id}); it signs every version and audit "
          "entry written from this machine: keep it private and back it up", file=sys.stderr, flush=True)
    return key


def write_key_pair(directory: Path) -> SigningKey:
    """A new key pair in ``directory``: :data:`PRIVATE_KEY_FILE` (mode 0600) and :data:`PUBLIC_KEY_FILE`.

    Nothing is overwritten: a key that signed versions must not be replaced by accident, since readers
    that trust it would refuse everything signed after.

    Raises:
        ConfigError: ``directory`` is not a directory, either file exists, or a file cannot be written.
    """
    private, public = directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory")
    for path in (private, public):
        if path.exists() or path.is_symlink():
            raise ConfigError(f"{path} already exists; refusing to overwrite a key (move it away first)")
    key = SigningKey.generate()
    written: list[Path] = []
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path, data, mode in ((private, key.private_pem(), 0o600), (public, key.public_pem(), 0o644)):
            # O_EXCL: a file that appeared since the check above is not overwritten either.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            written.append(path)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
    except OSError as exc:
        for path in written:  # no half pair: a private key without its public half, or the reverse
            path.unlink(missing_ok=True)
        if isinstance(exc, FileExistsError):
            raise ConfigError(f"{exc.filename} already exists; refusing to overwrite a key (move it away first)") \
                from None
        raise ConfigError(f"cannot write the key pair to {exc.filename or directory}: {exc.strerror}") from None
    return key


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome of checking one signature.

    Attributes:
        status: ``signed`` (verified) or ``unsigned`` (no signature, allowed by the policy).
        key_id: The key that signed, if any.
        anchored: The key is one this reader trusts on its own authority, not only because the registry
            published it.
    """

    status: str
    key_id: str | None = None
    anchored: bool = False


# Looks up a public key the registry published, by id (None when it has none).
PublishedKeys = Callable[[str], bytes | None]


class Trust:
    """The public keys a reader checks signatures with, and whether it requires them."""

    def __init__(self, keys: list | None = None, pinned_ids: frozenset[str] = frozenset(),
                 require: bool = False, published: PublishedKeys | None = None) -> None:
        self._anchors = {key_id(k): k for k in keys or []}
        self.pinned_ids = frozenset(pinned_ids)
        self.require = require
        self._published = published
        self._resolved: dict[str, tuple[object, bool]] = {}  # key id -> (public key, anchored)

    def __repr__(self) -> str:
        return (f"Trust(anchors={sorted(self._anchors)}, pinned={sorted(self.pinned_ids)}, "
                f"require={self.require})")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, require: bool | None = None,
                 verify_key_file: str | None = None) -> Trust:
        """Anchors from ``DRIFTLOOP_VERIFY_KEY[_FILE]``, ``DRIFTLOOP_TRUSTED_KEY_IDS`` and this process's own
        signing key (never created here); ``DRIFTLOOP_REQUIRE_SIGNATURES`` unless ``require`` is given."""
        env = os.environ if environ is None else environ
        keys = []
        if env.get(VERIFY_KEY_ENV):
            keys += load_public_keys(env[VERIFY_KEY_ENV].encode(), VERIFY_KEY_ENV)
        for path in filter(None, (verify_key_file, env.get(VERIFY_KEY_FILE_ENV))):
            try:
                keys += load_public_keys(Path(path).expanduser().read_bytes(), f"verify key file {path}")
            except OSError as exc:
                raise ConfigError(f"cannot read verify key file {path}: {exc.strerror}") from None
        try:
            own = load_signing_key(env, create=False)
        except ConfigError:
            own = None  # a reader need not be able to read the writer's key; a writer says what is wrong
        if own is not None:
            keys.append(own.public_key)
        pinned = frozenset(i.strip().lower() for i in env.get(TRUSTED_KEY_IDS_ENV, "").split(",") if i.strip())
        if require is None:
            require = env.get(REQUIRE_SIGNATURES_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
        return cls(keys, pinned, require)

    def with_published(self, published: PublishedKeys) -> Trust:
        """The same anchors, resolving pinned ids (and, with no anchor at all, any id) from a registry's keys."""
        return Trust(list(self._anchors.values()), self.pinned_ids, self.require, published)

    def add_own_key(self, key: SigningKey) -> None:
        """Anchors the public half of the key this process writes with (created after this trust was made)."""
        self._anchors.setdefault(key.key_id, key.public_key)

    @property
    def anchored(self) -> bool:
        """Whether this reader has a trust anchor of its own."""
        return bool(self._anchors or self.pinned_ids)

    def check(self, domain: str, payload: bytes, signature: str | None, what: str, *,
              required: bool | None = None) -> SignatureCheck:
        """Checks ``signature`` over ``payload``; ``what`` names the object in the error.

        Args:
            required: Refuse an unsigned or unanchored object (default: this reader's policy). Showing a
                version's lineage passes False; loading it never does.

        Raises:
            IntegrityError: the signature does not verify, is by a key this reader does not trust, or is
                missing (or unanchored) while the policy requires signatures.
        """
        from cryptography.exceptions import InvalidSignature

        required = self.require if required is None else required
        if not signature:
            if required:
                raise IntegrityError(f"{what} is unsigned, and this reader requires signatures "
                                     f"({REQUIRE_SIGNATURES_ENV})")
            return SignatureCheck(UNSIGNED)
        algorithm, _, rest = str(signature).partition(":")
        signer, _, encoded = rest.partition(":")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError:
            raw = b""
        # The id names a file in the registry: only a fingerprint is accepted, never a path.
        if algorithm != ALGORITHM or not _KEY_ID_RE.fullmatch(signer) or not raw:
            raise IntegrityError(f"{what}: malformed signature")
        public_key, anchored = self._key(signer, what)
        if required and not anchored:
            raise IntegrityError(f"{what}: signatures are required, but this reader trusts no key of its own "
                                 f"(set {VERIFY_KEY_ENV} or {TRUSTED_KEY_IDS_ENV})")
        try:
            public_key.verify(raw, _message(domain, payload))
        except InvalidSignature:
            raise IntegrityError(f"{what}: signature does not match the content (changed after signing)") from None
        return SignatureCheck(SIGNED, signer, anchored)

    def _key(self, signer: str, what: str) -> tuple[object, bool]:
        if signer in self._anchors:
            return self._anchors[signer], True
        if signer in self._resolved:
            return self._resolved[signer]
        # A published key counts when the reader pinned its id, or (unanchored) when the reader has no
        # anchor at all; the id is the key's fingerprint, so the copy is checked against the id either way.
        if self._published is not None and (signer in self.pinned_ids or not self.anchored):
            pem = self._published(signer)
            try:
                keys = load_public_keys(pem, f"published key {signer}") if pem else []
            except ConfigError:
                keys = []
            if len(keys) == 1 and key_id(keys[0]) == signer:
                self._resolved[signer] = (keys[0], signer in self.pinned_ids)
                return self._resolved[signer]
            if pem:
                raise IntegrityError(f"{what}: the registry's published key {signer} does not match its id")
        raise IntegrityError(f"{what} is signed by key {signer}, which this reader does not trust "
                             f"(pin it with {TRUSTED_KEY_IDS_ENV}={signer} or give it in {VERIFY_KEY_ENV})")


def _message(domain: str, payload: bytes) -> bytes:
    return domain.encode() + b"\n" + payload
