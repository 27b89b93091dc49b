"""Windows of live traffic: rows gathered until a row count or a time span is reached.

:class:`WindowBuffer` collects the rows of one model and says when a window is due.
:class:`WindowRecord` is a closed window: its drift verdict (filled in by the analysis), its report,
and what realised quality needs later — each row's key, version and prediction — because labels
arrive after the window has closed and quality is recomputed whenever it is asked for.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import pandas as pd

from driftloop.monitor.config import WindowConfig
from driftloop.monitor.labels import LabelStore, normalise_label, row_key
from driftloop.monitor.rows import Chunk, assemble


class WindowBuffer:
    """Rows of one model since the last window closed."""

    def __init__(self, config: WindowConfig, now: float | None = None) -> None:
        self.config = config
        self.opened_at = time.time() if now is None else now
        self._frames: list[Chunk] = []
        self.rows = 0

    def add(self, rows: Chunk) -> None:
        self._frames.append(rows)
        self.rows += len(rows)

    def due(self, now: float | None = None) -> bool:
        """Full, or old enough and big enough to be worth testing."""
        now = time.time() if now is None else now
        if self.rows >= self.config.rows:
            return True
        return now - self.opened_at >= self.config.seconds and self.rows >= self.config.min_rows

    def take(self, now: float | None = None) -> tuple[pd.DataFrame, float]:
        """The window's first ``rows`` rows and when it opened; the rest starts the next window."""
        frame = assemble(self._frames)
        opened_at = self.opened_at
        window, rest = frame.iloc[: self.config.rows], frame.iloc[self.config.rows:]
        self._frames = [rest] if len(rest) else []
        self.rows = len(rest)
        self.opened_at = time.time() if now is None else now
        return window.reset_index(drop=True), opened_at


@dataclass
class WindowRecord:
    """A closed window and what was learnt from it."""

    id: int
    model: str
    opened_at: float
    closed_at: float
    n_rows: int
    reference_version: int
    rows_by_version: dict[str, int]
    drift_share: float | None = None
    dataset_drift: bool | None = None
    drifted_features: list[str] = field(default_factory=list)
    feature_scores: dict[str, float] = field(default_factory=dict)
    prediction_drift: dict | None = None
    reference_accuracy: float | None = None
    quality_dropped: bool = False
    report: str | None = None  # file name under the monitor's reports directory, once rendered
    error: str | None = None  # why the analysis could not run
    decision: dict | None = None  # what the trigger policy made of this window
    # For realised quality (not part of the summary).
    keys: list[str] = field(default_factory=list, repr=False)
    versions: list[int] = field(default_factory=list, repr=False)
    predictions: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def open(cls, window_id: int, model: str, rows: pd.DataFrame, opened_at: float, reference_version: int,
             closed_at: float | None = None) -> WindowRecord:
        counts = rows["version"].astype(int).value_counts().sort_index()
        return cls(
            id=window_id, model=model, opened_at=opened_at, closed_at=time.time() if closed_at is None else closed_at,
            n_rows=len(rows), reference_version=reference_version,
            rows_by_version={str(v): int(n) for v, n in counts.items()},
            keys=[row_key(e, r) for e, r in zip(rows["event_id"], rows["row"], strict=True)],
            versions=rows["version"].astype(int).tolist(),
            predictions=[normalise_label(p) for p in rows["prediction"].tolist()],
        )

    def quality(self, labels: LabelStore) -> dict:
        """Realised accuracy on the rows labelled so far, overall and per version."""
        frame = pd.DataFrame({"key": self.keys, "version": self.versions, "prediction": self.predictions})
        return realised_quality(frame, labels)

    @property
    def signal(self) -> bool:
        """Whether this window counts towards a retrain: dataset drift or a realised quality drop."""
        return bool(self.dataset_drift) or self.quality_dropped

    def summary(self, labels: LabelStore | None = None) -> dict:
        data = {k: v for k, v in asdict(self).items() if k not in ("keys", "versions", "predictions")}
        if labels is not None:
            data["quality"] = self.quality(labels)
        data["signal"] = self.signal
        return data


def realised_quality(rows: pd.DataFrame, labels: LabelStore) -> dict:
    """Accuracy of predictions against the labels that have arrived, overall and per version.

    Args:
        rows: Columns ``key``, ``version`` and ``prediction`` (normalised text).
    """
    if rows.empty:
        return {"labelled": 0, "accuracy": None, "by_version": {}}
    truth = labels.lookup(rows["key"])
    known = truth.notna()
    correct = rows["prediction"][known] == truth[known]
    by_version = {}
    for version, hits in correct.groupby(rows["version"][known]):
        by_version[str(int(version))] = {"labelled": int(len(hits)), "accuracy": round(float(hits.mean()), 4)}
    return {"labelled": int(known.sum()), "accuracy": round(float(correct.mean()), 4) if known.any() else None,
            "by_version": by_version}
