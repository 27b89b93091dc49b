"""Where driftloop keeps its state and which registry it talks to.

Resolved once per command from explicit arguments first, then the environment
(``DRIFTLOOP_HOME``, ``DRIFTLOOP_REGISTRY``), then defaults. Never at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".driftloop"


@dataclass(frozen=True)
class Settings:
    """Resolved settings.

    Attributes:
        home: Working directory for runs, generated data and the local registry.
        registry_uri: Registry location: a directory, or ``s3://bucket/prefix``.
    """

    home: Path
    registry_uri: str

    @classmethod
    def resolve(
        cls, home: str | None = None, registry: str | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        env = os.environ if environ is None else environ
        home_path = Path(home or env.get("DRIFTLOOP_HOME") or DEFAULT_HOME).expanduser().resolve()
        registry_uri = registry or env.get("DRIFTLOOP_REGISTRY") or str(home_path / "registry")
        return cls(home_path, registry_uri)
