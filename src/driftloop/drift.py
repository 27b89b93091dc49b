"""Data drift between a reference table and a current one, computed by Evidently.

Each feature gets a statistical test or distance chosen for its kind (configurable), and a verdict
against its threshold; the dataset drifts when the share of drifted features reaches ``drift_share``.
The tests are Evidently's stat tests, called per column; the HTML report is Evidently's own Report, so
it renders in the Kubeflow dashboard as an HTML artifact.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from driftloop import drift_defaults
from driftloop.data import DatasetSpec
from driftloop.errors import ConfigError, DataValidationError
from driftloop.safe_html import neutralise_evidently_data

# Evidently's methods that return a p-value (drift when below the threshold); the rest are distances
# (drift when at or above it).
P_VALUE_METHODS = {
    "ks", "chisquare", "z", "anderson", "cramer_von_mises", "t_test", "mannw", "fisher_exact", "g_test",
    "epps_singleton", "empirical_mmd", "TVD",
}
DEFAULT_THRESHOLDS = {"wasserstein": 0.1, "jensenshannon": 0.1, "psi": 0.1, "hellinger": 0.1, "kl_div": 0.1}


@dataclass(frozen=True)
class DriftConfig:
    """Which test each kind of feature gets, and when a feature and the dataset count as drifted.

    Attributes:
        num_method: Evidently method for numeric features (default: normed Wasserstein distance).
        cat_method: Evidently method for categorical and boolean features (default: Jensen-Shannon).
        num_threshold, cat_threshold: Thresholds (None: 0.1 for distances, 0.05 for p-values).
        drift_share: Share of drifted features at which the dataset counts as drifted.
        max_rows: Rows sampled (seeded) from each side before testing; None tests all rows.
    """

    num_method: str = drift_defaults.NUM_METHOD
    cat_method: str = drift_defaults.CAT_METHOD
    num_threshold: float | None = None
    cat_threshold: float | None = None
    drift_share: float = drift_defaults.DRIFT_SHARE
    max_rows: int | None = 20_000

    def threshold(self, method: str, given: float | None) -> float:
        if given is not None:
            return given
        return 0.05 if method in P_VALUE_METHODS else DEFAULT_THRESHOLDS.get(method, 0.1)

    def __post_init__(self) -> None:
        if not 0 < self.drift_share <= 1:
            raise ConfigError(f"drift share must be within (0, 1], got {self.drift_share}")


@dataclass
class FeatureDrift:
    column: str
    kind: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    features: list[FeatureDrift]
    drift_share: float
    dataset_drift: bool
    n_reference: int
    n_current: int
    report_path: str | None = None
    config: dict = field(default_factory=dict)

    @property
    def drifted_features(self) -> list[str]:
        return [f.column for f in self.features if f.drifted]

    def to_dict(self) -> dict:
        return asdict(self) | {"drifted_features": self.drifted_features}


def check_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: DatasetSpec,
    config: DriftConfig = DriftConfig(),
    report_path: str | Path | None = None,
) -> DriftResult:
    """Compares every spec feature of ``current`` with ``reference``; writes the HTML report if asked.

    The verdicts come from Evidently's stat tests called per column on (seeded) samples of at most
    ``config.max_rows`` rows; the HTML report, when asked for, is Evidently's full Report on the same
    samples. Building that Report costs several times the tests themselves, so a caller on a hot path
    (the monitor) asks for the verdict first and renders the report afterwards.
    """
    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in spec.feature_names if c not in frame.columns]
        if missing:
            raise DataValidationError(missing[0], f"missing from the {name} data")
        if frame.empty:
            raise DataValidationError(None, f"the {name} data has no rows")
    ref, cur = prepare(reference, spec, config), prepare(current, spec, config)
    features = [compare_column(ref[f.name], cur[f.name], f.kind, config) for f in spec.features]
    for feature, drift in zip(spec.features, features, strict=True):
        drift.column = feature.name
    share = sum(f.drifted for f in features) / len(features)
    if report_path:
        render_report(ref, cur, spec, config, report_path)
    return DriftResult(features, round(share, 4), share >= config.drift_share, len(reference), len(current),
                       str(report_path) if report_path else None, asdict(config))


_EVIDENTLY_IMPORT = threading.Lock()


def load_evidently() -> None:
    """Imports Evidently, once, whichever thread asks first; the others wait until it is whole.

    Importing ``evidently`` costs seconds of CPU (its package imports its whole API), so a long-running
    caller (the monitor) does it at start-up rather than inside its first drift check. Its modules import
    each other in circles, so two threads importing it at once can meet a half-initialised module: every
    use of Evidently here comes through this lock first.
    """
    with _EVIDENTLY_IMPORT:
        import evidently  # noqa: F401
        from evidently.legacy.calculations.stattests import registry  # noqa: F401


def compare_column(reference: pd.Series, current: pd.Series, kind: str, config: DriftConfig) -> FeatureDrift:
    """One column's drift score and verdict by the configured Evidently stat test (missing values dropped)."""
    load_evidently()
    from evidently.legacy.calculations.stattests.registry import (
        StatTestInvalidFeatureTypeError,
        StatTestNotFoundError,
        get_stattest,
    )
    from evidently.legacy.core import ColumnType

    numeric = kind == "numeric"
    method = config.num_method if numeric else config.cat_method
    threshold = config.threshold(method, config.num_threshold if numeric else config.cat_threshold)
    column_type = ColumnType.Numerical if numeric else ColumnType.Categorical
    ref, cur = reference.dropna(), current.dropna()
    if ref.empty or cur.empty:  # nothing to compare: a column that is all missing is validation's concern
        return FeatureDrift(str(reference.name), kind, method, float("nan"), threshold, False)
    try:
        test = get_stattest(ref, cur, column_type, method)
    except (StatTestNotFoundError, StatTestInvalidFeatureTypeError) as exc:
        raise ConfigError(f"unknown drift method: {exc}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample and dtype warnings per column
        result = test(ref, cur, column_type, threshold)
    score = float(result.drift_score)
    return FeatureDrift(str(reference.name), kind, method, round(score, 6), threshold, bool(result.drifted))


def render_report(reference: pd.DataFrame, current: pd.DataFrame, spec: DatasetSpec, config: DriftConfig,
                  report_path: str | Path, extra_columns: dict[str, str] | None = None) -> Path:
    """Writes Evidently's data drift report (HTML) for already prepared tables.

    Args:
        extra_columns: Columns beyond the spec's features to include, name → "numeric" | "categorical"
            (the monitor adds the model's prediction).
    """
    load_evidently()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    extra = extra_columns or {}
    numeric = spec.names_of("numeric") + [c for c, k in extra.items() if k == "numeric"]
    discrete = (spec.names_of("categorical") + spec.names_of("boolean")
                + [c for c, k in extra.items() if k != "numeric"])
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=discrete)
    preset = DataDriftPreset(
        columns=spec.feature_names + list(extra), num_method=config.num_method, cat_method=config.cat_method,
        num_threshold=config.threshold(config.num_method, config.num_threshold),
        cat_threshold=config.threshold(config.cat_method, config.cat_threshold), drift_share=config.drift_share,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Evidently warns per column about small samples and dtypes
        snapshot = Report([preset]).run(
            current_data=Dataset.from_pandas(current, data_definition=definition),
            reference_data=Dataset.from_pandas(reference, data_definition=definition),
        )
    # Category values and column names come from requests and tables: the page's embedded data is made
    # inert before it is written (driftloop.safe_html), never Evidently's save_html as it is.
    document = neutralise_evidently_data(snapshot.get_html_str(as_iframe=False))
    path = Path(report_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(document, encoding="utf-8")
    tmp.replace(path)  # a report link never points at half a file
    return path


def prepare(frame: pd.DataFrame, spec: DatasetSpec, config: DriftConfig,
             extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """The spec's features, sampled to ``max_rows``; booleans as text so they count as categories."""
    out = frame[spec.feature_names + list(extra)]
    if config.max_rows is not None and len(out) > config.max_rows:
        out = out.sample(n=config.max_rows, random_state=0)
    out = out.copy()
    for name in spec.names_of("boolean") + spec.names_of("categorical"):
        out[name] = out[name].map(lambda v: None if pd.isna(v) else str(v))
    return out
