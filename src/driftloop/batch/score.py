"""Scoring a table with a registered version, chunk by chunk, exactly as the gateway scores a request.

The version is loaded by :meth:`ServedVersion.load` — the gateway's own loader — so a batch is refused for
the same reasons a server refuses the version: a failed or untrusted signature, a file whose sha256 differs,
a model trained with another scikit-learn/XGBoost minor version. The table is checked against the version's
spec before any row is scored (every missing feature column named in one line), typed by the spec's rules,
and scored by :meth:`ServedVersion.score` — the answers the gateway gives: a classifier's labels and each class's
probability, a regression's numbers. A category never seen in training scores as it does in serving: the
Pipeline's encoder treats it as unknown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from driftloop import storage
from driftloop.batch import DEFAULT_CHUNK_ROWS
from driftloop.batch.tables import TableReader, TableWriter, local_copy
from driftloop.data import DatasetSpec, coerce_to_spec
from driftloop.errors import ConfigError, DataError, DataValidationError, ModelNotFoundError
from driftloop.registry import PRODUCTION, ModelRegistry, open_registry
from driftloop.serving.versions import ServedVersion

ROW_COLUMN = "row"  # the row id when the table has no id column: the row's position in the input, from 0
PREDICTION_COLUMN = "prediction"
PROBABILITY_PREFIX = "probability_"
VERSION_COLUMN = "model_version"

Progress = Callable[[int, int], None]  # (rows scored so far, rows in the table)


@dataclass(frozen=True)
class ScoreSummary:
    """What one batch scoring did."""

    model: str
    version: int
    rows: int
    seconds: float  # reading, scoring and writing the table (the version's loading and checks not counted)
    output: str
    id_column: str  # the spec's id column, or ROW_COLUMN when the table has none
    load_seconds: float = 0.0  # fetching, verifying and unpickling the version

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict:
        return {**asdict(self), "rows_per_second": round(self.rows_per_second, 1)}


def resolve_version(registry: ModelRegistry, model: str, version: int | None = None, alias: str | None = None) -> int:
    """The version number to score with: ``version`` when given, else the one ``alias`` (default production)
    points at.

    Raises:
        ConfigError: both were given.
        ModelNotFoundError: no such model, version or alias.
    """
    if version is not None and alias:
        raise ConfigError("give a version or an alias, not both")
    if version is not None:
        return registry.get_version(model, version).version
    alias = alias or PRODUCTION
    registry.require_model(model)
    aliases = registry.aliases(model)
    if alias not in aliases:
        known = ", ".join(f"{a} → v{n}" for a, n in sorted(aliases.items())) or "none"
        raise ModelNotFoundError(f"model '{model}' has no '{alias}' alias (aliases: {known}); pass a version")
    return aliases[alias]


def feature_columns_present(columns: list[str], spec: DatasetSpec, model: str, version: int, uri: str) -> None:
    """Every feature the spec names is a column of the table.

    Raises:
        DataError: the missing ones, all named in one line.
    """
    present = set(columns)
    missing = [name for name in spec.feature_names if name not in present]
    if missing:
        raise DataError(f"{uri} lacks {len(missing)} feature column(s) {model} v{version} needs: {', '.join(missing)}")


def score_table(data_uri: str, output_uri: str, registry: ModelRegistry | str, model: str, *,
                version: int | None = None, alias: str | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                with_features: bool = False, output_format: str | None = None,
                s3: storage.S3Settings | None = None, on_progress: Progress | None = None) -> ScoreSummary:
    """Scores the table at ``data_uri`` with a registered version and writes the scored table to ``output_uri``.

    The output holds, per input row and in input order: the row id (the spec's id column, else ``row``), the
    prediction (``prediction``: a classifier's label, a regression's number), a classifier's probability of each
    class (``probability_<class>``), the version (``model_version``) and, with ``with_features``, the typed feature columns (what the drift monitor needs).
    At most ``chunk_rows`` rows are in memory at once; the output appears whole, or not at all.

    Args:
        version, alias: Which version (default: the one ``production`` points at).
        output_format: ``CSV`` or ``Parquet`` (default: by the output's suffix).
        on_progress: Called after each chunk with (rows scored, rows in the table).

    Raises:
        ConfigError, ModelNotFoundError: no such version or alias.
        IntegrityError, IncompatibleModelError: the version fails the checks serving makes.
        DataError: the table cannot be read, lacks feature columns, or holds values its spec refuses.
    """
    registry = open_registry(registry) if isinstance(registry, str) else registry
    started = time.perf_counter()
    served = ServedVersion.load(registry, model, resolve_version(registry, model, version, alias))
    loaded = time.perf_counter()
    spec = served.spec
    writer = TableWriter(output_uri, output_format, s3)  # a bad destination fails before the table is fetched
    try:
        with local_copy(data_uri, s3) as path:
            reader = TableReader.open(path, data_uri)
            feature_columns_present(reader.columns, spec, served.name, served.version, data_uri)
            id_column = spec.id_column if spec.id_column in reader.columns else None
            wanted = ([id_column] if id_column else []) + spec.feature_names
            text = ([id_column] if id_column else []) + spec.names_of("categorical")
            done = 0
            for chunk in reader.chunks(wanted, chunk_rows, text=text):
                writer.write(score_chunk(served, chunk, done, id_column, with_features, data_uri))
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done, max(done, reader.rows))
        if done == 0:
            raise DataError(f"no rows in {data_uri}")
        where = writer.commit()
    except BaseException:
        writer.discard()
        raise
    return ScoreSummary(served.name, served.version, done, time.perf_counter() - loaded, where,
                        id_column or ROW_COLUMN, loaded - started)


def score_chunk(served: ServedVersion, chunk: pd.DataFrame, start: int, id_column: str | None,
                with_features: bool = False, uri: str = "the table") -> pd.DataFrame:
    """One chunk's scored rows (``start`` is the position of its first row in the table)."""
    spec = served.spec
    try:
        typed = coerce_to_spec(chunk[spec.feature_names], spec, first_row=start + 1)
    except DataValidationError as exc:
        raise DataError(f"{uri}: {exc}") from None
    scores = served.score(typed, probabilities=spec.is_classification)
    probabilities = ({f"{PROBABILITY_PREFIX}{c}": scores.probabilities[:, i] for i, c in enumerate(served.classes)}
                     if scores.probabilities is not None else {})
    scored = {
        id_column or ROW_COLUMN: (_as_text_if_object(chunk[id_column]) if id_column
                                  else np.arange(start, start + len(chunk), dtype=np.int64)),
        PREDICTION_COLUMN: scores.predictions,
        **probabilities,
        VERSION_COLUMN: np.full(len(chunk), served.version, dtype=np.int64),
    }
    if with_features:
        scored.update(_stable_types(typed, spec))
    return pd.DataFrame(scored, index=chunk.index).reset_index(drop=True)


def _as_text_if_object(column: pd.Series) -> pd.Series:
    # pandas' nullable text keeps the column's type fixed across chunks, even a chunk of nothing but nulls.
    return column.astype("string") if column.dtype == object else column


def _stable_types(typed: pd.DataFrame, spec: DatasetSpec) -> dict[str, pd.Series]:
    """Feature columns whose written types do not depend on which values a chunk happens to hold."""
    as_type = {"numeric": "float64", "categorical": "string", "boolean": "boolean"}
    return {f.name: typed[f.name].astype(as_type[f.kind]) for f in spec.features}
