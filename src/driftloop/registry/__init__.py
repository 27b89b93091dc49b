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
    Verification,
    replay,
    verify_chain,
)
from driftloop.registry.local import LocalRegistry
from driftloop.signing import SigningKey, Trust
from driftloop.storage import S3Settings

__all__ = [
    "CANARY", "PRODUCTION", "AuditEntry", "LocalRegistry", "ModelRegistry", "ModelVersion", "RegistryState",
    "Verification", "open_registry", "replay", "verify_chain",
]


def open_registry(uri: str, s3: S3Settings | None = None, *, trust: Trust | None = None,
                  signing_key: SigningKey | None = None) -> ModelRegistry:
    """A local directory path, or ``s3://bucket/prefix`` (MinIO / S3, settings from the environment).

    Args:
        trust: The keys and policy signatures are checked with (default: the environment; see
            :mod:`driftloop.signing`).
        signing_key: The key versions and audit entries are signed with (default: the environment's, or for a
            local registry the key file, created on first write).
    """
    if not uri:
        raise ConfigError("no registry URI: pass --registry or set DRIFTLOOP_REGISTRY")
    if uri.startswith("s3://"):
        from driftloop.registry.s3 import S3Registry

        return S3Registry(uri, s3, trust=trust, signing_key=signing_key)
    if "://" in uri and not uri.startswith("file://"):
        raise ConfigError(f"unsupported registry URI '{uri}': use a directory or s3://bucket/prefix")
    return LocalRegistry(uri.removeprefix("file://"), trust=trust, signing_key=signing_key)
