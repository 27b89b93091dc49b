"""Bounded storage: the tick deletes rows, labels and reports past their age or beyond their size
(:class:`~driftloop.monitor.config.RetentionConfig`) and merges small Parquet parts of rows and labels,
about once a minute."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from driftloop.monitor.config import RetentionConfig
from driftloop.monitor.disk import remove_durably
from driftloop.monitor.labels import LabelStore
from driftloop.monitor.metrics import MonitorMetrics
from driftloop.monitor.store import RowStore

RETENTION_INTERVAL = 60.0  # seconds between passes: each lists the store's files


def prune_reports(reports: Path, max_age_days: float | None, max_bytes: int | None, now: float) -> tuple[int, int]:
    """Deletes window reports older than ``max_age_days``, then the oldest while they take more than
    ``max_bytes``. Returns (files, bytes) deleted."""
    files = sorted((p.stat().st_mtime, p.stat().st_size, p) for p in reports.glob("*/window-*.html"))
    total = sum(size for _, size, _ in files)
    doomed, freed = [], 0
    for mtime, size, path in files:
        too_old = max_age_days is not None and mtime < now - max_age_days * 86400
        too_big = max_bytes is not None and total - freed > max_bytes
        if not (too_old or too_big):
            break
        doomed.append(path)
        freed += size
    remove_durably(doomed)
    return len(doomed), freed


class Retention:
    """Applies the retention settings to the monitor's store and counts what it deleted."""

    def __init__(self, config: RetentionConfig, store: RowStore, labels: LabelStore, reports: Path,
                 metrics: MonitorMetrics, checkpoint: Callable[[], int] = lambda: 0) -> None:
        self.config, self.store, self.labels, self.reports, self.metrics = config, store, labels, reports, metrics
        self.checkpoint = checkpoint  # parts up to the last completed checkpoint may be merged
        self._last = 0.0

    def due(self, now: float) -> bool:
        return now - self._last >= RETENTION_INTERVAL

    def apply(self, now: float | None = None) -> dict[str, int]:
        """One pass; returns what was deleted per kind."""
        now = time.time() if now is None else now
        self._last = now
        c = self.config
        today = pd.Timestamp(now, unit="s", tz="UTC")
        row_files, row_bytes = self.store.retain(c.rows_days, c.rows_bytes, today)
        self.store.compact(self.checkpoint(), today.strftime("%Y-%m-%d"))
        labels_before, compactions = self.labels.size(), self.labels.compactions
        dropped, _ = self.labels.compact(c.labels_days, c.labels_bytes, now)
        self.metrics.compactions.inc(self.labels.compactions - compactions)
        label_bytes = max(0, labels_before - self.labels.size()) if dropped else 0
        report_files, report_bytes = prune_reports(self.reports, c.reports_days, c.reports_bytes, now)
        for kind, count, freed in (("rows", row_files, row_bytes), ("labels", dropped, label_bytes),
                                   ("reports", report_files, report_bytes)):
            self.metrics.retention_files.labels(kind).inc(count)
            self.metrics.retention_bytes.labels(kind).inc(freed)
        self.metrics.store_bytes.labels("rows").set(self.store.size())
        self.metrics.store_bytes.labels("labels").set(self.labels.size())
        self.metrics.store_bytes.labels("reports").set(sum(p.stat().st_size for p in self.reports.glob("*/window-*.html")))
        return {"rows": row_files, "labels": dropped, "reports": report_files}
