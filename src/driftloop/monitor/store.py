"""Logged rows, kept as a partitioned Parquet dataset: ``<root>/<model>/date=YYYY-MM-DD/part-*.parquet``.

Rows are buffered and written in parts (every ``flush_rows`` rows, and on :meth:`flush`); each part is
written to a temporary name and renamed, so a reader never sees half a file. The dataset is what the
next training run learns from, once labels are joined.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pandas as pd


class RowStore:
    """Buffers rows per model and writes them as Parquet parts."""

    def __init__(self, root: str | Path, flush_rows: int = 1000) -> None:
        self.root = Path(root)
        self.flush_rows = flush_rows
        self._buffers: dict[str, list[pd.DataFrame]] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.rows_written = 0

    def add(self, model: str, rows: pd.DataFrame) -> None:
        with self._lock:
            self._buffers.setdefault(model, []).append(rows)
            self._counts[model] = self._counts.get(model, 0) + len(rows)
            full = self._counts[model] >= self.flush_rows
        if full:
            self.flush(model)

    def flush(self, model: str | None = None) -> int:
        """Writes what is buffered (for one model or all); returns the rows written."""
        with self._lock:
            models = [model] if model else list(self._buffers)
            taken = {m: self._buffers.pop(m, []) for m in models}
            for m in models:
                self._counts[m] = 0
        written = 0
        for name, frames in taken.items():
            if frames:
                written += self._write(name, pd.concat(frames, ignore_index=True))
        self.rows_written += written
        return written

    def _write(self, model: str, rows: pd.DataFrame) -> int:
        for day, part in rows.groupby(rows["received_at"].dt.strftime("%Y-%m-%d")):
            directory = self.root / model / f"date={day}"
            directory.mkdir(parents=True, exist_ok=True)
            name = f"part-{uuid.uuid4().hex}.parquet"
            tmp = directory / f".{name}.tmp"
            part.to_parquet(tmp, index=False)
            os.replace(tmp, directory / name)
        return len(rows)

    def read(self, model: str) -> pd.DataFrame:
        """Every stored row of ``model`` (buffered rows are not included until flushed)."""
        parts = sorted((self.root / model).glob("date=*/part-*.parquet"))
        if not parts:
            return pd.DataFrame()
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
