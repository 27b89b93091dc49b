"""The closed loop, unattended, on generated data: what ``driftloop demo`` (and ``make demo``) runs.

The data is one of :mod:`driftloop.synthetic`'s tables — churn (binary), the retention offer (multi-class) or
next month's spend (regression), ``DemoOptions.task`` — and every number the demo prints is in that task's terms
(the gate's metric, the realised quality the monitor and the canary judge).

train v1 → serve it (the gateway) → live traffic with labels (replay) → the world drifts (covariate and
concept) → the monitor's windows flag it → the trigger starts a retrain (reference + recent labelled
traffic) → v2 is registered → canary → analysis (errors, latency, realised quality) → promoted or
rolled back. The gateway and the monitor run as their own processes, exactly as ``driftloop serve``
and ``driftloop monitor`` do; the demo drives traffic and prints a timeline from the monitor's status
and the registry's audit trail.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd

from driftloop import synthetic
from driftloop.drift_defaults import DRIFT_SHARE
from driftloop.errors import DriftloopError
from driftloop.http_guard import LABELS
from driftloop.loop_demo_options import DemoOptions
from driftloop.registry import PRODUCTION, open_registry
from driftloop.replay import ReplayPlan, ReplaySummary, replay
from driftloop.settings import Settings
from driftloop.tasks import BINARY, MULTICLASS, QUALITY_REPORTED, REGRESSION, default_gate_metric

# How far a window's realised quality (tasks.QUALITY_METRIC) may fall behind the version's holdout before the
# window signals, in tasks.quality_drop's terms: accuracy points, or RMSE's relative rise (a window of a few
# hundred labels moves RMSE by several per cent by chance alone).
QUALITY_DROP = {BINARY: 0.05, MULTICLASS: 0.05, REGRESSION: 0.2}
# The retrain gate's floor (CT parameter min_gate_value) where the default (0.6) does not fit the demo's task: after
# the demo's concept shift, a four-class macro-F1 lands near 0.6 (chance is 0.25), so the floor, not the comparison
# with the champion on the recent rows, decided by chance whether the loop went round.
GATE_FLOOR = {MULTICLASS: 0.5}


def version_metrics(task: str) -> tuple[str, ...]:
    """What the demo shows of each version: the task's gate metric, then the realised quality it reports."""
    return tuple(dict.fromkeys((default_gate_metric(task), *QUALITY_REPORTED[task])))


@dataclass
class DemoEvent:
    seconds: float  # since the demo started
    source: str  # "demo" | "monitor" | "registry"
    text: str


