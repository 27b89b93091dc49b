"""The registry in a MinIO / S3 bucket, through the ``minio`` client.

Layout under ``s3://<bucket>/<prefix>/``::

    models/<name>/versions/<n>/.claim               created first, with If-None-Match: *
    models/<name>/versions/<n>/model/model.joblib   KServe's storageUri points at .../model/
    models/<name>/versions/<n>/model/driftloop-model.json   the model directory's manifest
    models/<name>/versions/<n>/<attachments>
    models/<name>/versions/<n>/version.json         written last: the version exists once it does
    models/<name>/audit/<seq>.json                  one object per entry, created with If-None-Match: *
    models/<name>/audit-head.json                   seq and hash of the newest entry (detects deletions)
    keys/<key id>.pub                               public keys of the writers (a convenience for readers)

S3 has no rename, so atomicity comes from conditional writes (``If-None-Match: *``, supported by
MinIO and AWS S3): a writer first claims the next number, which no other writer can then get; a
version becomes visible only when its ``version.json`` lands; a writer that dies leaves an invisible,
never-reused number. Audit entries claim their sequence number the same way, so two writers can never
both append entry *k*; the loser re-reads the trail and tries again.

All of that rests on the server refusing a second ``If-None-Match: *`` PUT of a key; some S3-compatible
stores ignore the header and overwrite. Before its first write, a registry checks that its store refuses
one (a probe object under ``.driftloop-probe/``) and refuses to write, with one line, when it does not.

Readers keep the last audit key they read and list only the keys after it (``start-after``), so a poll
costs one LIST and one GET per new entry. A writer signs with ``DRIFTLOOP_SIGNING_KEY`` (PEM) or
``DRIFTLOOP_SIGNING_KEY_FILE`` (a mounted Secret); none is created for an S3 registry.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlparse

from driftloop.errors import (
    ConfigError,
    ModelNotFoundError,
    RegistryError,
    UnavailableError,
    VersionExistsError,
)
from driftloop.registry.base import (
    MODEL_DIR,
    VERSION_FILE,
    AuditEntry,
    EntryBuilder,
    FilesBuilder,
    ModelRegistry,
    TrailRead,
    check_model_name,
    parse_entry,
)
from driftloop.signing import SigningKey, Trust
from driftloop.storage import S3Settings

CLAIM_FILE = ".claim"
PROBE_DIR = ".driftloop-probe"
MAX_ATTEMPTS = 1000


class S3Registry(ModelRegistry):
    """A registry under ``s3://bucket/prefix``.

    Args:
        uri: ``s3://bucket/prefix``.
        settings: Endpoint and credentials (default: from the environment).
        trust: Keys and policy for reading (default: from the environment).
        signing_key: The key to write with (default: ``DRIFTLOOP_SIGNING_KEY`` or the key file, if any).
    """

    def __init__(self, uri: str, settings: S3Settings | None = None, *, trust: Trust | None = None,
                 signing_key: SigningKey | None = None) -> None:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ConfigError(f"not an s3:// registry URI: {uri}")
        self.uri = uri.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.settings = settings or S3Settings.from_env()
        self._client = self.settings.client()
        self._store_checked = False
        self._init_signing(trust, signing_key, create_key=False)

    def __repr__(self) -> str:
        return f"S3Registry({self.uri!r}, endpoint={self.settings.endpoint!r})"

    # -- keys ---------------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def _model_key(self, name: str, *parts: str) -> str:
        return self._key("models", check_model_name(name), *parts)

    def _version_key(self, name: str, version: int, *parts: str) -> str:
        return self._model_key(name, "versions", str(int(version)), *parts)

    # -- S3 calls -----------------------------------------------------------------------------

    def _call(self, what: str, fn, *args, **kwargs):
        """Runs a client call, turning transport and S3 errors into one clear RegistryError."""
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "PreconditionFailed", "ConditionalRequestConflict"):
                raise
            raise RegistryError(f"registry {self.uri}: {what} failed: {exc.code}") from None
        except (OSError, HTTPError) as exc:
            raise UnavailableError(
                f"registry {self.uri}: cannot reach S3 endpoint {self.settings.endpoint} ({type(exc).__name__})"
            ) from None

    def _put(self, key: str, data: bytes, *, create_only: bool = False, checked: bool = False) -> bool:
        """Writes one object; with ``create_only`` returns False if it already existed.

        Every write first makes sure the store honours conditional writes (``checked`` skips that: the probe).
        """
        from minio.error import S3Error

        if not checked:
            self._check_store()
        headers = {"Content-Type": "application/octet-stream"}
        if create_only:
            headers["If-None-Match"] = "*"
        try:
            # put_object() turns unknown headers into x-amz-meta-*; the conditional header must reach
            # S3 as is, so this uses the client's single-part PUT (all our objects are small enough).
            self._call(f"writing {key}", self._client._put_object, self.bucket, key, data, headers)
        except S3Error as exc:
            # AWS answers a conditional write racing another one with 409 ConditionalRequestConflict:
            # as with 412, someone else got there first, and the caller tries again.
            if exc.code in ("PreconditionFailed", "ConditionalRequestConflict") and create_only:
                return False
            raise RegistryError(f"registry {self.uri}: writing {key} failed: {exc.code}") from None
        return True

    def _get(self, key: str) -> bytes | None:
        from minio.error import S3Error

        try:
            response = self._call(f"reading {key}", self._client.get_object, self.bucket, key)
        except S3Error:
            return None
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def _list(self, prefix: str, recursive: bool = False, start_after: str | None = None) -> list[str]:
        objects = self._call(f"listing {prefix}", lambda: list(
            self._client.list_objects(self.bucket, prefix=prefix, recursive=recursive, start_after=start_after)))
        return [o.object_name for o in objects]

    def ensure_bucket(self) -> None:
        """Creates the bucket if it is missing (for tests and first-time set-up)."""
        if not self._call("checking the bucket", self._client.bucket_exists, self.bucket):
            self._call("creating the bucket", self._client.make_bucket, self.bucket)

    def _check_store(self) -> None:
        """Before the first write: a second ``If-None-Match: *`` PUT of one key must be refused.

        Raises:
            RegistryError: the store overwrote the key, so two writers could take the same version number
                or audit entry; nothing is written.
        """
        if self._store_checked:
            return
        key = self._key(PROBE_DIR, uuid.uuid4().hex)
        first = self._put(key, b"probe", create_only=True, checked=True)
        second = self._put(key, b"probe", create_only=True, checked=True)
        try:
            self._client.remove_object(self.bucket, key)
        except Exception:  # noqa: BLE001 - a writer may lack delete rights; a leftover probe harms nothing
            pass
        if first and second:
            raise RegistryError(
                f"registry {self.uri}: the S3 endpoint {self.settings.endpoint} ignores conditional writes "
                "(If-None-Match: *), so concurrent writers could overwrite each other's versions; refusing to "
                "write (use a store that honours them, such as AWS S3 or MinIO)")
        self._store_checked = True

    # -- versions -----------------------------------------------------------------------------

    def _claimed_numbers(self, name: str) -> list[int]:
        base = self._model_key(name, "versions") + "/"
        names = [k[len(base):].strip("/") for k in self._list(base)]
        return [int(n) for n in names if n.isdigit()]

    def _publish(self, name: str, files_for: FilesBuilder, version: int | None) -> int:
        number = self._claim(name, version)
        files, record = files_for(number)
        for rel, data in files.items():
            self._put(self._version_key(name, number, rel), data)
        if not self._put(self._version_key(name, number, VERSION_FILE),
                         json.dumps(record, indent=2, sort_keys=True).encode(), create_only=True):
            raise RegistryError(f"{name} v{number}: version.json appeared under our claim; refusing to overwrite")
        return number

    def _claim(self, name: str, version: int | None) -> int:
        for _ in range(MAX_ATTEMPTS):
            number = version if version is not None else max(self._claimed_numbers(name), default=0) + 1
            if self._put(self._version_key(name, number, CLAIM_FILE), b"", create_only=True):
                return number
            if version is not None:
                raise VersionExistsError(f"{name} v{version} already exists; versions are immutable")
        raise RegistryError(f"could not claim a version number for {name} after {MAX_ATTEMPTS} attempts")

    def _version_numbers(self, name: str) -> list[int]:
        base = self._model_key(name, "versions") + "/"
        numbers = []
        for key in self._list(base, recursive=True):
            rest = key[len(base):]
            number, _, tail = rest.partition("/")
            if tail == VERSION_FILE and number.isdigit():
                numbers.append(int(number))
        return sorted(numbers)

    def _read_record(self, name: str, version: int) -> dict | None:
        data = self._get(self._version_key(name, version, VERSION_FILE))
        return None if data is None else json.loads(data)

    def _read_raw(self, name: str, version: int, relpath: str) -> bytes:
        data = self._get(self._version_key(name, version, relpath))
        if data is None:
            raise ModelNotFoundError(f"{name} v{version}: file '{relpath}' is missing from storage")
        return data

    def _storage_uri(self, name: str, version: int) -> str:
        # The trailing slash matters: KServe's storage initializer copies every key with this string
        # prefix, and ".../model" is also a prefix of a sibling ".../model_card.md".
        return f"s3://{self.bucket}/{self._version_key(name, version, MODEL_DIR)}/"

    def _model_names(self) -> list[str]:
        base = self._key("models") + "/"
        return sorted(k[len(base):].strip("/") for k in self._list(base) if k.endswith("/"))

    # -- audit trail --------------------------------------------------------------------------

    def _read_trail(self, name: str, cursor: object) -> TrailRead:
        base = self._model_key(name, "audit") + "/"
        keys = sorted(self._list(base, start_after=cursor))
        entries = []
        for key in keys:
            data = self._get(key)
            if data is not None:
                entries.append(parse_entry(data, key.rsplit("/", 1)[-1] + f" of {name}'s audit trail"))
        return TrailRead(entries, keys[-1] if keys else cursor)

    def _audit_head(self, name: str) -> dict | None:
        data = self._get(self._model_key(name, "audit-head.json"))
        return None if data is None else json.loads(data)

    def _commit(self, name: str, build: EntryBuilder) -> AuditEntry:
        for _ in range(MAX_ATTEMPTS):
            entries = self.history(name)
            entry = self._next_entry(entries[-1] if entries else None, build(entries))
            key = self._model_key(name, "audit", f"{entry.seq:010d}.json")
            if self._put(key, json.dumps(entry.to_dict(), sort_keys=True).encode(), create_only=True):
                head = json.dumps({"seq": entry.seq, "hash": entry.hash}).encode()
                self._put(self._model_key(name, "audit-head.json"), head)
                return entry
        raise RegistryError(f"could not append to the audit trail of {name} after {MAX_ATTEMPTS} attempts")

    # -- public keys --------------------------------------------------------------------------

    def _read_public_key(self, key_id: str) -> bytes | None:
        return self._get(self._key("keys", f"{key_id}.pub"))

    def _publish_public_key(self, key_id: str, pem: bytes) -> None:
        self._put(self._key("keys", f"{key_id}.pub"), pem, create_only=True)
