"""Data validation: schema, target, null rates, and ranges and categories learned from a reference.

:func:`validate_table` runs every check, keeps each result for the report, and raises
:class:`DataValidationError` naming the first failing column and its problem and carrying the report, so a
failed validation still gets its page. What passes comes back coerced to the spec's
types, ready for training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd

from driftloop.data import DatasetSpec, coerce_to_spec
from driftloop.errors import DataValidationError
from driftloop.profile import ReferenceProfile
from driftloop.tasks import BINARY, MAX_CLASSES, MIN_CLASS_ROWS, REGRESSION, TASK_LABELS


@dataclass(frozen=True)
class ValidationPolicy:
    """Thresholds for the checks; the defaults suit a retrain on fresh production data.

    Attributes:
        min_rows: Fewest rows worth training on.
        max_target_null_share: Rows without a label are dropped up to this share; above it, fail.
        max_null_rate_increase: Allowed rise of a feature's null rate over the reference.
        range_margin: Reference [min, max] is widened by this fraction of its width on each side.
        max_out_of_range_share: Share of a numeric column allowed outside the widened range.
        max_unseen_category_share: Share of a categorical column allowed to hold unseen values.
        max_positive_share_change: How far (in share points, 0.1 = 10 points) the positive class's share may
            move from the reference's before it is a warning: a label that changed meaning or a sampling bug
            looks like this, and so does a real shift a drift retrain is meant to learn, hence not a failure.
    """

    min_rows: int = 20
    max_target_null_share: float = 0.1
    max_null_rate_increase: float = 0.2
    range_margin: float = 0.5
    max_out_of_range_share: float = 0.01
    max_unseen_category_share: float = 0.05
    max_positive_share_change: float = 0.1


@dataclass
class Check:
    """One check's outcome, for the report."""

    column: str
    check: str
    status: str  # "pass" | "warn" | "fail"
    detail: str


@dataclass
class ValidationReport:
    """All checks run on a table; ``failures`` lists the failing ones."""

    n_rows: int
    n_rows_used: int
    checks: list[Check] = field(default_factory=list)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.status == "warn"]

    def to_dict(self) -> dict:
        return {"n_rows": self.n_rows, "n_rows_used": self.n_rows_used, "checks": [asdict(c) for c in self.checks]}


def validate_table(
    frame: pd.DataFrame,
    spec: DatasetSpec,
    reference: ReferenceProfile | None = None,
    policy: ValidationPolicy = ValidationPolicy(),
) -> tuple[pd.DataFrame, ValidationReport, DatasetSpec]:
    """Validates ``frame`` against ``spec`` and, when given, a reference profile.

    Returns:
        The coerced table with unlabeled rows dropped, the report, and the spec with its target
        classes filled in.

    Raises:
        DataValidationError: the first failing check, naming its column and problem, with the report so far
            (``report``) and the table as far as validation got (``frame``).
    """
    report = ValidationReport(n_rows=len(frame), n_rows_used=len(frame))
    try:
        _check_schema(frame, spec, report)
        _raise_first_failure(report)
        try:
            frame = coerce_to_spec(frame, spec)
        except DataValidationError as exc:  # text in a numeric column, say: a schema check of its own
            report.checks.append(Check(exc.column or "", "schema", "fail", exc.problem))
            raise
        frame, spec = _check_target(frame, spec, policy, report)
        report.n_rows_used = len(frame)
        _check_nulls(frame, spec, reference, policy, report)
        if reference is not None:
            _check_against_reference(frame, spec, reference, policy, report)
            _check_target_balance(frame, spec, reference, policy, report)
        _raise_first_failure(report)
    except DataValidationError as exc:
        raise DataValidationError(exc.column, exc.problem, report, frame) from None
    return frame, report, spec