@dataclass
class DemoSummary:
    outcome: str  # "promoted" | "rolled back" | "retrain failed" | "no promotion before the timeout"
    model: str = synthetic.MODEL_NAME
    task: str = BINARY
    metrics: list[str] = field(default_factory=list)  # the metrics each row of ``versions`` carries
    events: list[DemoEvent] = field(default_factory=list)
    versions: list[dict] = field(default_factory=list)
    triggers: list[dict] = field(default_factory=list)
    drift_onset_at: str | None = None
    promoted_at: str | None = None
    onset_to_promotion_seconds: float | None = None
    promoted_version: int | None = None
    # The windows after the promotion, against the promoted version's reference: id, drift share, signal,
    # the monitor's decision. Quiet windows and no second trigger mean the reference moved with the world.
    after_promotion: list[dict] = field(default_factory=list)
    retrains_after_promotion: int = 0
    traffic: dict = field(default_factory=dict)
    registry: str = ""
    summary_path: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def monitor_config(gateway: str, monitor: str, options: DemoOptions) -> dict:
    """The monitor's settings for the demo: small windows, a quick trigger, a fast canary analysis."""
    return {
        "model": synthetic.MODEL_NAMES[options.task],
        "window": {"rows": options.window_rows, "seconds": 30, "min_rows": options.window_rows // 2},
        "drift": {"drift_share": DRIFT_SHARE},
        "trigger": {"m": 2, "n": 3, "cooldown_seconds": 600, "max_failures": 2,
                    "quality_drop": QUALITY_DROP[options.task],
                    "min_labels": options.window_rows // 2},
        "retrain": {
            "runner": "local", "recent_rows": 5000, "reference_rows": 1000,
            "pipeline_params": {
                **({"min_gate_value": GATE_FLOOR[options.task]} if options.task in GATE_FLOOR else {}),
                "rollout_gateway": gateway, "rollout_monitor": monitor, "rollout_interval": 8.0,
                "rollout_policy": {"steps": [10, 50, 100], "min_requests": 20, "min_labels": 30,
                                   "max_latency_ratio": 3.0, "max_inconclusive": 4},
            },
        },
    }


class Services:
    """The gateway and the monitor as child processes on free loopback ports."""

    def __init__(self, settings: Settings, workdir: Path, options: DemoOptions) -> None:
        self.settings, self.workdir, self.options = settings, workdir, options
        self.gateway_port, self.monitor_port = _free_port(), _free_port()
        self.gateway = f"http://127.0.0.1:{self.gateway_port}"
        self.monitor = f"http://127.0.0.1:{self.monitor_port}"
        self._processes: list[subprocess.Popen] = []

    def __enter__(self) -> Services:
        config_path = self.workdir / "monitor.json"
        config_path.write_text(json.dumps(monitor_config(self.gateway, self.monitor, self.options), indent=2))
        env = {**os.environ, "DRIFTLOOP_HOME": str(self.settings.home), "DRIFTLOOP_REGISTRY": self.settings.registry_uri}
        common = [sys.executable, "-m", "driftloop"]
        self._start(common + ["monitor", "--config", str(config_path), "--port", str(self.monitor_port),
                              "--store", str(self.workdir / "monitor")], env, "monitor.log")
        self._start(common + ["serve", "--port", str(self.gateway_port), "--logger-url", f"{self.monitor}/events",
                              "--poll-interval", "0.5"], env, "gateway.log")
        _wait_healthy(f"{self.monitor}/status", self._processes[0], self.workdir / "monitor.log")
        _wait_healthy(f"{self.gateway}/v2/health/ready", self._processes[1], self.workdir / "gateway.log")
        return self

    def _start(self, command: list[str], env: dict, log_name: str) -> None:
        with open(self.workdir / log_name, "w") as log:
            self._processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))

    def __exit__(self, *exc) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def run_demo(settings: Settings, options: DemoOptions = DemoOptions(),
             on_event: Callable[[DemoEvent], None] | None = None) -> DemoSummary:
    """Runs the loop end to end and writes the JSON summary; returns it."""
    from driftloop import api

    started = time.monotonic()
    task, model = options.task, synthetic.MODEL_NAMES[options.task]
    timeline = Timeline(started, on_event or (lambda event: None))
    workdir = settings.home / "demo" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    train = synthetic.generate(options.train_rows, options.seed, task=task)
    train_path = workdir / "reference.csv"
    train.to_csv(train_path, index=False)
    registry = open_registry(settings.registry_uri)
    if model in registry.list_models():
        # The story starts with nothing in production; an earlier demo's registry is left as it was.
        settings = dataclasses.replace(settings, registry_uri=str(workdir / "registry"))
        registry = open_registry(settings.registry_uri)
        timeline.add("demo", f"'{model}' already exists in the default registry; this demo uses {settings.registry_uri}")
    known_entries = 0

    timeline.add("demo", f"training v1 of '{model}' ({task}: {synthetic.TARGETS[task]}) on {options.train_rows} "
                         "rows of the reference world (CT pipeline, kfp.local)")
    first = api.run(api.demo_params(str(train_path), task=task), settings)
    if first.state != "SUCCEEDED" or first.deploy_action != "promoted":
        raise DriftloopError(f"the first CT run did not put a version in production: {first.error or first.deploy_action}")
    gate_metric = default_gate_metric(task)
    timeline.add("demo", f"v{first.version} in production ({gate_metric} {first.metrics.get(gate_metric, 0):.3f})")
    known_entries = len(registry.history(model))

    traffic = _traffic(options)
    plan = ReplayPlan.from_tables(traffic, id_column=synthetic.ID_COLUMN, label_column=synthetic.TARGETS[task],
                                  timestamp_column=synthetic.TIMESTAMP_COLUMN)
    onset_at: list[datetime] = []
    summary = DemoSummary(outcome="no promotion before the timeout", model=model, task=task,
                          metrics=list(version_metrics(task)))
    with Services(settings, workdir, options) as services:
        timeline.add("demo", f"gateway {services.gateway} and monitor {services.monitor} up; sending "
                             f"{options.rate:.0f} rows/s with labels 2 s later")
        stop = threading.Event()
        result: dict[str, ReplaySummary] = {}

        def progress(sent: ReplaySummary) -> None:
            if not onset_at and sent.sent >= options.clean_rows:
                onset_at.append(datetime.now(UTC))
                timeline.add("demo", f"drift starts now: covariate shift {options.covariate_shift}, concept shift "
                                     f"{options.concept_shift} (after {options.clean_rows} clean rows)")

        sender = threading.Thread(target=lambda: result.setdefault("replay", replay(
            plan, services.gateway, model, options.rate, services.monitor, label_delay=2.0,
            on_progress=progress, stop=stop, labels_token=LABELS.token())), daemon=True)
        sender.start()
        watcher = Watcher(services.monitor, registry, model, task, known_entries, timeline)
        deadline = None
        while True:
            watcher.poll()
            if onset_at and deadline is None:
                deadline = time.monotonic() + options.timeout
            outcome = watcher.outcome()
            if outcome or (deadline and time.monotonic() > deadline) or not sender.is_alive():
                summary.outcome = outcome or summary.outcome
                break
            time.sleep(1.0)
        # The monitor records how the retrain ended once the run's process exits; wait for that entry.
        settle = time.monotonic() + 60
        while watcher.retrain_running() and time.monotonic() < settle:
            time.sleep(1.0)
            watcher.poll()
        if watcher.promoted_version and options.after_windows:
            timeline.add("demo", f"watching {options.after_windows} windows against v{watcher.promoted_version}")
            _watch_after_promotion(watcher, options, sender)
        stop.set()
        sender.join(timeout=30)
        watcher.poll()
        summary.traffic = result["replay"].to_dict() if "replay" in result else {}
    summary.events = timeline.events
    summary.triggers = watcher.triggers
    summary.versions = _versions(registry, model, summary.metrics)
    summary.registry = settings.registry_uri
    summary.drift_onset_at = onset_at[0].isoformat() if onset_at else None
    if watcher.promoted_at and onset_at:
        summary.promoted_at = watcher.promoted_at.isoformat()
        summary.promoted_version = watcher.promoted_version
        summary.onset_to_promotion_seconds = round((watcher.promoted_at - onset_at[0]).total_seconds(), 1)
        summary.after_promotion = watcher.windows_after_promotion()
        summary.retrains_after_promotion = sum(
            t["action"] == "retrain-triggered" and datetime.fromisoformat(t["at"]) > watcher.promoted_at
            for t in watcher.triggers)
    path = workdir / "summary.json"
    summary.summary_path = str(path)
    path.write_text(json.dumps(summary.to_dict(), indent=2, default=str))
    return summary


