"""A registry version loaded for serving: its signature and every file's sha256 checked first, then the Pipeline —
and its fast scoring path (the compiled graph), where the version's metadata says it was proven to agree.

What it answers is what users see, per task: a classifier's class labels (the spec's ``target_classes``, through
:mod:`driftloop.serving.labels`) and, on request, each class's probability; a regression's numbers."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from driftloop import model_dir
from driftloop.data import DatasetSpec
from driftloop.fastpath.agreement import FastPathRecord
from driftloop.fastpath.scorer import OnnxScorer
from driftloop.registry import ModelRegistry
from driftloop.serving.labels import labels_of, served_classes
from driftloop.signing import Trust

log = logging.getLogger(__name__)
NO_FAST_PATH = "registered without a fast path"
Rows = pd.DataFrame | Mapping[str, Sequence]


class NoClassProbabilities(ValueError):
    """Class probabilities were asked of a regression model."""


@dataclass(frozen=True)
class Scores:
    """A version's answers for some rows: ``predictions`` (class labels, or a regression's numbers as float64)
    and, when asked of a classifier, ``probabilities`` ([n, k], one column per class in the spec's order)."""

    predictions: np.ndarray
    probabilities: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.predictions)

    def rows(self, start: int, stop: int, probabilities: bool = True) -> Scores:
        """The answers of rows ``start:stop`` (without the probabilities when not wanted)."""
        kept = self.probabilities[start:stop] if probabilities and self.probabilities is not None else None
        return Scores(self.predictions[start:stop], kept)


@dataclass(frozen=True)
class ServedVersion:
    """One loaded version: the Pipeline and the spec it was trained on, and the scorer of its fast path when it
    has an accepted one (``serves_with`` says which path serves and why, in words)."""

    name: str
    version: int
    spec: DatasetSpec
    pipeline: object
    fast: OnnxScorer | None = None
    serves_with: str = f"the Pipeline: {NO_FAST_PATH}"

    @property
    def classes(self) -> tuple:
        """The class labels, in the order of the probabilities' columns; empty for a regression."""
        return served_classes(self.spec)

    @property
    def scoring_path(self) -> str:
        """``onnx`` (the verified fast path) or ``pipeline``."""
        return "onnx" if self.fast is not None else "pipeline"

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
        spec = DatasetSpec.from_dict(manifest.spec)
        fast, why = _fast_scorer(loaded, spec)
        log.info("%s v%s scores with %s", manifest.model, manifest.version, why)
        return cls(manifest.model, manifest.version, spec, loaded.pipeline, fast, why)

    def warm_up(self) -> None:
        """Scores one row with every feature missing, so the first caller does not pay for lazy imports and
        first-call set-up (a cold canary looks slower than it is, and a rollout judges its latency). A model
        that cannot score that row still serves: real requests, and the rollout's analysis, judge it."""
        try:
            self.predict(pd.DataFrame({name: [None] for name in self.spec.feature_names}))
        except Exception as exc:  # noqa: BLE001 - a synthetic row's failure is a warning, not a verdict
            log.warning("%s v%s: warm-up prediction failed (%s: %s)", self.name, self.version, type(exc).__name__,
                        str(exc).splitlines()[0][:200] if str(exc) else "")

    def predict(self, rows: Rows) -> np.ndarray:
        """What users are answered for typed feature rows (a DataFrame, or typed columns as the request decoder
        makes them): class labels, or a regression's numbers — from the fast path when it was accepted (the same
        answers, proven at registration), else from the Pipeline."""
        return self.score(rows).predictions

    def score(self, rows: Rows, probabilities: bool = False) -> Scores:
        """:meth:`predict`'s answers and, with ``probabilities``, each class's probability per row.

        With probabilities the Pipeline's preprocessing runs once for both: then its estimator's
        ``predict_proba`` and ``predict`` (what ``Pipeline.predict`` calls on the same features) — except where
        that ``predict`` is itself the likelier class of ``predict_proba`` (scikit-learn's tree ensembles), which
        is then taken from the probabilities already computed. The fast path's labels are always the likelier
        class of its probabilities.

        Raises:
            NoClassProbabilities: probabilities asked of a regression model.
        """
        if probabilities:
            self.require_probabilities()
        if not self.spec.is_classification:
            values = self.fast.predict(rows) if self.fast is not None else self.pipeline.predict(self._features(rows))
            return Scores(np.asarray(values, dtype=np.float64))
        if not probabilities:
            indices = self.fast.predict(rows) if self.fast is not None else self.pipeline.predict(self._features(rows))
            return Scores(labels_of(indices, self.classes))
        indices, probabilities_ = self._indices_and_probabilities(rows)
        return Scores(labels_of(indices, self.classes), np.asarray(probabilities_, dtype=np.float64))

    def require_probabilities(self) -> None:
        """Raises NoClassProbabilities when the version is a regression model."""
        if not self.spec.is_classification:
            raise NoClassProbabilities(f"{self.name} v{self.version} is a regression model: a regression model "
                                       "has no class probabilities")

    def _features(self, rows: Rows) -> pd.DataFrame:
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=self.spec.feature_names)
        return frame[self.spec.feature_names]

    def _indices_and_probabilities(self, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
        if self.fast is not None:  # the answers the fast path gives (proven equal to the Pipeline's at registration)
            probabilities = self.fast.predict_proba(rows)
            return np.argmax(probabilities, axis=1), probabilities
        features = self._features(rows)
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


def _fast_scorer(loaded: model_dir.LoadedModel, spec: DatasetSpec) -> tuple[OnnxScorer | None, str]:
    """The fast path's scorer when the manifest accepted it and this runtime can load it; and what serves, why."""
    recorded = loaded.manifest.lineage.get(model_dir.FAST_PATH_KEY)
    if not recorded:
        return None, f"the Pipeline: {NO_FAST_PATH}"
    record = FastPathRecord.from_dict(recorded)
    if not record.accepted:
        return None, f"the Pipeline: the fast path was refused at registration ({record.reason})"
    if loaded.graph is None:
        return None, f"the Pipeline: the fast path was accepted but {model_dir.ONNX_FILENAME} is not in the directory"
    try:
        scorer = OnnxScorer(loaded.graph, spec)
    except Exception as exc:  # noqa: BLE001 - e.g. an onnxruntime older than the graph's opsets: the Pipeline serves
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""  # the start line stays one line
        return None, f"the Pipeline: onnxruntime here cannot load the fast path ({type(exc).__name__}: {first})"
    return scorer, f"the fast path (ONNX, {record.reason})"
