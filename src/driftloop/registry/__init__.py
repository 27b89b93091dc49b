"""Model registry: pick a backend by URI with :func:`open_registry`."""

from __future__ import annotations

from driftloop.errors import ConfigError
from driftloop.registry.base import (
    CANARY,
    PRODUCTION,
    AuditEntry,
    ModelRegistry,
    ModelVersion,
    RegistryState,
    replay,
    verify_chain,
)
from driftloop.registry.local import LocalRegistry
from driftloop.storage import S3Settings

__all__ = [
    "CANARY", "PRODUCTION", "AuditEntry", "LocalRegistry", "ModelRegistry", "ModelVersion", "RegistryState",
    "open_registry", "replay", "verify_chain",
]


def open_registry(uri: str, s3: S3Settings | None = None) -> ModelRegistry:
    """A local directory path, or ``s3://bucket/prefix`` (MinIO / S3, settings from the environment)."""
    if not uri:
        raise ConfigError("no registry URI: pass --registry or set DRIFTLOOP_REGISTRY")
    if uri.startswith("s3://"):
        from driftloop.registry.s3 import S3Registry

        return S3Registry(uri, s3)
    if "://" in uri and not uri.startswith("file://"):
        raise ConfigError(f"unsupported registry URI '{uri}': use a directory or s3://bucket/prefix")
    return LocalRegistry(uri.removeprefix("file://"))