def _watch_after_promotion(watcher: Watcher, options: DemoOptions, sender: threading.Thread) -> None:
    """Keeps the drifted traffic flowing until ``after_windows`` windows against the promoted version are
    decided (or the traffic runs out, or twice their expected time has passed)."""
    expected = options.after_windows * options.window_rows / options.rate
    deadline = time.monotonic() + 2 * expected + 30
    while (len(watcher.windows_after_promotion()) < options.after_windows and sender.is_alive()
           and time.monotonic() < deadline):
        time.sleep(1.0)
        watcher.poll()


def _traffic(options: DemoOptions) -> pd.DataFrame:
    """Clean rows, then enough drifted rows to outlast the loop and the windows after it; one minute apart in
    event time."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    clean = synthetic.generate(options.clean_rows, options.seed + 1, start=start, id_offset=1_000_000,
                               task=options.task)
    drifted_rows = int(options.rate * (options.timeout + 60)) + 2 * options.after_windows * options.window_rows
    drifted = synthetic.generate(drifted_rows, options.seed + 2, covariate_shift=options.covariate_shift,
                                 concept_shift=options.concept_shift,
                                 start=start + timedelta(minutes=options.clean_rows), id_offset=2_000_000,
                                 task=options.task)
    return pd.concat([clean, drifted], ignore_index=True)


class Timeline:
    """Events with their time since the demo started, passed on as they happen."""

    def __init__(self, started: float, on_event: Callable[[DemoEvent], None]) -> None:
        self.started, self.on_event, self.events = started, on_event, []

    def add(self, source: str, text: str) -> None:
        event = DemoEvent(round(time.monotonic() - self.started, 1), source, text)
        self.events.append(event)
        self.on_event(event)


class Watcher:
    """Turns new monitor windows and new audit entries into timeline events; spots the loop's end."""

    def __init__(self, monitor: str, registry, model: str, task: str, known_entries: int,
                 timeline: Timeline) -> None:
        self.monitor, self.registry, self.timeline = monitor, registry, timeline
        self.model, self.task = model, task
        self.seen_windows: set[int] = set()
        self.decided: list[dict] = []  # every decided window's summary, in order
        self.seen_entries = known_entries
        self.triggers: list[dict] = []
        self.promoted_at: datetime | None = None
        self.promoted_version: int | None = None
        self._outcome: str | None = None
        self._finished = 0

    def poll(self) -> None:
        try:
            status = httpx.get(f"{self.monitor}/status", params={"model": self.model, "limit": 50}, timeout=10).json()
        except (httpx.HTTPError, ValueError):
            status = {}
        for window in (status.get("models", {}).get(self.model) or {}).get("windows", []):
            if window["id"] not in self.seen_windows and window.get("decision") is not None:
                self.seen_windows.add(window["id"])
                self.decided.append(window)
                self.timeline.add("monitor", describe_window(window, self.task))
        entries = self.registry.history(self.model)
        for entry in entries[self.seen_entries:]:
            self._entry(entry)
        self.seen_entries = len(entries)

    def _entry(self, entry) -> None:
        if entry.action in ("retrain-triggered", "retrain-refused", "retrain-blocked"):
            self.triggers.append({"action": entry.action, "at": entry.at, "reason": entry.reason,
                                  "key": (entry.evidence or {}).get("key")})
        if entry.action == "promote" and entry.to_version and entry.actor != "cli":
            self.promoted_at = datetime.fromisoformat(entry.at)
            self.promoted_version = entry.to_version
            self._outcome = "promoted"
        elif entry.action == "rollout-abort":
            self._outcome = "rolled back"
        elif entry.action == "retrain-finished":
            self._finished += 1
            if (entry.evidence or {}).get("state") != "promoted":
                self._outcome = self._outcome or "retrain failed"
        elif entry.action in ("retrain-stopped", "retrain-blocked"):
            self._outcome = self._outcome or "retrain blocked"
        self.timeline.add("registry", f"{entry.action}: {entry.reason}")

    def outcome(self) -> str | None:
        return self._outcome

    def windows_after_promotion(self) -> list[dict]:
        """Decided windows served by the promoted version alone and judged against its reference (a window that
        straddles the promotion holds the old version's answers, whose realised quality is the old one's)."""
        if not self.promoted_version:
            return []
        return [{"id": w["id"], "drift_share": w.get("drift_share"), "dataset_drift": w.get("dataset_drift"),
                 "signal": w.get("signal"),
                 "rows_by_version": w.get("rows_by_version"), "decision": (w.get("decision") or {}).get("action")}
                for w in self.decided if w.get("reference_version") == self.promoted_version
                and set(w.get("rows_by_version") or {}) == {str(self.promoted_version)}]

    def retrain_running(self) -> bool:
        """A retrain was triggered and its ``retrain-finished`` entry has not arrived yet."""
        started = sum(t["action"] == "retrain-triggered" for t in self.triggers)
        return started > self._finished


