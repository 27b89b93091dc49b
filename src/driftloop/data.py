"""Tabular data: loading CSV/Parquet from a path or ``s3://`` URI, and the dataset spec.

The :class:`DatasetSpec` says which column is the target and how every feature is typed
(numeric, categorical, boolean). Users declare it or let :func:`infer_spec` propose one; either way
it is shown, stored with the model, and used to coerce every later table the same way.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import PurePosixPath
from typing import Literal

import pandas as pd

from driftloop import storage
from driftloop.errors import DataError, DataValidationError
from driftloop.storage import sha256_bytes
from driftloop.tasks import BINARY, INFER, check_task, infer_task, is_classification

FeatureKind = Literal["numeric", "categorical", "boolean"]
FEATURE_KINDS: tuple[str, ...] = ("numeric", "categorical", "boolean")

# What a missing category becomes before encoding: the trained Pipelines impute it, the fast path's input
# form sends it.
MISSING_CATEGORY = "__missing__"

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


@dataclass(frozen=True)
class FeatureSpec:
    """One input column and how it is typed."""

    name: str
    kind: FeatureKind


@dataclass(frozen=True)
class DatasetSpec:
    """The shape of a training table.

    Attributes:
        target: Name of the label column: class labels, or the amount a regression predicts.
        features: The model's input columns, in order.
        id_column: Optional row identifier (joins late labels; never a feature).
        timestamp_column: Optional event time (orders replays; never a feature).
        target_classes: The class labels, sorted (binary: negative first); the model predicts their index. Empty for
            regression.
        ignored: Columns left out of the features, with the reason.
        notes: What inference was unsure about, per column (shown before a run; never changes the spec).
        task: binary, multiclass or regression (:mod:`driftloop.tasks`); specs from before tasks are binary.
    """

    target: str
    features: tuple[FeatureSpec, ...]
    id_column: str | None = None
    timestamp_column: str | None = None
    target_classes: tuple = ()
    ignored: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    task: str = BINARY

    @property
    def is_classification(self) -> bool:
        return is_classification(self.task)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def names_of(self, kind: str) -> list[str]:
        """Feature names of one kind, in spec order."""
        return [f.name for f in self.features if f.kind == kind]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["features"] = [asdict(f) for f in self.features]
        data["target_classes"] = [_jsonable(v) for v in self.target_classes]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> DatasetSpec:
        try:
            features = tuple(FeatureSpec(name=f["name"], kind=f["kind"]) for f in data["features"])
            for f in features:
                if f.kind not in FEATURE_KINDS:
                    raise DataError(f"feature '{f.name}' has unknown kind '{f.kind}'; use one of {FEATURE_KINDS}")
            return cls(
                target=data["target"],
                features=features,
                id_column=data.get("id_column"),
                timestamp_column=data.get("timestamp_column"),
                target_classes=tuple(data.get("target_classes") or ()),
                ignored=dict(data.get("ignored") or {}),
                notes=dict(data.get("notes") or {}),
                task=check_task(data.get("task") or BINARY),
            )
        except (KeyError, TypeError) as exc:
            raise DataError(f"invalid dataset spec: missing or malformed field {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> DatasetSpec:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid dataset spec JSON: {exc.msg} at line {exc.lineno}") from None

    def with_target_classes(self, classes: Iterable) -> DatasetSpec:
        return replace(self, target_classes=tuple(classes))

    def with_task(self, task: str) -> DatasetSpec:
        """This spec for ``task`` (regression has no classes; a classification's are filled in by validation)."""
        return replace(self, task=check_task(task), target_classes=() if task != self.task else self.target_classes)


def _jsonable(value):
    """Turns numpy scalars into plain Python values for JSON."""
    return value.item() if hasattr(value, "item") else value


CSV, PARQUET = "CSV", "Parquet"
TABLE_FORMATS = {".csv": CSV, ".parquet": PARQUET, ".pq": PARQUET}  # file suffix -> table format


def table_format(uri: str) -> str:
    """:data:`CSV` or :data:`PARQUET`, by the file's suffix.

    Raises:
        DataError: any other suffix.
    """
    suffix = PurePosixPath(uri.split("?")[0]).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise DataError(f"unsupported file type '{suffix or '(none)'}' for {uri}: use .csv or .parquet")
    return TABLE_FORMATS[suffix]


def load_table(uri: str, s3: storage.S3Settings | None = None) -> tuple[pd.DataFrame, str]:
    """Loads a CSV or Parquet table from a local path or ``s3://`` URI.

    Returns:
        The table and the sha256 of the file's bytes (recorded in lineage).

    Raises:
        DataError: missing, unreadable, empty or unparsable file, or an unsupported extension.
    """
    kind = table_format(uri)
    raw = storage.read_bytes(uri, s3)
    if not raw:
        raise DataError(f"file is empty: {uri}")
    try:
        if kind == CSV:
            frame = pd.read_csv(io.BytesIO(raw))
        else:
            frame = _read_parquet(raw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot parse {uri} as {kind}: {first_line}") from None
    if frame.empty:
        raise DataError(f"no rows in {uri}")
    return frame, sha256_bytes(raw)


def _read_parquet(raw: bytes) -> pd.DataFrame:
    """A Parquet table with the column types its writer declared: pandas records ``categorical`` columns in the
    file's metadata, but Arrow gives categorical *integer* codes back as plain integers."""
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(raw))
    frame = table.to_pandas()
    for column in (table.schema.pandas_metadata or {}).get("columns", []):
        name = column.get("name")
        if column.get("pandas_type") == "categorical" and name in frame.columns \
                and not isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype("category")
    return frame


def infer_spec(
    frame: pd.DataFrame,
    target: str,
    id_column: str | None = None,
    timestamp_column: str | None = None,
    categorical: Iterable[str] = (),
    exclude: Iterable[str] = (),
    task: str = INFER,
) -> DatasetSpec:
    """Proposes a spec from a table's columns, trusting the file where it says something and saying where it
    guessed.

    A column the file declares categorical (pandas ``category``, an Arrow dictionary) is categorical. Booleans are
    bool columns or text holding only yes/no-like values; other numbers are numeric unless named in
    ``categorical`` (a few distinct integers are noted as likely codes); other text is categorical. Identifiers —
    unique integers that count up or are named like an id, high-cardinality text — are left out with the reason,
    and so are dates and times; when no timestamp column is given and exactly one date/time column exists, it
    becomes the timestamp column. The task comes from the target (:func:`driftloop.tasks.infer_task`) unless
    ``task`` names it.
    """
    if target not in frame.columns:
        raise DataValidationError(target, f"target column not found; columns are {list(frame.columns)}")
    for name, role in ((id_column, "id"), (timestamp_column, "timestamp")):
        if name and name not in frame.columns:
            raise DataValidationError(name, f"{role} column not found")
    skip = {target, id_column, timestamp_column, SOURCE_COLUMN, *exclude}
    features, ignored, notes = _infer_columns(frame, skip, categorical)
    times = [name for name, reason in ignored.items() if reason.startswith(_TIMESTAMP_REASON)]
    if not timestamp_column and len(times) == 1:
        timestamp_column = times[0]
        del ignored[timestamp_column]
        notes[timestamp_column] = "ISO date/time: taken as the timestamp column (orders replays; never a feature)"
    if task == INFER:
        task, note = infer_task(frame[target])
        if note:
            notes[target] = note
    else:
        check_task(task)
    return DatasetSpec(target, tuple(features), id_column, timestamp_column, (), ignored, notes, task)


def infer_features(
    frame: pd.DataFrame, skip: Iterable = (), categorical: Iterable[str] = ()
) -> tuple[list[FeatureSpec], dict[str, str]]:
    """Typed features of every column not in ``skip``, and the columns left out with the reason."""
    features, ignored, _ = _infer_columns(frame, skip, categorical)
    return features, ignored


_TIMESTAMP_REASON = "a date/time"
# Where a drift retrain's row came from: the serving version's training data, or labelled live traffic.
SOURCE_COLUMN, REFERENCE, LIVE = "driftloop_source", "reference", "live"
_ID_NAME = re.compile(r"(^|[_\-\s])(id|key|uuid|guid|index)$", re.IGNORECASE)
FEW_CODES = 12  # integer columns with at most this many distinct values are noted as likely codes


def _infer_columns(frame: pd.DataFrame, skip: Iterable, categorical: Iterable[str]
                   ) -> tuple[list[FeatureSpec], dict[str, str], dict[str, str]]:
    forced_categorical, skip = set(categorical), set(skip)
    features: list[FeatureSpec] = []
    ignored: dict[str, str] = {}
    notes: dict[str, str] = {}
    for name in frame.columns:
        if name in skip:
            continue
        column = frame[name]
        left_out = None if name in forced_categorical else _left_out_reason(str(name), column)
        if left_out:
            ignored[str(name)] = left_out
            continue
        kind = _infer_kind(column, force_categorical=name in forced_categorical)
        features.append(FeatureSpec(str(name), kind))
        note = _note(column, kind)
        if note:
            notes[str(name)] = note
    if not features:
        raise DataValidationError(None, "no feature columns besides the target")
    return features, ignored, notes


def _left_out_reason(name: str, column: pd.Series) -> str | None:
    """Why a column is not a feature (an identifier, a date/time), or None."""
    values = column.dropna()
    if values.empty or isinstance(column.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(column):
        return None
    if pd.api.types.is_datetime64_any_dtype(column) or _looks_like_datetimes(values):
        return f"{_TIMESTAMP_REASON}; declare it as the timestamp column to order replays by it"
    if pd.api.types.is_integer_dtype(column) or (pd.api.types.is_float_dtype(column)
                                                 and bool((values == values.round()).all())):
        unique = values.nunique() == len(values) and len(values) >= 50
        counts_up = unique and values.max() - values.min() + 1 == len(values)
        if unique and (counts_up or _ID_NAME.search(name)):
            return "looks like an identifier (unique integers" + (" counting up" if counts_up else "") + \
                "); declare it if it is a feature"
        return None
    if pd.api.types.is_numeric_dtype(column):
        return None
    text = values.astype(str)
    if text.nunique() > 50 and text.nunique() / len(text) > 0.5 and \
            pd.to_numeric(text, errors="coerce").notna().mean() <= 0.95:
        return "looks like an identifier (mostly unique text); declare it if it is a feature"
    return None


def _looks_like_datetimes(values: pd.Series) -> bool:
    """Text that is almost all ISO 8601 dates or times (``2026-01-31``, ``2026-01-31T08:00:00Z``)."""
    if pd.api.types.is_numeric_dtype(values) or isinstance(values.dtype, pd.CategoricalDtype):
        return False
    sample = values.astype(str).head(500)
    if not sample.str.match(r"^\d{4}-\d{2}-\d{2}").mean() > 0.95:
        return False
    parsed = pd.to_datetime(sample, format="ISO8601", errors="coerce", utc=True)
    return bool(parsed.notna().mean() > 0.95)


def _note(column: pd.Series, kind: str) -> str | None:
    if kind == "numeric" and pd.api.types.is_integer_dtype(column):
        distinct = column.nunique()
        if 2 < distinct <= FEW_CODES:
            return (f"{distinct} distinct integers: if these are codes rather than amounts, declare the column "
                    "categorical (--categorical)")
    return None


def _infer_kind(column: pd.Series, force_categorical: bool) -> FeatureKind:
    if force_categorical or isinstance(column.dtype, pd.CategoricalDtype):
        return "categorical"  # the file says so (a pandas category, an Arrow dictionary)
    if pd.api.types.is_bool_dtype(column):
        return "boolean"
    if pd.api.types.is_numeric_dtype(column):
        return "numeric"
    values = column.dropna()
    if values.empty:
        return "categorical"  # all-null: validation will name it
    lowered = set(values.astype(str).str.strip().str.lower().unique())
    if lowered <= (_TRUE | _FALSE) and len(lowered) <= 2 and not lowered <= {"0", "1"}:
        return "boolean"
    if pd.to_numeric(values, errors="coerce").notna().mean() > 0.95:
        return "numeric"  # mostly numbers: the stray text is a data error validation reports
    return "categorical"


def coerce_to_spec(frame: pd.DataFrame, spec: DatasetSpec, first_row: int = 1) -> pd.DataFrame:
    """Returns a copy whose feature columns have the spec's types.

    ``first_row`` is the number errors give the frame's first row (a chunk of a larger table starts later).

    Numeric → float, categorical → str (nulls kept), boolean → object holding True/False (nulls kept).

    Raises:
        DataValidationError: a value cannot be converted (text in a numeric column, a boolean column
            with values that are not yes/no-like).
    """
    out = frame.copy()
    for feature in spec.features:
        if feature.name not in out.columns:
            raise DataValidationError(feature.name, "column is missing")
        column = out[feature.name]
        if feature.kind == "numeric":
            out[feature.name] = _to_numeric(column, feature.name, first_row)
        elif feature.kind == "categorical":
            values = column.astype(object)  # text, missing values kept as they are (vectorised: batch scoring)
            out[feature.name] = values.where(values.isna(), values.astype(str))
        else:
            out[feature.name] = _to_boolean(column, feature.name)
    return out


def _to_numeric(column: pd.Series, name: str, first_row: int = 1) -> pd.Series:
    if pd.api.types.is_bool_dtype(column):
        return column.astype(float)
    if pd.api.types.is_numeric_dtype(column):
        return column.astype(float)
    converted = pd.to_numeric(column, errors="coerce")
    bad = column.notna() & converted.isna()
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise DataValidationError(
            name, f"text in a numeric column ({int(bad.sum())} values, e.g. {column.iloc[row]!r} in row {row + first_row})"
        )
    return converted.astype(float)


def _to_boolean(column: pd.Series, name: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(column):
        return column.astype(object)

    def convert(value):
        if pd.isna(value):
            return None
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text.endswith(".0"):
            text = text[:-2]
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise DataValidationError(name, f"value {value!r} in a boolean column (expected true/false, yes/no, 1/0)")

    return column.map(convert).astype(object)
