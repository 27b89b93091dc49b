"""Delayed labels (ground truth), keyed like the logged rows: ``<request id>:<row>``.

A label arrives long after its prediction (a customer churns a month later). Labels are kept in memory for
joining and on disk as ``<root>/labels/part-*.parquet`` (key, label, arrival time). The monitor's ingestion
logs a ``/feedback`` batch before acknowledging it and writes the labels that arrived since the last
checkpoint as one part per checkpoint (named with the checkpoint's log position, like the row store's
parts); :meth:`LabelStore.compact` merges the parts into one once there are many, and drops labels past
their retention.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
import time
from pathlib import Path

import pandas as pd

from driftloop.monitor.disk import finish_merges, merge_files, remove_durably, write_durably
from driftloop.monitor.events import EventError
from driftloop.monitor.store import part_name, part_tag

COMPACT_PARTS = 32  # more label parts than this are merged into one


def row_key(request_id: str, row: int = 0) -> str:
    """The key of row ``row`` of the request ``request_id`` (the payload event's ``ce-id``)."""
    return f"{request_id}:{row}"


def normalise_label(value) -> str:
    """Labels and predictions compare as text: 1, 1.0, True and "1" are the same class."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def number_label(value) -> str | None:
    """A regression label as text that compares as a number ("12.0", 12 and 12.0 are all "12"); None when the
    value is not a finite number (booleans are not amounts)."""
    if isinstance(value, str):
        text = value.strip()
        value = float(text) if _NUMBER.fullmatch(text) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return normalise_label(float(value))


def parse_labels(items: list, model: str | None = None, numbers: bool = False) -> tuple[list[str], list[str]]:
    """Row keys and normalised labels of ``[{"id": ..., "label": ..., "row": 0}, ...]``; all or nothing.

    Args:
        model: The model the labels are for (named in errors).
        numbers: The model is a regression: every label must be a number.

    Raises:
        EventError: an item lacks an id or a label, its row is not a non-negative integer, or (``numbers``) its
            label is not a number.
    """
    keys, labels = [], []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or item.get("id") in (None, "") or "label" not in item:
            raise EventError(f"label {i}: expected an object with 'id' and 'label'")
        label, row = item["label"], item.get("row", 0)
        if label is None or (isinstance(label, float) and not math.isfinite(label)) or isinstance(label, dict | list):
            raise EventError(f"label {i} (id {item['id']}): label must be a class value, got {label!r}")
        if not isinstance(row, int) or isinstance(row, bool) or row < 0:
            raise EventError(f"label {i} (id {item['id']}): row must be a non-negative integer")
        text = number_label(label) if numbers else normalise_label(label)
        if text is None:
            raise EventError(f"label {i} (id {item['id']}): {model or 'the model'} is a regression model, so its "
                             f"labels are numbers; got {label!r}")
        keys.append(row_key(str(item["id"]), row))
        labels.append(text)
    return keys, labels


Taken = list[pd.DataFrame]


_STORE_NUMBERS = itertools.count(1)


class LabelStore:
    """Labels by row key, persisted as Parquet parts."""

    def __init__(self, root: str | Path, compact_parts: int = COMPACT_PARTS) -> None:
        self.root = Path(root) / "labels"
        self.compact_parts = compact_parts
        self._labels: dict[str, str] = {}
        self._at: dict[str, float] = {}  # when each label arrived (retention by age)
        self._pending: Taken = []  # applied, not yet in a part
        self._lock = threading.Lock()
        self._disk = threading.Lock()  # the set of parts: written, compacted, removed
        self.compactions = 0
        # Moves on whenever a label is added or forgotten: what has been computed from the labels at one
        # generation (a window's realised quality) holds until it changes. ``identity`` tells stores apart.
        self.generation = 0
        self.identity = next(_STORE_NUMBERS)
        for part in self._parts():
            self._load(_read_part(part))

    def __len__(self) -> int:
        return len(self._labels)

    def add(self, items: list[dict], at: float | None = None) -> int:
        """Validates, stores and writes ``items`` as a part of their own (for use without the ingest log)."""
        keys, labels = parse_labels(items)
        if not keys:
            return 0
        frame = _frame(keys, labels, time.time() if at is None else at)
        self.write([frame], 0)
        self._load(frame)
        return len(keys)

    def apply(self, keys: list[str], labels: list[str], at: float) -> None:
        """Takes labels the ingest log holds: joinable at once, written at the next checkpoint."""
        frame = _frame(keys, labels, at)
        with self._lock:
            self._pending.append(frame)
        self._load(frame)

    def lookup(self, keys: pd.Series) -> pd.Series:
        """The label of each key (None where none arrived yet)."""
        with self._lock:
            return keys.map(self._labels.get)

    def take(self) -> Taken:
        with self._lock:
            taken, self._pending = self._pending, []
        return taken

    def put_back(self, taken: Taken) -> None:
        with self._lock:
            self._pending = taken + self._pending

    def write(self, taken: Taken, tag: int) -> list[Path]:
        """Writes taken labels as one durable part named with ``tag``."""
        if not taken:
            return []
        frame = pd.concat(taken, ignore_index=True)
        with self._disk:
            path = write_durably(self.root / part_name(tag), lambda tmp: frame.to_parquet(tmp, index=False))
        return [path]

    def remove_after(self, tag: int) -> int:
        """Completes a merge a crash interrupted, and removes parts written by a checkpoint later than ``tag``
        (one a crash interrupted)."""
        finish_merges([self.root])
        orphans = [p for p in self._parts() if part_tag(p) > tag]
        remove_durably(orphans)
        return len(orphans)

    def compact(self, max_age_days: float | None = None, max_bytes: int | None = None,
                now: float | None = None, force: bool = False) -> tuple[int, int]:
        """Merges the parts into one (the newest label per key), dropping labels older than ``max_age_days``
        and then the oldest while the parts are over ``max_bytes``. Runs when there are more than
        ``compact_parts`` parts, when retention has something to drop, or when ``force``d.

        Returns:
            Labels dropped by retention and parts removed.
        """
        now = time.time() if now is None else now
        cutoff = now - max_age_days * 86400 if max_age_days else None
        with self._disk:
            parts = self._parts()
            size = sum(p.stat().st_size for p in parts)
            with self._lock:
                oldest = min(self._at.values(), default=None)
            over_age = cutoff is not None and oldest is not None and oldest < cutoff
            over_size = max_bytes is not None and size > max_bytes
            if not parts or not (force or len(parts) > self.compact_parts or over_age or over_size):
                return 0, 0
            stored = pd.concat([_read_part(p) for p in parts], ignore_index=True).drop_duplicates("key", keep="last")
            merged = stored[stored["at"] >= cutoff] if cutoff is not None else stored
            if over_size and len(merged):  # keep the newest share that fits
                merged = merged.sort_values("at").tail(int(len(merged) * max_bytes / size))
            merged = merged.reset_index(drop=True)
            target = self.root / part_name(max(part_tag(p) for p in parts)) if len(merged) else None
            merge_files(self.root, parts, target, lambda tmp: merged.to_parquet(tmp, index=False))
        dropped = stored[~stored["key"].isin(set(merged["key"]))]
        with self._lock:  # forget dropped labels, unless one arrived again since
            for key, at in zip(dropped["key"], dropped["at"], strict=True):
                if self._at.get(key, math.inf) <= at:
                    self._labels.pop(key, None)
                    self._at.pop(key, None)
            self.generation += 1
        self.compactions += 1
        return len(dropped), len(parts)

    def parts(self) -> int:
        return len(self._parts())

    def size(self) -> int:
        return sum(p.stat().st_size for p in self._parts())

    def _parts(self) -> list[Path]:
        # Oldest first (by checkpoint, then by write time), so later labels for a key win when loaded.
        parts = list(self.root.glob("part-*.parquet"))
        return sorted(parts, key=lambda p: (part_tag(p), p.stat().st_mtime_ns))

    def _load(self, frame: pd.DataFrame) -> None:
        with self._lock:
            self._labels.update(zip(frame["key"], frame["label"], strict=True))
            self._at.update(zip(frame["key"], frame["at"], strict=True))
            self.generation += 1


def _frame(keys: list[str], labels: list[str], at: float) -> pd.DataFrame:
    return pd.DataFrame({"key": keys, "label": labels, "at": [float(at)] * len(keys)})


def _read_part(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    if "at" not in frame:  # parts from before arrival times were kept
        frame["at"] = float(path.stat().st_mtime)
    return frame