def describe_window(window: dict, task: str = BINARY) -> str:
    """One timeline line of a decided window: its drift, prediction drift and realised quality in ``task``'s
    terms (accuracy; accuracy and macro-F1; RMSE and MAE), and the monitor's decision."""
    if window.get("error"):
        return f"window {window['id']}: not analysed ({window['error']})"
    drifted = window["drifted_features"]
    quality = window.get("quality") or {}
    realised = ", ".join(f"{name} {quality[name]:.2f}" for name in QUALITY_REPORTED[task]
                         if quality.get(name) is not None)
    prediction = window.get("prediction_drift") or {}
    text = (f"window {window['id']} ({window['n_rows']} rows vs v{window['reference_version']}): drift share "
            f"{window['drift_share']:.2f}" + (f" ({', '.join(drifted[:3])}{' …' if len(drifted) > 3 else ''})"
                                               if drifted else "")
            + (f", prediction drift {prediction['score']:.2f}" if prediction else "")
            + (f", {realised} on {quality['labelled']} labels" if realised else ""))
    decision = window.get("decision") or {}
    return text + f" → {decision.get('action', '?')}"


def _versions(registry, model: str, metrics: list[str]) -> list[dict]:
    """A row per version: its origin, aliases and ``metrics`` (from its holdout)."""
    aliases = registry.aliases(model)
    rows = []
    for mv in registry.list_versions(model):
        rows.append({"version": mv.version, "triggered_by": mv.lineage.get("triggered_by"),
                     "parent_version": mv.lineage.get("parent_version"),
                     **{name: mv.metrics.get(name) for name in metrics}, "data_uri": mv.lineage.get("data_uri"),
                     "aliases": sorted(a for a, v in aliases.items() if v == mv.version),
                     "production": aliases.get(PRODUCTION) == mv.version})
    return rows


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise DriftloopError(f"{' '.join(process.args[2:4])} exited: {tail[0] if tail else 'no output'} "
                                 f"(log: {log})")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise DriftloopError(f"{url} did not come up within {timeout:.0f} s (log: {log})")