def recent_rows(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The labelled rows of a retrain's recent slice that the new version can be judged on: the spec's features
    and types, a label (classification: one of the classes the version learned; regression: a number). No range,
    balance or class-size checks: the slice is a few hundred of the newest rows, and a class that is new or
    still rare in it waits for more rows rather than failing the retrain.

    Raises:
        DataValidationError: a feature is missing or cannot be read as its type.
    """
    if spec.target not in frame.columns:
        raise DataValidationError(spec.target, "target column is missing")
    rows = coerce_to_spec(frame, spec)
    target = rows[spec.target]
    if spec.task == REGRESSION:
        rows = rows.assign(**{spec.target: _target_numbers(target)})
        keep = rows[spec.target].notna()
    else:
        keep = target.isin(spec.target_classes)
    return rows[keep].reset_index(drop=True)


def _target_numbers(target: pd.Series) -> pd.Series:
    """A regression target as numbers; NaN where a value is not one (text, and booleans, which are labels)."""
    return target * float("nan") if pd.api.types.is_bool_dtype(target) else pd.to_numeric(target, errors="coerce")


def _raise_first_failure(report: ValidationReport) -> None:
    if report.failures:
        first = report.failures[0]
        raise DataValidationError(first.column or None, first.detail)


def _check_schema(frame: pd.DataFrame, spec: DatasetSpec, report: ValidationReport) -> None:
    if spec.target not in frame.columns:
        report.checks.append(Check(spec.target, "schema", "fail", "target column is missing"))
    for name in spec.feature_names:
        status = "pass" if name in frame.columns else "fail"
        report.checks.append(Check(name, "schema", status, "present" if status == "pass" else "column is missing"))
    extra = [c for c in frame.columns if c not in {spec.target, spec.id_column, spec.timestamp_column, *spec.feature_names}]
    if extra:
        report.checks.append(Check("", "schema", "warn", f"columns not used by the model: {', '.join(map(str, extra))}"))


def _check_target(
    frame: pd.DataFrame, spec: DatasetSpec, policy: ValidationPolicy, report: ValidationReport
) -> tuple[pd.DataFrame, DatasetSpec]:
    target = frame[spec.target]
    null_share = float(target.isna().mean())
    if null_share == 1.0:
        report.checks.append(Check(spec.target, "target", "fail", "target column is entirely null"))
        _raise_first_failure(report)
    if null_share > policy.max_target_null_share:
        detail = f"{null_share:.1%} of rows have no label (limit {policy.max_target_null_share:.0%})"
        report.checks.append(Check(spec.target, "target", "fail", detail))
        _raise_first_failure(report)
    if null_share > 0:
        report.checks.append(Check(spec.target, "target", "warn", f"dropped {int(target.isna().sum())} unlabeled rows"))
        frame = frame[target.notna()].reset_index(drop=True)
    if len(frame) < policy.min_rows:  # first: too few rows is the problem, whatever else they show
        report.checks.append(Check("", "rows", "fail", f"only {len(frame)} labeled rows; need at least {policy.min_rows}"))
    if spec.task == REGRESSION:
        frame = _check_regression_target(frame, spec, report)
        classes = ()
    else:
        classes = _check_classes(frame, spec, report)
    _raise_first_failure(report)
    return frame, spec.with_target_classes(classes)


def _check_classes(frame: pd.DataFrame, spec: DatasetSpec, report: ValidationReport) -> tuple:
    """The table's class labels, sorted (binary: negative first), after the checks a classification target needs.

    A binary spec's classes must be the table's. A multi-class retrain may see a class appear or vanish (a new
    ticket queue): that is a warning, and the table's classes are the ones the new version learns.
    """
    classes = tuple(sorted(frame[spec.target].unique().tolist(), key=lambda v: (str(type(v)), v)))
    kind = TASK_LABELS[spec.task]
    if len(classes) < 2:
        detail = f"target has a single class ({classes[0]!r}); {kind} needs at least two"
        report.checks.append(Check(spec.target, "target", "fail", detail))
    elif spec.task == BINARY and len(classes) > 2:
        detail = (f"target has {len(classes)} classes but the spec's task is binary; declare the task multiclass "
                  "(--task multiclass)")
        report.checks.append(Check(spec.target, "target", "fail", detail))
    elif len(classes) > MAX_CLASSES:
        detail = (f"target has {len(classes)} distinct values, more than {MAX_CLASSES} classes: an identifier or an "
                  "amount? declare the task regression (--task regression) if it is an amount")
        report.checks.append(Check(spec.target, "target", "fail", detail))
    elif spec.target_classes and set(spec.target_classes) != set(classes):
        detail = f"target classes {list(classes)} differ from the spec's {list(spec.target_classes)}"
        report.checks.append(Check(spec.target, "target", "fail" if spec.task == BINARY else "warn", detail))
    elif spec.target_classes:
        classes = tuple(spec.target_classes)  # the declared order (binary: which class is the positive one)
    counts = frame[spec.target].value_counts()
    rare = counts[counts < MIN_CLASS_ROWS]
    if len(rare) and not report.failures:
        examples = ", ".join(f"{label!r} ({n})" for label, n in rare.items())
        report.checks.append(Check(spec.target, "target", "fail",
                                   f"{len(rare)} class(es) with fewer than {MIN_CLASS_ROWS} rows: {examples}; "
                                   "a classifier cannot learn and be judged on them — add rows, merge or drop them"))
    if report.failures:
        return classes
    if spec.task == BINARY:
        share = float((frame[spec.target] == classes[-1]).mean())
        detail = f"classes {list(classes)}, positive share {share:.1%}"
    else:
        shares = frame[spec.target].value_counts(normalize=True)
        detail = (f"{len(classes)} classes; rarest {shares.index[-1]!r} {shares.iloc[-1]:.1%}, "
                  f"commonest {shares.index[0]!r} {shares.iloc[0]:.1%}")
    report.checks.append(Check(spec.target, "target", "pass", detail))
    return classes


def _check_regression_target(frame: pd.DataFrame, spec: DatasetSpec, report: ValidationReport) -> pd.DataFrame:
    """A regression target as numbers: text in it, or a single value, is a failure naming the first bad row."""
    target = frame[spec.target]
    numbers = _target_numbers(target)
    bad = numbers.isna()
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        detail = (f"text in a regression target ({int(bad.sum())} values, e.g. {target.iloc[row]!r} in row {row + 1}); "
                  "a regression predicts numbers — declare the task binary or multiclass if these are labels")
        report.checks.append(Check(spec.target, "target", "fail", detail))
        return frame
    if numbers.nunique() < 2:
        report.checks.append(Check(spec.target, "target", "fail",
                                   f"target holds a single value ({numbers.iloc[0]:g}); nothing to learn"))
        return frame
    report.checks.append(Check(spec.target, "target", "pass",
                               f"numeric, mean {numbers.mean():.4g}, sd {numbers.std():.4g}, "
                               f"range {numbers.min():.4g}..{numbers.max():.4g}"))
    return frame.assign(**{spec.target: numbers.astype(float)})


def _check_nulls(
    frame: pd.DataFrame,
    spec: DatasetSpec,
    reference: ReferenceProfile | None,
    policy: ValidationPolicy,
    report: ValidationReport,
) -> None:
    for feature in spec.features:
        column = frame[feature.name]
        rate = float(column.isna().mean())
        if rate == 1.0:
            report.checks.append(Check(feature.name, "nulls", "fail", "column is entirely null"))
            continue
        ref = reference.features.get(feature.name) if reference else None
        if ref is not None and rate > ref.null_rate + policy.max_null_rate_increase:
            detail = f"null rate {rate:.1%} is above the reference {ref.null_rate:.1%} by more than {policy.max_null_rate_increase:.0%}"
            report.checks.append(Check(feature.name, "nulls", "fail", detail))
            continue
        if column.nunique(dropna=True) == 1:
            report.checks.append(Check(feature.name, "constant", "warn", f"constant value {column.dropna().iloc[0]!r}"))
        report.checks.append(Check(feature.name, "nulls", "pass", f"null rate {rate:.1%}"))


def _check_against_reference(
    frame: pd.DataFrame,
    spec: DatasetSpec,
    reference: ReferenceProfile,
    policy: ValidationPolicy,
    report: ValidationReport,
) -> None:
    for feature in spec.features:
        ref = reference.features.get(feature.name)
        if ref is None:
            report.checks.append(Check(feature.name, "reference", "warn", "not in the reference profile"))
            continue
        values = frame[feature.name].dropna()
        if values.empty:
            continue
        if feature.kind == "numeric" and ref.minimum is not None:
            margin = policy.range_margin * max(ref.maximum - ref.minimum, 1e-9)
            low, high = ref.minimum - margin, ref.maximum + margin
            outside = float(((values < low) | (values > high)).mean())
            status = "fail" if outside > policy.max_out_of_range_share else "pass"
            detail = f"{outside:.1%} of values outside the reference range [{ref.minimum:g}, {ref.maximum:g}] (±{policy.range_margin:.0%})"
            report.checks.append(Check(feature.name, "range", status, detail))
        elif feature.kind == "categorical" and ref.categories:
            known = set(ref.categories)
            unseen_mask = ~values.astype(str).isin(known)
            unseen = float(unseen_mask.mean())
            status = "fail" if unseen > policy.max_unseen_category_share else "pass"
            examples = ", ".join(repr(v) for v in values[unseen_mask].astype(str).unique()[:3])
            detail = f"{unseen:.1%} of values are categories unseen in the reference" + (f" ({examples})" if examples else "")
            report.checks.append(Check(feature.name, "categories", status, detail))


def _check_target_balance(frame: pd.DataFrame, spec: DatasetSpec, reference: ReferenceProfile,
                          policy: ValidationPolicy, report: ValidationReport) -> None:
    """The positive class's share against the reference's: a large move is a warning a person should see."""
    if reference.positive_rate is None or spec.task != BINARY or not spec.target_classes:
        return
    share = float((frame[spec.target] == spec.target_classes[-1]).mean())
    change = share - reference.positive_rate
    beyond = abs(change) > policy.max_positive_share_change
    detail = (f"positive share {share:.1%} against {reference.positive_rate:.1%} in the reference "
              f"({change * 100:+.1f} points; more than {policy.max_positive_share_change * 100:g} is a warning)")
    report.checks.append(Check(spec.target, "balance", "warn" if beyond else "pass", detail))
