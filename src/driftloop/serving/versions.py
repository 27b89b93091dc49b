"""A registry version loaded for serving: checksums verified first, then the Pipeline unpickled."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from driftloop.data import DatasetSpec
from driftloop.registry import ModelRegistry
from driftloop.training import load_model


@dataclass(frozen=True)
class ServedVersion:
    """One loaded version: the Pipeline and the spec it was trained on."""

    name: str
    version: int
    spec: DatasetSpec
    pipeline: object

    @classmethod
    def load(cls, registry: ModelRegistry, name: str, version: int) -> ServedVersion:
        """Fetches the model directory (every file checked against its sha256) and loads it.

        Raises:
            IntegrityError: a stored file does not match its checksum; nothing is loaded.
        """
        spec = DatasetSpec.from_json(registry.read_file(name, version, "spec.json").decode())
        with tempfile.TemporaryDirectory(prefix="driftloop-serve-") as tmp:
            pipeline = load_model(registry.fetch_model(name, version, Path(tmp)))
        return cls(name, version, spec, pipeline)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Class predictions (0/1) for typed feature rows, as KServe's sklearn runtime returns them."""
        return self.pipeline.predict(frame[self.spec.feature_names])
