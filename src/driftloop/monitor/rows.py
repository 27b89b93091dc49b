"""The rows of one joined payload event, kept as column lists until many are assembled at once.

A DataFrame per event cost more than everything else the monitor does with it (pandas' per-call overhead
is hundreds of microseconds; a prediction arrives every few). So the joiner hands out :class:`Rows` — the
typed feature columns and the fields the monitor adds — and a DataFrame is built where rows are used in
bulk: when a checkpoint writes them, a window closes, or /quality is asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# Columns every stored row carries besides the model's features, in the order they follow the features.
META_COLUMNS = ("event_id", "row", "model", "version", "endpoint", "prediction", "received_at")


@dataclass(frozen=True, slots=True)
class Rows:
    """The rows of one joined event (a request and its response).

    Attributes:
        model, version, endpoint: Who answered.
        event_id: The pair's ``ce-id``; row ``i`` is the request's ``i``-th instance.
        features: Feature name → typed values (a float array for numbers, a list otherwise), in spec order.
        predictions: One per row.
        received_at: When the monitor received the pair (seconds since the epoch).
    """

    model: str
    version: int
    endpoint: str
    event_id: str
    features: dict[str, Any]
    predictions: list
    received_at: float

    def __len__(self) -> int:
        return len(self.predictions)

    def frame(self) -> pd.DataFrame:
        return assemble([self])


Chunk = Rows | pd.DataFrame  # rows read back from the store stay DataFrames


def assemble(chunks: Iterable[Chunk]) -> pd.DataFrame:
    """One DataFrame of the chunks' rows, in order: features first, then :data:`META_COLUMNS`."""
    frames: list[pd.DataFrame] = []
    run: list[Rows] = []
    for chunk in chunks:
        # Consecutive rows of the same feature set become one frame (a new version may add a feature).
        if isinstance(chunk, Rows) and (not run or chunk.features.keys() == run[0].features.keys()):
            run.append(chunk)
            continue
        if run:
            frames.append(_frame(run))
            run = []
        if isinstance(chunk, Rows):
            run = [chunk]
        elif len(chunk):
            frames.append(chunk)
    if run:
        frames.append(_frame(run))
    if not frames:
        return pd.DataFrame()
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _frame(run: Sequence[Rows]) -> pd.DataFrame:
    columns: dict[str, Any] = {}
    for name, first in run[0].features.items():
        if isinstance(first, np.ndarray):
            columns[name] = np.concatenate([r.features[name] for r in run]) if len(run) > 1 else first
        else:
            columns[name] = [v for r in run for v in r.features[name]]
    lengths = np.fromiter((len(r) for r in run), dtype=np.int64, count=len(run))
    columns["event_id"] = np.repeat(np.array([r.event_id for r in run], dtype=object), lengths)
    columns["row"] = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])
    columns["model"] = np.repeat(np.array([r.model for r in run], dtype=object), lengths)
    columns["version"] = np.repeat(np.array([r.version for r in run], dtype=np.int64), lengths)
    columns["endpoint"] = np.repeat(np.array([r.endpoint for r in run], dtype=object), lengths)
    columns["prediction"] = [p for r in run for p in r.predictions]
    seconds = np.repeat(np.array([r.received_at for r in run], dtype=np.float64), lengths)
    columns["received_at"] = pd.to_datetime(seconds, unit="s", utc=True)
    return pd.DataFrame(columns)


__all__ = ["META_COLUMNS", "Chunk", "Rows", "assemble"]
