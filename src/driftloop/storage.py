"""Read and write bytes at a local path or an ``s3://bucket/key`` URI.

S3 access goes through the ``minio`` client. Connection settings come from :class:`S3Settings`,
which the caller builds explicitly (usually :meth:`S3Settings.from_env`); nothing is read from the
environment at import time, and secrets never appear in ``repr`` or error messages.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from driftloop.errors import ConfigError, DataError, UnavailableError


@dataclass(frozen=True)
class S3Settings:
    """Where the S3-compatible store is and how to authenticate.

    Attributes:
        endpoint: ``host:port`` of MinIO or another S3 endpoint.
        access_key: Access key id (from the environment or a Kubernetes Secret).
        secret_key: Secret key; excluded from ``repr``.
        secure: Use TLS.
        region: Optional region name.
    """

    endpoint: str
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    secure: bool = True
    region: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        """Builds settings from ``DRIFTLOOP_S3_*`` or the standard ``AWS_*`` variables.

        ``DRIFTLOOP_S3_ENDPOINT`` (or ``AWS_ENDPOINT_URL``/``S3_ENDPOINT``) may be a bare
        ``host:port`` or a URL; an ``http://`` URL turns TLS off.
        """
        env = os.environ if environ is None else environ
        raw = env.get("DRIFTLOOP_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL") or env.get("S3_ENDPOINT")
        if not raw:
            raise ConfigError(
                "s3:// URIs need an endpoint: set DRIFTLOOP_S3_ENDPOINT (e.g. minio.kubeflow:9000)"
            )
        secure = _parse_bool(env.get("DRIFTLOOP_S3_SECURE") or env.get("S3_USE_HTTPS"), default=True)
        if "://" in raw:
            parsed = urlparse(raw)
            secure = parsed.scheme == "https"
            raw = parsed.netloc
        return cls(
            endpoint=raw,
            access_key=env.get("DRIFTLOOP_S3_ACCESS_KEY") or env.get("AWS_ACCESS_KEY_ID"),
            secret_key=env.get("DRIFTLOOP_S3_SECRET_KEY") or env.get("AWS_SECRET_ACCESS_KEY"),
            secure=secure,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
        )

    def client(self):  # -> minio.Minio, imported lazily to keep CLI start-up fast
        """Returns a ``minio.Minio`` client for these settings."""
        from minio import Minio

        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=self.secure,
            region=self.region,
        )


def _parse_bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def sha256_bytes(data: bytes) -> str:
    """The hex sha256 of ``data`` (data files in lineage, stored files in the registry)."""
    return hashlib.sha256(data).hexdigest()


def is_s3_uri(uri: str) -> bool:
    """True for ``s3://`` URIs."""
    return uri.startswith("s3://")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """Splits ``s3://bucket/key`` into ``(bucket, key)``."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigError(f"not an s3:// URI: {uri}")
    return parsed.netloc, parsed.path.lstrip("/")


def split_object_uri(uri: str) -> tuple[str, str]:
    """Splits ``s3://bucket/key`` of one object into ``(bucket, key)``; a URI without a key is refused."""
    bucket, key = split_s3_uri(uri)
    if not key or key.endswith("/"):
        raise ConfigError(f"{uri} names no object: give s3://bucket/path/to/file")
    return bucket, key


def read_bytes(uri: str, s3: S3Settings | None = None) -> bytes:
    """Reads the whole object at ``uri`` (a local path or ``s3://``).

    Raises:
        DataError: the file or object does not exist or cannot be read.
    """
    if is_s3_uri(uri):
        bucket, key = split_object_uri(uri)
        settings = s3 or S3Settings.from_env()
        with _s3_errors("read", uri, settings):
            response = settings.client().get_object(bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()
    path = Path(uri.removeprefix("file://"))
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if path.is_dir():
        raise DataError(f"expected a file, got a directory: {path}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None


def write_bytes(uri: str, data: bytes, s3: S3Settings | None = None) -> str:
    """Writes ``data`` to ``uri`` (a local path, written to a temporary name and renamed, or ``s3://``).

    Raises:
        DataError: the object or file cannot be written.
    """
    if is_s3_uri(uri):
        bucket, key = split_object_uri(uri)
        settings = s3 or S3Settings.from_env()
        with _s3_errors("write", uri, settings):
            settings.client().put_object(bucket, key, io.BytesIO(data), len(data))
        return uri
    path = Path(uri.removeprefix("file://"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror}") from None
    return str(path)


def download_file(uri: str, path: str | Path, s3: S3Settings | None = None) -> Path:
    """Streams the object at an ``s3://`` URI to a local file (never whole in memory).

    Raises:
        DataError: the object does not exist or cannot be read.
    """
    bucket, key = split_object_uri(uri)
    settings = s3 or S3Settings.from_env()
    with _s3_errors("read", uri, settings):
        settings.client().fget_object(bucket, key, str(path))
    return Path(path)


def upload_file(path: str | Path, uri: str, s3: S3Settings | None = None) -> str:
    """Uploads a local file to an ``s3://`` URI: one PUT, or a multipart upload for a large file (minio picks
    the part size), so the object appears whole or not at all.

    Raises:
        DataError: the object cannot be written.
    """
    bucket, key = split_object_uri(uri)
    settings = s3 or S3Settings.from_env()
    with _s3_errors("write", uri, settings):
        settings.client().fput_object(bucket, key, str(path))
    return uri


@contextmanager
def _s3_errors(verb: str, uri: str, settings: S3Settings) -> Iterator[None]:
    """S3 failures as one line that names the object (never the credentials)."""
    from minio.error import S3Error
    from urllib3.exceptions import HTTPError

    try:
        yield
    except S3Error as exc:
        raise DataError(f"cannot {verb} {uri}: {exc.code}") from None
    except (ConnectionError, TimeoutError, HTTPError) as exc:
        raise UnavailableError(f"cannot reach S3 endpoint {settings.endpoint} for {uri}: {type(exc).__name__}") \
            from None
    except OSError as exc:  # the local side of a download or upload: a full disk, a permission
        raise DataError(f"cannot {verb} {uri}: {exc.strerror or type(exc).__name__}") from None
