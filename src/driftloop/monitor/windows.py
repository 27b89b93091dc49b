"""Windows of live traffic: rows gathered until a row count or a time span is reached.

:class:`WindowBuffer` collects the rows of one model and says when a window is due.
:class:`WindowRecord` is a closed window: its drift verdict (filled in by the analysis), its report,
and what realised quality needs later — each row's key, version and prediction, and the classes each version
learned — because labels arrive after the window has closed and quality is recomputed whenever it is asked for.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from driftloop.monitor.config import WindowConfig
from driftloop.monitor.labels import LabelStore, normalise_label, row_key
from driftloop.monitor.quality import realised_quality
from driftloop.monitor.rows import Chunk, assemble
from driftloop.tasks import BINARY, QUALITY_METRIC


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

    # A window is taken in three steps, so that the caller takes the chunks under its lock and builds the
    # DataFrame without it (a thousand rows' frame would hold up the events arriving).

    def take_chunks(self, now: float | None = None) -> list[Chunk]:
        """Everything buffered, as it came; the next window opens now."""
        chunks = self._frames
        self._frames, self.rows = [], 0
        self.opened_at = time.time() if now is None else now
        return chunks

    def split(self, chunks: list[Chunk]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The window (the chunks' first ``rows`` rows, as one DataFrame) and the rows beyond it."""
        frame = assemble(chunks)
        return frame.iloc[: self.config.rows].reset_index(drop=True), frame.iloc[self.config.rows:]

    def put_back(self, *chunks: Chunk) -> None:
        """Rows a window left over (or all it took, when building it failed) start the next one, in their order,
        before anything that arrived since."""
        kept = [chunk for chunk in chunks if len(chunk)]
        self._frames[:0] = kept
        self.rows += sum(len(chunk) for chunk in kept)


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
    # Each feature's test as decided on (column, kind, method, score, threshold, drifted), the share of drifted
    # features at which the dataset counts as drifted, and the reference sample's rows: what the page shows.
    feature_tests: list[dict] = field(default_factory=list)
    drift_threshold: float | None = None
    reference_rows: int | None = None
    prediction_drift: dict | None = None
    task: str = BINARY  # the served model's: what its predictions and realised quality are
    reference_quality: float | None = None  # the value of the task's quality metric the reference version is held to
    quality_dropped: bool = False
    quality_reason: str | None = None  # why realised quality counts as a drop, in the metric's terms
    report: str | None = None  # the window's page under <store>/reports/<model>/, once written
    error: str | None = None  # why the analysis could not run
    decision: dict | None = None  # what the trigger policy made of this window
    # For realised quality (not part of the summary).
    keys: list[str] = field(default_factory=list, repr=False)
    versions: list[int] = field(default_factory=list, repr=False)
    predictions: list = field(default_factory=list, repr=False)  # class labels (normalised text) or numbers
    classes: dict[int, frozenset[str]] = field(default_factory=dict, repr=False)  # each version's learned labels
    # For re-rendering the page as labels arrive: the plots' profiles, and the labelled rows it shows.
    profiles: tuple[dict, dict] | None = field(default=None, repr=False)
    page_labelled: int = field(default=0, repr=False)
    # The last realised quality and the label store (and its generation) it was computed from; the summary's
    # other fields as of the last change to any field (see __setattr__).
    quality_cache: tuple[int, int, int, dict] | None = field(default=None, repr=False, compare=False)
    summary_cache: tuple[int, dict] | None = field(default=None, repr=False, compare=False)
    changes: int = field(default=0, repr=False, compare=False)  # assignments to the other fields so far

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        if name not in _CACHES:  # fields are only ever assigned, never changed in place
            # A number never given before, not a +1: the event loop and the report worker both assign fields,
            # and a late write of a count could bring back a value a cached copy is keyed by.
            super().__setattr__("changes", next(_CHANGE_NUMBERS))

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

    @property
    def quality_metric(self) -> str:
        return QUALITY_METRIC[self.task]

    def quality(self, labels: LabelStore) -> dict:
        """Realised quality on the rows labelled so far, overall and per version (monitor/quality.py).

        Kept until a label arrives or is forgotten: the index asks every window in memory for it whenever
        a window closes."""
        seen = (labels.identity, labels.generation, self.changes)  # read before the labels are
        if self.quality_cache is None or self.quality_cache[:3] != seen:
            frame = pd.DataFrame({"key": self.keys, "version": self.versions, "prediction": self.predictions})
            self.quality_cache = (*seen, realised_quality(frame, labels, self.task, self.classes))
        return copy.deepcopy(self.quality_cache[3])

    @property
    def signal(self) -> bool:
        """Whether this window counts towards a retrain: dataset drift or a realised quality drop."""
        return bool(self.dataset_drift) or self.quality_dropped

    @property
    def signal_reason(self) -> str:
        """What this window signals, in words (empty when it does not)."""
        causes = [f"dataset drift (share {self.drift_share:.2f})"] if self.dataset_drift else []
        return "; ".join(causes + ([self.quality_reason] if self.quality_dropped and self.quality_reason else []))

    def summary(self, labels: LabelStore | None = None) -> dict:
        """The window as its summary line and the index show it. The nested values are shared with the cached
        copy: read them, never change them."""
        # Field by field, not asdict(self): that deep-copies the window's thousand keys, versions and
        # predictions only to drop them. And once until a field changes: the index page asks every window in
        # memory (up to 200) for its summary whenever one closes.
        cached = self.summary_cache
        if cached is None or cached[0] != self.changes:
            # Counted before it is read: a field the event loop assigns meanwhile (this runs in a worker thread)
            # makes this copy stale at once, never kept as current.
            changes = self.changes
            cached = (changes, {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)
                                if f.name not in _NOT_SUMMARISED})
            self.summary_cache = cached
        data = dict(cached[1])
        data["quality_metric"] = self.quality_metric
        if labels is not None:
            data["quality"] = self.quality(labels)
        data["signal"] = self.signal
        return data


_CACHES = ("quality_cache", "summary_cache", "changes")
_CHANGE_NUMBERS = itertools.count(1)
_NOT_SUMMARISED = ("keys", "versions", "predictions", "classes", "profiles", "page_labelled", *_CACHES)
SUMMARIES_DIR = "windows"  # <store>/windows/<model>.jsonl: one line per summary written, the last per id counts


def summaries_path(store_root: str | Path, model: str) -> Path:
    return Path(store_root) / SUMMARIES_DIR / f"{model}.jsonl"


def read_summaries(store_root: str | Path) -> dict[str, list[dict]]:
    """Every model's window summaries as the monitor last wrote them, oldest window first.

    A window's summary is written when it closes and again when its realised quality or page changes; the
    last line of an id is its summary. A torn last line (a crash mid-write) is skipped.
    """
    summaries: dict[str, dict[int, dict]] = {}
    for path in sorted((Path(store_root) / SUMMARIES_DIR).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                summary = json.loads(line)
                window_id = int(summary["id"])
            except (ValueError, KeyError, TypeError):
                continue
            summaries.setdefault(summary.get("model") or path.stem, {})[window_id] = summary
    return {model: [by_id[i] for i in sorted(by_id)] for model, by_id in summaries.items()}

