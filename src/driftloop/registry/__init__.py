"""Model registry: pick a backend by URI with :func:`open_registry`."""

from __future__ import annotations

from driftloop.errors import ConfigError
from driftloop.registry.base import CANARY, PRODUCTION, AuditEntry, ModelRegistry, ModelVersion, verify_chain
from driftloop.registry.local import LocalRegistry

__all__ = [
    "CANARY", "PRODUCTION", "AuditEntry", "LocalRegistry", "ModelRegistry", "ModelVersion", "open_registry",
    "verify_chain",
]


def open_registry(uri: str) -> ModelRegistry:
    """A local directory path, or ``s3://bucket/prefix`` (MinIO / S3)."""
    if not uri:
        raise ConfigError("no registry URI: pass --registry or set DRIFTLOOP_REGISTRY")
    if uri.startswith("s3://"):
        raise ConfigError("the S3 registry backend is not available yet; use a local directory")
    return LocalRegistry(uri.removeprefix("file://"))
