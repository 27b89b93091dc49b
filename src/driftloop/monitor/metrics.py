"""The monitor's Prometheus metrics: what arrived, and what the latest window of each model showed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

from driftloop.monitor.windows import WindowRecord
from driftloop.tasks import QUALITY_REPORTED

REALISED_HELP = {"accuracy": "accuracy", "f1_macro": "macro-F1 (over the classes seen)",
                 "rmse": "RMSE (root mean squared error, in the target's units)",
                 "mae": "MAE (mean absolute error, in the target's units)"}


class MonitorMetrics:
    """One collector registry per monitor, so tests and embedded monitors do not share counters."""

    def __init__(self) -> None:
        disable_created_metrics()  # *_created series double every counter on /metrics and nobody reads them
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("driftloop_monitor_events", "Payload events received", ["outcome"], registry=r)
        self.rows = Counter("driftloop_monitor_rows", "Logged rows joined and stored", ["model"], registry=r)
        self.labels = Counter("driftloop_monitor_labels", "Labels received", registry=r)
        self.windows = Counter("driftloop_monitor_windows", "Windows closed", ["model", "drifted"], registry=r)
        self.drift_share = Gauge("driftloop_monitor_drift_share", "Share of drifted features in the latest window",
                                 ["model"], registry=r)
        self.feature_score = Gauge("driftloop_monitor_feature_drift_score",
                                   "Latest window's drift score per feature", ["model", "feature"], registry=r)
        self.prediction_score = Gauge("driftloop_monitor_prediction_drift_score",
                                      "Latest window's prediction drift score", ["model"], registry=r)
        # One family per realised-quality metric (driftloop_monitor_realised_accuracy, _f1_macro, _rmse, _mae):
        # their units differ, so they never share a series.
        self.realised = {metric: Gauge(f"driftloop_monitor_realised_{metric}",
                                       f"Realised {REALISED_HELP[metric]} of the latest window with labels",
                                       ["model", "version"], registry=r)
                         for metric in dict.fromkeys(m for ms in QUALITY_REPORTED.values() for m in ms)}
        self.unseen_classes = Counter("driftloop_monitor_unseen_class_labels", "Labels naming a class the "
                                      "serving version never learned (kept, counted as wrong predictions)",
                                      ["model"], registry=r)
        self.rollouts = Counter("driftloop_rollouts", "How the rollouts of drift-triggered versions ended "
                                "(promoted, canary, rolled_back)", ["model", "outcome"], registry=r)
        self.log_records = Counter("driftloop_monitor_log_records", "Event halves and label batches written and "
                                   "fsync'd to the ingest log before they were acknowledged", registry=r)
        self.log_commits = Counter("driftloop_monitor_log_commits", "Group commits of the ingest log (one fsync "
                                   "each, shared by the records that arrived together)", registry=r)
        self.log_failures = Counter("driftloop_monitor_log_failures", "Ingest log writes that failed (their "
                                    "requests were answered 503 and nothing of them was kept)", registry=r)
        self.checkpoints = Counter("driftloop_monitor_checkpoints", "Checkpoints: buffered rows and labels "
                                   "written to the Parquet store (outcome ok or failed)", ["outcome"], registry=r)
        self.reports_skipped = Counter("driftloop_monitor_reports_skipped", "Windows that got no page because a "
                                       "newer window of the model closed while it waited for one",
                                       ["model"], registry=r)
        self.retention_files = Counter("driftloop_monitor_retention_deleted", "Files (rows, reports) or labels "
                                       "deleted by retention", ["kind"], registry=r)
        self.retention_bytes = Counter("driftloop_monitor_retention_deleted_bytes", "Bytes freed by retention",
                                       ["kind"], registry=r)
        self.compactions = Counter("driftloop_monitor_label_compactions", "Label parts merged into one",
                                   registry=r)
        self.store_bytes = Gauge("driftloop_monitor_store_bytes", "Bytes on disk per kind (rows, labels, reports), "
                                 "as of the last retention pass", ["kind"], registry=r)
        self.decisions = Counter("driftloop_monitor_trigger_decisions",
                                 "Trigger policy decisions per closed window (trigger, quiet, cooldown, in-flight, "
                                 "stopped)", ["model", "action"], registry=r)

    def window(self, record: WindowRecord) -> None:
        if record.drift_share is None:
            return
        self.windows.labels(record.model, str(bool(record.dataset_drift)).lower()).inc()
        self.drift_share.labels(record.model).set(record.drift_share)
        for feature, score in record.feature_scores.items():
            self.feature_score.labels(record.model, feature).set(score)
        if record.prediction_drift:
            self.prediction_score.labels(record.model).set(record.prediction_drift["score"])

    def quality(self, model: str, quality: dict) -> None:
        for version, stats in quality.get("by_version", {}).items():
            for metric, gauge in self.realised.items():
                if stats.get(metric) is not None:
                    gauge.labels(model, version).set(stats[metric])
