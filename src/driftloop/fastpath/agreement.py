"""Accepting a compiled graph only when it answers what the Pipeline answers.

The Pipeline is the model that was evaluated and gated; its compiled form is a different program (other
converters, float32 where the Pipeline's estimator uses it, onnxruntime's kernels). So the graph is run, through
the serving path's own :class:`~driftloop.fastpath.scorer.OnnxScorer`, on the rows the version is judged by —
the holdout and the reference sample — plus edge cases the data may lack (every feature missing in turn, unseen
categories), and accepted only if on every row

- classification (binary and multi-class): every class's probability differs by at most :data:`TOLERANCE`, and
  the labels are identical, except where the Pipeline's two likeliest classes lie within twice the tolerance of
  each other (a tie: float rounding alone may flip the label there, and either answer is the model's; for a
  binary model, a probability within the tolerance of the 0.5 threshold);
- regression: the predictions differ by at most :data:`RELATIVE_TOLERANCE` of their size — of the larger of
  the prediction and the mean size of the Pipeline's predictions on that set of rows, so a prediction near zero
  is not judged by a rounding of the others' size.

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
# The same reasoning for a regression's numbers, relative to their size: float32 leaf values round at 6e-8 of
# their size (forests, XGBoost), double at 1e-16 (linear models, histogram gradient boosting); a conversion
# fault moves a prediction by a coefficient's or a leaf's share of it.
RELATIVE_TOLERANCE = 1e-5
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
    max_abs_diff: float  # classification: max |Δp| over every class; regression: max |Δ prediction|
    label_disagreements: int  # labels that differ away from a tie (any one refuses the graph); regression: 0
    at_threshold: int  # labels that differ at a tie of the Pipeline's two likeliest classes (allowed)
    max_rel_diff: float | None = None  # regression: max |Δ prediction| relative to its size (what is judged)

    @property
    def regression(self) -> bool:
        return self.max_rel_diff is not None

    @property
    def tolerance(self) -> float:
        return RELATIVE_TOLERANCE if self.regression else TOLERANCE

    @property
    def agrees(self) -> bool:
        if self.regression:
            return self.rows > 0 and self.max_rel_diff <= self.tolerance
        return self.rows > 0 and self.max_abs_diff <= self.tolerance and self.label_disagreements == 0

    def in_words(self) -> str:
        """The figures as the record's reason gives them (ASCII: the reason is shown inside JSON, which
        escapes the rest)."""
        if self.regression:
            return (f"max relative |dy| {self.max_rel_diff:.2g} over {self.rows} rows (tolerance "
                    f"{self.tolerance:g}), max |dy| {self.max_abs_diff:.2g}")
        return (f"max |dp| {self.max_abs_diff:.2g} over {self.rows} rows (tolerance {self.tolerance:g}), "
                f"{self.label_disagreements} label(s) differ away from a tie")

    @classmethod
    def total(cls, parts: list[Agreement]) -> Agreement:
        """The figures over every set of rows."""
        relative = [p.max_rel_diff for p in parts if p.max_rel_diff is not None]
        return cls(sum(p.rows for p in parts), max(p.max_abs_diff for p in parts),
                   sum(p.label_disagreements for p in parts), sum(p.at_threshold for p in parts),
                   max(relative) if relative else None)


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
    max_rel_diff: float | None = None  # regression only: what its tolerance judges
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


def tolerance_for(spec: DatasetSpec) -> float:
    """The tolerance a graph of ``spec``'s task is judged by."""
    return TOLERANCE if spec.is_classification else RELATIVE_TOLERANCE


def compare(pipeline, scorer, frame: pd.DataFrame, spec: DatasetSpec) -> Agreement:
    """Scores ``frame``'s rows with both and compares them (see the module's rule)."""
    rows = frame[spec.feature_names]
    if not spec.is_classification:
        return _compare_numbers(np.asarray(pipeline.predict(rows), dtype=np.float64), scorer.predict(rows))
    expected = np.asarray(pipeline.predict_proba(rows), dtype=np.float64)
    expected_labels = np.asarray(pipeline.predict(rows))
    answered = np.asarray(scorer.predict_proba(rows), dtype=np.float64)
    labels = scorer.predict(rows)
    if answered.shape != expected.shape:
        return Agreement(len(rows), 1.0, len(rows), 0)  # another number of classes: nothing agrees
    diff = np.abs(answered - expected).max(axis=1) if len(rows) else np.zeros(0)
    diff[np.isnan(diff)] = 1.0  # a NaN probability is as far from the Pipeline's as a probability can be
    differ = (labels != expected_labels) | (diff == 1.0)
    likeliest = np.sort(expected, axis=1)
    near = likeliest[:, -1] - likeliest[:, -2] <= 2 * TOLERANCE  # a tie of the two likeliest classes
    return Agreement(len(rows), float(diff.max()) if len(diff) else 0.0, int((differ & ~near).sum()),
                     int((differ & near).sum()))


def _compare_numbers(expected: np.ndarray, answered: np.ndarray) -> Agreement:
    """A regression's predictions compared: absolute and relative differences (NaN as infinitely far)."""
    if answered.shape != expected.shape:
        return Agreement(len(expected), np.inf, 0, 0, np.inf)
    diff = np.abs(answered - expected)
    diff[np.isnan(diff)] = np.inf
    size = np.maximum(np.abs(expected), np.abs(expected).mean() if len(expected) else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(diff == 0, 0.0, diff / size)
    return Agreement(len(expected), float(diff.max()) if len(diff) else 0.0, 0, 0,
                     float(relative.max()) if len(relative) else 0.0)


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
        figures = _figures(agreement) if agreement else {"tolerance": tolerance_for(spec)}
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
    total = Agreement.total(results)
    words = total.in_words()
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
            "label_disagreements": agreement.label_disagreements, "at_threshold": agreement.at_threshold,
            "max_rel_diff": agreement.max_rel_diff, "tolerance": agreement.tolerance}
