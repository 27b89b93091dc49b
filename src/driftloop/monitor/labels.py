"""Delayed labels (ground truth), keyed like the logged rows: ``<request id>:<row>``.

A label arrives long after its prediction (a customer churns a month later). Labels are kept in
memory for joining and written through to ``<root>/labels/part-*.parquet`` (temporary name, then
rename) so a restarted monitor still knows them.
"""

from __future__ import annotations

import math
import os
import threading
import uuid
from pathlib import Path

import pandas as pd

from driftloop.monitor.events import EventError


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


class LabelStore:
    """Labels by row key, persisted as Parquet parts."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "labels"
        self._labels: dict[str, str] = {}
        self._lock = threading.Lock()
        for part in sorted(self.root.glob("part-*.parquet")):
            frame = pd.read_parquet(part)
            self._labels.update(zip(frame["key"], frame["label"], strict=True))

    def __len__(self) -> int:
        return len(self._labels)

    def add(self, items: list[dict]) -> int:
        """Stores ``[{"id": ..., "label": ..., "row": 0}, ...]``; all or nothing.

        Raises:
            EventError: an item lacks an id or a label, or its row is not a non-negative integer.
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
            keys.append(row_key(str(item["id"]), row))
            labels.append(normalise_label(label))
        if not keys:
            return 0
        self._write(pd.DataFrame({"key": keys, "label": labels}))
        with self._lock:
            self._labels.update(zip(keys, labels, strict=True))
        return len(keys)

    def lookup(self, keys: pd.Series) -> pd.Series:
        """The label of each key (None where none arrived yet)."""
        with self._lock:
            return keys.map(self._labels.get)

    def _write(self, frame: pd.DataFrame) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = self.root / f".{name}.tmp"
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, self.root / name)
