"""KServe's storage initializer for ``s3://`` URIs: copy every object under a key *prefix* into the model dir.

Follows kserve ``python/storage/kserve_storage/kserve_storage.py`` (``Storage._download_s3``): the listing uses
the S3 string prefix (the path after the bucket, leading ``/`` stripped), so ``…/model`` also matches
``…/model_card.md``; objects ending in ``/`` or of size 0 are skipped; the destination is the key minus the
prefix with leading ``/`` stripped; when the prefix is exactly an object key only that object is fetched, under
its basename; no object at all is "Failed to fetch model. No model found in <prefix>."; a single downloaded
``.tar``/``.tgz``/``.zip`` is unpacked. The S3 client is the project's (minio, from ``S3Settings``), standing in
for boto3 with the credentials KServe would mount from the ServiceAccount's Secret.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import tarfile
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from driftloop.storage import S3Settings


class StorageError(RuntimeError):
    """The init container's failure; its message is what the pod's termination message would carry."""


def download(uri: str, target: Path, s3: S3Settings | None) -> list[str]:
    """Copies the objects under ``uri`` into ``target``; returns the relative paths written.

    Raises:
        StorageError: unsupported scheme, unreachable store, or nothing under the prefix.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3":
        raise StorageError(f"Cannot recognize storage type for {uri}; the emulator downloads s3:// only")
    if s3 is None:
        raise StorageError("no S3 settings: the emulated cluster has no storage credentials")
    bucket, prefix = parsed.netloc, parsed.path.lstrip("/")
    from minio.error import S3Error
    from urllib3.exceptions import HTTPError

    client = s3.client()
    tasks: list[tuple[str, Path]] = []
    try:
        if not client.bucket_exists(bucket):
            raise StorageError(f"Failed to fetch model. Bucket {bucket} does not exist (uri {uri}).")
        for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
            if obj.object_name.endswith("/") or not obj.size:
                continue
            exact = obj.object_name == prefix
            relative = obj.object_name.rsplit("/", 1)[-1] if exact else obj.object_name.removeprefix(prefix).lstrip("/")
            tasks.append((obj.object_name, target / relative))
            if exact:
                break
        if not tasks:
            raise StorageError(f"Failed to fetch model. No model found in {prefix}.")
        written = []
        for key, path in tasks:
            path.parent.mkdir(parents=True, exist_ok=True)
            client.fget_object(bucket, key, str(path))
            written.append(str(path.relative_to(target)))
    except S3Error as exc:
        raise StorageError(f"Failed to fetch model from {uri}: {exc.code}: {exc.message}") from None
    except (OSError, HTTPError) as exc:
        raise StorageError(f"Failed to fetch model from {uri}: {type(exc).__name__}: {exc}") from None
    if len(written) == 1:
        _unpack_if_archive(target / written[0], target)
    return written


def _unpack_if_archive(path: Path, target: Path) -> None:
    """``Storage._unpack_archive_file``: a lone tar or zip is extracted and removed."""
    mimetype, _ = mimetypes.guess_type(str(path))
    if mimetype == "application/x-tar" or path.name.endswith((".tgz", ".tar.gz")):
        with tarfile.open(path) as archive:
            archive.extractall(target, filter="data")
    elif mimetype == "application/zip":
        with zipfile.ZipFile(path) as archive:
            archive.extractall(target)
    else:
        return
    os.remove(path)


def clear(target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
