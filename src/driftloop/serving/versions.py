"""A registry version loaded for serving: its signature and every file's sha256 checked first, then the Pipeline."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from driftloop import model_dir
from driftloop.data import DatasetSpec
from driftloop.registry import ModelRegistry
from driftloop.signing import Trust

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedVersion:
    """One loaded version: the Pipeline and the spec it was trained on."""

    name: str
    version: int
    spec: DatasetSpec
    pipeline: object

    @classmethod
    def load(cls, registry: ModelRegistry, name: str, version: int) -> ServedVersion:
        """Fetches the model directory (the version's signature, then every file's sha256, checked with the
        registry's keys and policy) and loads it.

        Layout-2 directories are loaded from their own manifest (signature, hashes and library versions
        checked, as the cluster runtime does); layout-1 versions take their spec from the registry.

        Raises:
            IntegrityError: a signature fails, is untrusted, was removed, or is missing where the policy
                requires one; or a stored file does not match its checksum. Nothing is unpickled.
            IncompatibleModelError: the model was trained with another scikit-learn/XGBoost minor version.
        """
        with tempfile.TemporaryDirectory(prefix="driftloop-serve-") as tmp:
            directory = registry.fetch_model(name, version, Path(tmp))
            if registry.get_version(name, version).layout >= 2:
                return cls.from_directory(directory, registry.trust)
            spec = DatasetSpec.from_json(registry.read_file(name, version, "spec.json").decode())
            import joblib

            return cls(name, version, spec, joblib.load(directory / model_dir.MODEL_FILENAME))

    @classmethod
    def from_directory(cls, directory: str | Path, trust: Trust | None = None) -> ServedVersion:
        """Loads a self-contained model directory (what KServe's storage initializer leaves at /mnt/models),
        its manifest's signature checked with ``trust`` (default: the environment's keys and policy)."""
        loaded = model_dir.load(directory, trust=trust)
        manifest = loaded.manifest
        return cls(manifest.model, manifest.version, DatasetSpec.from_dict(manifest.spec), loaded.pipeline)

    def warm_up(self) -> None:
        """Scores one row with every feature missing, so the first caller does not pay for lazy imports and
        first-call set-up (a cold canary looks slower than it is, and a rollout judges its latency). A model
        that cannot score that row still serves: real requests, and the rollout's analysis, judge it."""
        try:
            self.predict(pd.DataFrame({name: [None] for name in self.spec.feature_names}))
        except Exception as exc:  # noqa: BLE001 - a synthetic row's failure is a warning, not a verdict
            log.warning("%s v%s: warm-up prediction failed (%s: %s)", self.name, self.version, type(exc).__name__,
                        str(exc).splitlines()[0][:200] if str(exc) else "")

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Class predictions (0/1) for typed feature rows, as KServe's sklearn runtime returns them."""
        return self.pipeline.predict(frame[self.spec.feature_names])

    def predict_with_probabilities(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The class predictions :meth:`predict` gives, and both class probabilities per row ([n, 2], the spec's
        class order), for batch scoring: the Pipeline's preprocessing runs once for both, then its estimator's
        ``predict_proba`` and ``predict`` (what ``Pipeline.predict`` calls on the same features) — except where
        that ``predict`` is itself the likelier class of ``predict_proba`` (scikit-learn's tree ensembles), which
        is then taken from the probabilities already computed instead of computing them twice."""
        features = frame[self.spec.feature_names]
        if not hasattr(self.pipeline, "steps"):  # a bare estimator in a hand-made model directory
            return self.pipeline.predict(features), self.pipeline.predict_proba(features)
        transformed = self.pipeline[:-1].transform(features)
        estimator = self.pipeline[-1]
        probabilities = estimator.predict_proba(transformed)
        if _predicts_the_likelier_class(estimator):
            return estimator.classes_[np.argmax(probabilities, axis=1)], probabilities
        return estimator.predict(transformed), probabilities


def _predicts_the_likelier_class(estimator: object) -> bool:
    """Whether the estimator's ``predict`` is ``classes_[argmax(predict_proba)]`` by its own code
    (``HistGradientBoostingClassifier.predict``, ``ForestClassifier.predict`` in scikit-learn)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    return isinstance(estimator, (HistGradientBoostingClassifier, RandomForestClassifier))
