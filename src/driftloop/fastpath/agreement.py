"""Accepting a compiled graph only when it answers what the Pipeline answers.

The Pipeline is the model that was evaluated and gated; its compiled form is a different program (other
converters, float32 where the Pipeline's estimator uses it, onnxruntime's kernels). So the graph is run, through
the serving path's own :class:`~driftloop.fastpath.scorer.OnnxScorer`, on the rows the version is judged by —
the holdout and the reference sample — plus edge cases the data may lack (every feature missing in turn, unseen
categories), and accepted only if on every row

- the positive-class probabilities differ by at most :data:`TOLERANCE`, and
- the labels are identical, except where the Pipeline's probability lies within the tolerance of the 0.5
  threshold (there float rounding alone may flip a label, and either answer is the model's).

Otherwise the version serves the Pipeline, and the record says why.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from importlib import metadata

import numpy as np
import pandas as pd

from driftloop.data import DatasetSpec
from driftloop.model_dir import ONNX_FILENAME

# Why 1e-5: a faithful graph differs from the Pipeline only by floating-point rounding — exactly 0 to 1e-15 where
# both compute in double (linear models, histogram gradient boosting), about 1e-7 where trees add up float32
# leaf values (forests, XGBoost: float32's epsilon is 1.2e-7, and a few hundred additions in another order stay
# within ~1e-6). A conversion fault — a split sent the wrong way, a missed category, a wrong intercept or
# imputation — moves a probability by a leaf value or a coefficient's share, 1e-3 and more. 1e-5 sits ten times
# above the rounding and a hundred times below the faults, and below any resolution driftloop reports a metric at.
TOLERANCE = 1e-5
THRESHOLD = 0.5
ACCEPTED, REFUSED = "accepted", "refused"
FAST_PATH_LIBRARIES = ("onnxruntime", "skl2onnx", "onnxmltools", "onnx")
UNSEEN_CATEGORY = "__driftloop_unseen__"
# The rows a graph must have been checked on to be accepted: what the version was evaluated on and what it is
# monitored against.
REQUIRED_SETS = ("holdout", "reference_sample")


@dataclass(frozen=True)
class Agreement:
    """How a compiled graph compares with its Pipeline over a set of rows."""

    rows: int
    max_abs_diff: float  # max |Δp| of the positive class
    label_disagreements: int  # labels that differ away from the threshold (any one refuses the graph)
    at_threshold: int  # labels that differ where the Pipeline's p is within the tolerance of 0.5 (allowed)
    tolerance: float = TOLERANCE

    @property
    def agrees(self) -> bool:
        return self.rows > 0 and self.max_abs_diff <= self.tolerance and self.label_disagreements == 0


@dataclass(frozen=True)
class FastPathRecord:
    """What a version's metadata (lineage and manifest, ``fast_path``) says about its fast scoring path."""

    status: str  # accepted | refused
    reason: str  # why refused; for an accepted graph, the figures in words
    file: str | None = None  # the graph in the model directory, when accepted
    rows_checked: dict[str, int] = field(default_factory=dict)  # per set of rows
    rows: int = 0
    max_abs_diff: float | None = None
    label_disagreements: int | None = None
    at_threshold: int | None = None
    tolerance: float = TOLERANCE
    compile_seconds: float = 0.0
    libraries: dict[str, str | None] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.status == ACCEPTED

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FastPathRecord:
        """The record in a version's metadata (fields a later driftloop added are ignored)."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def compare(pipeline, scorer, frame: pd.DataFrame, spec: DatasetSpec) -> Agreement:
    """Scores ``frame``'s rows with both and compares them (see the module's rule)."""
    rows = frame[spec.feature_names]
    expected = np.asarray(pipeline.predict_proba(rows))[:, 1]
    expected_labels = np.asarray(pipeline.predict(rows))
    answered = np.asarray(scorer.predict_proba(rows), dtype=np.float64)[:, 1]
    labels = scorer.predict(rows)
    differ = labels != expected_labels
    near = np.abs(expected - THRESHOLD) <= TOLERANCE
    diff = np.abs(answered - expected)
    diff[np.isnan(diff)] = 1.0  # a NaN probability is as far from the Pipeline's as a probability can be
    differ |= diff == 1.0
    return Agreement(len(rows), float(diff.max()) if len(diff) else 0.0, int((differ & ~near).sum()),
                     int((differ & near).sum()))


def compile_fast_path(pipeline, spec: DatasetSpec, checked: dict[str, pd.DataFrame],
                      convert=None) -> tuple[bytes | None, FastPathRecord]:
    """Compiles ``pipeline`` and checks the graph on every set of rows in ``checked`` (plus edge cases).

    Args:
        checked: Named sets of rows with the spec's feature columns; every one of :data:`REQUIRED_SETS` must be
            there and non-empty, or the graph is refused unchecked.
        convert: ``(pipeline, spec) -> graph bytes``; default :func:`driftloop.fastpath.convert.to_onnx`.

    Returns:
        The graph when accepted (else None) and the record for the version's metadata.
    """
    from driftloop.fastpath.convert import NotCompilable, first_line, to_onnx
    from driftloop.fastpath.scorer import OnnxScorer

    started = time.perf_counter()
    libraries = fast_path_libraries()
    sets = {name: frame for name, frame in checked.items() if frame is not None and len(frame)}
    if sets:
        sets["edge_cases"] = edge_cases(next(iter(sets.values())), spec)
    counts = {name: len(frame) for name, frame in sets.items()}

    def refused(reason: str, agreement: Agreement | None = None) -> tuple[None, FastPathRecord]:
        figures = _figures(agreement) if agreement else {}
        return None, FastPathRecord(REFUSED, reason, None, counts, **figures,
                                    compile_seconds=round(time.perf_counter() - started, 3), libraries=libraries)

    missing = [name for name in REQUIRED_SETS if name not in sets]
    if missing:
        return refused(f"not checked: no {' and no '.join(missing)} rows to check the compiled form against")
    try:
        graph = (convert or to_onnx)(pipeline, spec)
    except NotCompilable as exc:
        return refused(f"not compiled: {exc}")
    try:
        scorer = OnnxScorer(graph, spec)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own errors: any of them means "cannot serve it"
        return refused(f"onnxruntime cannot load the compiled form: {type(exc).__name__}: {first_line(exc)}")
    try:
        results = [compare(pipeline, scorer, frame, spec) for frame in sets.values()]
    except Exception as exc:  # noqa: BLE001 - a graph that fails on real rows is refused, whatever the failure
        return refused(f"the compiled form failed to score the rows: {type(exc).__name__}: {first_line(exc)}")
    total = Agreement(sum(r.rows for r in results), max(r.max_abs_diff for r in results),
                      sum(r.label_disagreements for r in results), sum(r.at_threshold for r in results))
    # ASCII: the reason is shown inside JSON (``driftloop models show``, the manifest), which escapes the rest
    words = (f"max |dp| {total.max_abs_diff:.2g} over {total.rows} rows (tolerance {TOLERANCE:g}), "
             f"{total.label_disagreements} label(s) differ away from the threshold")
    if not total.agrees:
        return refused(f"disagrees with the Pipeline: {words}", total)
    return graph, FastPathRecord(ACCEPTED, f"agrees with the Pipeline: {words}", ONNX_FILENAME, counts,
                                 **_figures(total), compile_seconds=round(time.perf_counter() - started, 3),
                                 libraries=libraries)


def edge_cases(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Rows the data may lack but serving meets: a row of a real one per feature with that feature missing, a
    row with every feature missing, and a row with every category unseen in training."""
    base = frame[spec.feature_names].iloc[[0]].astype(object)
    rows = []
    for name in spec.feature_names:
        row = base.copy()
        row[name] = None
        rows.append(row)
    rows.append(pd.DataFrame({name: [None] for name in spec.feature_names}, dtype=object))
    unseen = base.copy()
    for name in spec.names_of("categorical"):
        unseen[name] = UNSEEN_CATEGORY
    rows.append(unseen)
    cases = pd.concat(rows, ignore_index=True)
    numeric = spec.names_of("numeric")
    cases[numeric] = cases[numeric].astype(np.float64)  # as the request decoder types them
    return cases


def fast_path_libraries() -> dict[str, str | None]:
    """The installed versions of the libraries that compile and run the fast path."""
    versions: dict[str, str | None] = {}
    for name in FAST_PATH_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _figures(agreement: Agreement) -> dict:
    return {"rows": agreement.rows, "max_abs_diff": agreement.max_abs_diff,
            "label_disagreements": agreement.label_disagreements, "at_threshold": agreement.at_threshold}
