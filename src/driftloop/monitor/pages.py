"""The monitor's HTML pages: one per window and an index per model, under ``<store>/reports/<model>/``.

A window's page is rendered from its summary — the record the monitor decided on — plus profiles of the
reference sample and the window's rows for the plots (driftloop.reports.drift_window); it is rewritten while
labels arrive for a recent window, so its realised quality catches up. The index (driftloop.reports.drift_index)
is rewritten after every window and rendered afresh when the monitor serves it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from driftloop.data import DatasetSpec, FeatureSpec
from driftloop.errors import DriftloopError
from driftloop.monitor.analysis import PREDICTION, Reference
from driftloop.monitor.config import TriggerConfig
from driftloop.monitor.disk import write_durably
from driftloop.monitor.labels import LabelStore
from driftloop.monitor.retrain import TAKEN_OUT
from driftloop.monitor.windows import WindowRecord
from driftloop.profile import FeatureProfile, build_profile
from driftloop.registry import PRODUCTION, ModelRegistry
from driftloop.reports.drift_index import Event, IndexPage, drift_index_html
from driftloop.reports.drift_window import INDEX_FILE, WindowPage, window_report_html
from driftloop.tasks import REGRESSION

log = logging.getLogger(__name__)
TRIGGERS = ("retrain-triggered", "retrain-blocked")  # audit entries of a trigger (blocked: triggered, no run)


def window_file(window_id: int) -> str:
    """A window page's file name (monitor/guard.py serves only names of this form)."""
    return f"window-{window_id:06d}.html"


class Pages:
    """Writes the window pages and the index of each model.

    Args:
        reports: ``<store>/reports``.
        registry: For the audit trail's promotions, rollbacks and triggers on the index.
        trigger: The trigger's quality rule, stated on each page.
        max_rows: Rows per side profiled for the plots (seeded sample).
    """

    def __init__(self, reports: Path, registry: ModelRegistry, trigger: TriggerConfig, max_rows: int) -> None:
        self.reports, self.registry, self.trigger, self.max_rows = Path(reports), registry, trigger, max_rows
        self._reference_profiles: dict[tuple[str, int], dict[str, FeatureProfile]] = {}

    def write_window(self, record: WindowRecord, rows: pd.DataFrame, reference: Reference, labels: LabelStore,
                     retrain: dict | None = None) -> str:
        """Writes the window's page; returns its file name."""
        key = (reference.model, reference.version)
        if key not in self._reference_profiles:
            self._reference_profiles[key] = profiles(reference.sample, reference, self.max_rows)
        current = rows[reference.spec.feature_names].copy()
        current[PREDICTION] = record.predictions
        record.profiles = (self._reference_profiles[key], profiles(current, reference, self.max_rows))
        name = window_file(record.id)
        record.report = name
        self._render(record, labels, retrain)
        return name

    def refresh(self, records: list[WindowRecord], labels: LabelStore) -> list[WindowRecord]:
        """Rewrites the pages of ``records`` whose labelled rows grew since they were written; returns those."""
        changed = []
        for record in records:
            if record.profiles is None or record.report is None:
                continue
            if record.quality(labels)["labelled"] != record.page_labelled:
                self._render(record, labels, None)
                changed.append(record)
        return changed

    def _render(self, record: WindowRecord, labels: LabelStore, retrain: dict | None) -> None:
        summary = record.summary(labels)
        reference, current = record.profiles or ({}, {})
        view = WindowPage(summary, reference, current, self.trigger.quality_drop, self.trigger.min_labels, retrain)
        _write(self.reports / record.model / window_file(record.id), window_report_html(view))
        record.page_labelled = summary["quality"]["labelled"]

    def index(self, model: str, summaries: list[dict]) -> str:
        """The model's index page from its window summaries (oldest first)."""
        directory = self.reports / model
        existing = {p.name for p in directory.glob("window-*.html")} if directory.is_dir() else set()
        try:
            history = self.registry.history(model) if model in self.registry.list_models() else []
        except DriftloopError as exc:  # an untrusted or unreadable trail: the windows are still worth showing
            log.warning("monitor: the index of %s shows no audit events: %s", model, exc)
            history = []
        return drift_index_html(IndexPage(model, summaries, events(history), existing,
                                          datetime.now(UTC).isoformat(timespec="seconds")))

    def write_index(self, model: str, summaries: list[dict]) -> Path:
        path = self.reports / model / INDEX_FILE
        _write(path, self.index(model, summaries))
        return path


def profiles(frame: pd.DataFrame, reference: Reference, max_rows: int) -> dict[str, FeatureProfile]:
    """Feature profiles of ``frame`` (a seeded sample of at most ``max_rows``), and the prediction's: its class
    shares, or for regression the predicted amounts' distribution."""
    if len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=0)
    out = dict(build_profile(frame, reference.spec).features)
    if not reference.spec.is_classification:
        predicted = DatasetSpec(reference.spec.target, (FeatureSpec(PREDICTION, "numeric"),), task=REGRESSION)
        return out | build_profile(frame, predicted).features
    shares = frame[PREDICTION].astype(str).value_counts(normalize=True)
    out[PREDICTION] = FeatureProfile(PREDICTION, "categorical", 0.0,
                                     categories={str(k): float(v) for k, v in shares.items()})
    return out


def events(history: list) -> list[Event]:
    """The audit trail's retrains, promotions and rollbacks as the index marks them."""
    out = []
    for entry in history:
        at = datetime.fromisoformat(entry.at).timestamp()
        move = (entry.moves or {}).get(PRODUCTION)
        if entry.action in TRIGGERS:
            windows = [w.get("id") for w in (entry.evidence or {}).get("windows", []) if isinstance(w, dict)]
            last = max((w for w in windows if isinstance(w, int)), default=None)
            verb = "retrain" if entry.action == "retrain-triggered" else "retrain blocked"
            out.append(Event("trigger", verb, at, last))
        elif entry.action == "rollback":
            out.append(Event("rollback", f"rolled back to v{entry.to_version}", at))
        elif entry.action in TAKEN_OUT:
            out.append(Event("rollback", f"v{entry.to_version or entry.from_version} rolled back", at))
        elif move and move[1] is not None and move[0] != move[1]:
            out.append(Event("promotion", f"v{move[1]} promoted", at))
    return out


def _write(path: Path, document: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, lambda tmp: Path(tmp).write_text(document, encoding="utf-8"), sync_dir=False)
