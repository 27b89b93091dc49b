"""The registry on a local directory (the embedded default).

Layout under the root::

    models/<name>/versions/<n>/model/model.joblib   the directory KServe serves (storageUri)
    models/<name>/versions/<n>/model/driftloop-model.json   its manifest: spec, libraries, file hashes
    models/<name>/versions/<n>/version.json         checksums of every file, lineage, metrics
    models/<name>/versions/<n>/<attachments>        spec.json, profile.json, model_card.md, …
    models/<name>/audit.jsonl                       append-only, hash-chained; aliases are its replay
    models/<name>/audit.head                        seq and hash of the newest entry (detects deletions)
    models/<name>/.staging/                         versions being written; never listed
    keys/<key id>.pub                               public keys of the writers (a convenience for readers)

A version is written completely under ``.staging`` and then renamed to ``versions/<n>``: a directory
rename is atomic and fails if ``<n>`` already exists, so a crash leaves nothing visible and two
writers can never share a number (the loser writes its version again under the next one, since the
manifest names the number). Audit appends hold an
exclusive ``flock`` on the model's ``.lock`` file.

Readers remember how far into ``audit.jsonl`` they have read (the offset after the last complete line,
and that line) and read only the tail after it; if that line is no longer where it was, the file was
rewritten and they read it again from the start. The signing key is created on first write when there is
none (``~/.config/driftloop/signing-key``, outside the registry).
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
from pathlib import Path

from driftloop.errors import ModelNotFoundError, VersionExistsError
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

AUDIT_FILE = "audit.jsonl"


class LocalRegistry(ModelRegistry):
    """A registry rooted at a directory.

    Args:
        root: The directory.
        trust: Keys and policy for reading (default: from the environment).
        signing_key: The key to write with (default: from the environment, or created on first write).
    """

    def __init__(self, root: str | Path, *, trust: Trust | None = None, signing_key: SigningKey | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)
        self._init_signing(trust, signing_key, create_key=True)

    def __repr__(self) -> str:
        return f"LocalRegistry({self.uri!r})"

    def _model_root(self, name: str) -> Path:
        return self.root / "models" / check_model_name(name)

    def _version_dir(self, name: str, version: int) -> Path:
        return self._model_root(name) / "versions" / str(int(version))

    # -- versions -----------------------------------------------------------------------------

    def _publish(self, name: str, files_for: FilesBuilder, version: int | None) -> int:
        versions = self._model_root(name) / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        while True:
            number = version if version is not None else max(self._all_numbers(name), default=0) + 1
            staging = self._stage(name, *files_for(number))
            try:
                os.rename(staging, versions / str(number))
            except OSError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                if version is not None:
                    raise VersionExistsError(f"{name} v{version} already exists; versions are immutable") from None
                continue  # another writer took the number; the files name it, so build them again
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            _fsync_dir(versions)
            return number

    def _stage(self, name: str, files: dict[str, bytes], record: dict) -> Path:
        """Writes a complete version under ``.staging`` (never listed) and returns its directory."""
        staging = self._model_root(name) / ".staging" / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            for rel, data in files.items():
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                _write_durably(target, data)
            _write_durably(staging / VERSION_FILE, json.dumps(record, indent=2, sort_keys=True).encode())
            for path in staging.rglob("*"):
                if path.is_file():
                    path.chmod(0o444)  # immutable by convention and, for careless hands, by mode
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    def _all_numbers(self, name: str) -> list[int]:
        versions = self._model_root(name) / "versions"
        if not versions.is_dir():
            return []
        return [int(p.name) for p in versions.iterdir() if p.name.isdigit()]

    def _version_numbers(self, name: str) -> list[int]:
        return sorted(n for n in self._all_numbers(name) if (self._version_dir(name, n) / VERSION_FILE).is_file())

    def _read_record(self, name: str, version: int) -> dict | None:
        try:
            return json.loads((self._version_dir(name, version) / VERSION_FILE).read_text())
        except FileNotFoundError:
            return None

    def _read_raw(self, name: str, version: int, relpath: str) -> bytes:
        try:
            return (self._version_dir(name, version) / relpath).read_bytes()
        except FileNotFoundError:
            raise ModelNotFoundError(f"{name} v{version}: file '{relpath}' is missing from storage") from None

    def _storage_uri(self, name: str, version: int) -> str:
        return str(self._version_dir(name, version) / MODEL_DIR)

    def _model_names(self) -> list[str]:
        models = self.root / "models"
        return sorted(p.name for p in models.iterdir() if p.is_dir()) if models.is_dir() else []

    # -- audit trail --------------------------------------------------------------------------

    @contextmanager
    def _locked(self, name: str) -> Iterator[Path]:
        model_root = self._model_root(name)
        model_root.mkdir(parents=True, exist_ok=True)
        with open(model_root / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield model_root
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_trail(self, name: str, cursor: object) -> TrailRead:
        path = self._model_root(name) / AUDIT_FILE
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            return TrailRead([], None, reset=cursor is not None)
        with handle:
            reset = False
            if cursor is not None:
                offset, last_line = cursor
                start = offset - len(last_line)
                handle.seek(max(start, 0))
                if start < 0 or handle.read(len(last_line)) != last_line:
                    reset, offset, last_line = True, 0, b""  # rewritten: read it all again
                    handle.seek(0)
            else:
                offset, last_line = 0, b""
            tail = handle.read()
        # Only newline-terminated lines are committed: a writer killed mid-line left the rest.
        complete = tail[:tail.rfind(b"\n") + 1]
        lines = [line for line in complete.split(b"\n")[:-1] if line.strip()]
        entries = [parse_entry(line, f"{AUDIT_FILE} of {name}, a line after byte {offset}") for line in lines]
        if lines:
            offset, last_line = offset + len(complete), lines[-1] + b"\n"
        return TrailRead(entries, (offset, last_line) if offset else None, reset=reset)

    def _commit(self, name: str, build: EntryBuilder) -> AuditEntry:
        with self._locked(name) as model_root:
            entries = self.history(name)
            entry = self._next_entry(entries[-1] if entries else None, build(entries))
            _drop_torn_tail(model_root / AUDIT_FILE)
            with open(model_root / AUDIT_FILE, "a") as handle:
                handle.write(json.dumps(entry.to_dict(), sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            head = model_root / "audit.head"
            tmp = head.with_name(f".audit.head.{uuid.uuid4().hex}")
            _write_durably(tmp, json.dumps({"seq": entry.seq, "hash": entry.hash}).encode())
            os.replace(tmp, head)
            return entry

    def _audit_head(self, name: str) -> dict | None:
        try:
            return json.loads((self._model_root(name) / "audit.head").read_text())
        except FileNotFoundError:
            return None

    # -- public keys --------------------------------------------------------------------------

    def _read_public_key(self, key_id: str) -> bytes | None:
        try:
            return (self.root / "keys" / f"{key_id}.pub").read_bytes()
        except FileNotFoundError:
            return None

    def _publish_public_key(self, key_id: str, pem: bytes) -> None:
        path = self.root / "keys" / f"{key_id}.pub"
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{key_id}.{uuid.uuid4().hex}")
        _write_durably(tmp, pem)
        tmp.chmod(0o444)
        os.replace(tmp, path)


def _drop_torn_tail(path: Path) -> None:
    """Cuts an unterminated last line (a writer killed mid-append) before appending after it."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
