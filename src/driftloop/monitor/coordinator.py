"""The retrain lifecycle: from a window's trigger decision to how the new version's rollout ended.

:class:`RetrainCoordinator` owns, per model, the trigger policy, one typed :class:`Retrain` record per
retrain, and the audit entries that tell the story (``retrain-triggered``, ``-refused``, ``-blocked``,
``-failed``, ``-finished``, ``-stopped``). The audit trail is also where its state lives: every change is
written there before it is made in memory, and :func:`fold` turns a model's trail back into that state
(the last trigger's time for the cooldown, the consecutive failures and so whether retraining stopped, the
retrain in flight), so a restarted monitor carries on where the killed one was. A retrain that was running
when its monitor died is :meth:`RetrainCoordinator.recover`'s problem: its run is followed again if the
runner can find it (a KFP run always; a local run whose process is still alive or left its summary), and
otherwise it is judged once by what the registry shows and recorded as interrupted.

It needs no HTTP and no event ingestion: the registry, a runner (the port to the CT pipeline) and a
function that assembles the training table.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import pandas as pd

from driftloop.ct_params import CTParams
from driftloop.data import DatasetSpec
from driftloop.errors import DriftloopError
from driftloop.monitor.config import RetrainConfig, TriggerConfig
from driftloop.monitor.metrics import MonitorMetrics
from driftloop.monitor.retrain import (
    CANARY_SERVING,
    PENDING_APPROVAL,
    PROMOTED,
    ROLLED_BACK,
    TrainingTable,
    rollout_outcome,
)
from driftloop.monitor.trigger import Decision, TriggerPolicy
from driftloop.monitor.windows import WindowRecord
from driftloop.registry import ModelRegistry
from driftloop.registry.base import AuditEntry
from driftloop.runners import Runner, RunOutcome

log = logging.getLogger(__name__)
ACTOR = "drift-monitor"
KEEP_RETRAINS = 50  # records kept in memory per model (the audit trail has them all)


class RetrainState(StrEnum):
    """Where a retrain is: triggered → running → one of the endings."""

    TRIGGERED = "triggered"  # the policy fired and the table is written; no run (yet, or runner "none")
    RUNNING = "running"
    CANARY = "canary"  # the run ended with the new version serving its canary share
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    PENDING_APPROVAL = "pending_approval"  # passed its canary analysis, waits for a person (approval policy)
    FAILED = "failed"  # the run failed, could not start, registered nothing deployable, or was lost
    BLOCKED = "blocked"  # the training table could not be assembled (e.g. traffic failed validation)

    @property
    def succeeded(self) -> bool:
        """Not a failure for the "stop after K failures" rule: the new version went out."""
        return self in (RetrainState.PROMOTED, RetrainState.CANARY, RetrainState.PENDING_APPROVAL)


# How a run's version rolled out (monitor/retrain.py::rollout_outcome) → the retrain's ending.
_ROLLOUT_STATES = {PROMOTED: RetrainState.PROMOTED, CANARY_SERVING: RetrainState.CANARY,
                   ROLLED_BACK: RetrainState.ROLLED_BACK, PENDING_APPROVAL: RetrainState.PENDING_APPROVAL}
# Endings written by monitors before this record type existed.
_LEGACY_STATES = {"rolled-back": RetrainState.ROLLED_BACK, "not-promoted": RetrainState.FAILED,
                  "pending-approval": RetrainState.PENDING_APPROVAL}


@dataclass
class Retrain:
    """One retrain, from the trigger to its outcome."""

    model: str
    key: str  # idempotency key: model, serving version and the signalling windows
    reason: str
    reference_version: int | None  # the version in production when it was triggered
    windows: list[int]
    triggered_at: float
    state: RetrainState = RetrainState.TRIGGERED
    run_id: str | None = None
    run_url: str | None = None
    data_uri: str | None = None
    version: int | None = None  # the version the run registered
    error: str | None = None
    finished_at: float | None = None

    @property
    def in_flight(self) -> bool:
        return self.finished_at is None and self.state in (RetrainState.TRIGGERED, RetrainState.RUNNING)

    def to_dict(self) -> dict:
        return asdict(self) | {"state": self.state.value, "run": self.run_url}


@dataclass
class TrailState:
    """What a model's audit trail says about its retrains: the trigger state that survives a restart."""

    last_trigger_at: float | None = None
    consecutive_failures: int = 0
    retrains: list[Retrain] = field(default_factory=list)

    @property
    def in_flight(self) -> Retrain | None:
        return next((r for r in reversed(self.retrains) if r.in_flight), None)


def fold(model: str, entries: Iterable[AuditEntry]) -> TrailState:
    """Replays the ``retrain-*`` entries of ``model``'s audit trail into its retrain state."""
    state = TrailState()
    by_key: dict[str, Retrain] = {}
    for entry in entries:
        if not entry.action.startswith("retrain-"):
            continue
        evidence = entry.evidence or {}
        at = _seconds(entry.at)
        if entry.action == "retrain-resumed":
            state.consecutive_failures = 0
            continue
        key = evidence.get("key")
        if not key or entry.action not in ("retrain-triggered", "retrain-blocked", "retrain-failed",
                                           "retrain-finished"):
            continue  # refused and stopped entries change nothing (stopped follows from the failures)
        retrain = by_key.get(key)
        if retrain is None:
            retrain = by_key[key] = Retrain(
                model, key, entry.reason, entry.to_version, [w.get("id") for w in evidence.get("windows", [])],
                float(evidence.get("triggered_at") or at))
            state.retrains.append(retrain)
        if entry.action == "retrain-triggered":
            started = evidence.get("state", RetrainState.RUNNING.value if evidence.get("run") else "triggered")
            retrain.state = RetrainState(started)
            retrain.run_id, retrain.run_url = evidence.get("run_id") or evidence.get("run"), evidence.get("run")
            retrain.data_uri = evidence.get("data_uri")
            retrain.finished_at = None if retrain.state == RetrainState.RUNNING else at
            state.last_trigger_at = retrain.triggered_at
            continue
        ended = (RetrainState.BLOCKED if entry.action == "retrain-blocked" else RetrainState.FAILED
                 if entry.action == "retrain-failed" else _ending(evidence.get("state")))
        if entry.action != "retrain-finished":
            state.last_trigger_at = retrain.triggered_at  # the cooldown runs from every attempt
            retrain.error = entry.reason
        retrain.state, retrain.finished_at = ended, at
        retrain.version = entry.to_version if entry.action == "retrain-finished" else retrain.version
        state.consecutive_failures = 0 if ended.succeeded else state.consecutive_failures + 1
    return state


def _ending(value: str | None) -> RetrainState:
    if value in _LEGACY_STATES:
        return _LEGACY_STATES[value]
    try:
        return RetrainState(value)
    except ValueError:
        return RetrainState.FAILED


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def resume(registry: ModelRegistry, model: str, *, actor: str, reason: str) -> AuditEntry:
    """Records ``retrain-resumed``: the failure count starts again from zero, for a running monitor (at its
    next window) and for any monitor that starts later."""
    if not fold(model, registry.history(model)).consecutive_failures:
        raise DriftloopError(f"retraining of {model} is not stopped and has no failures to forget")
    return registry.record(model, "retrain-resumed", actor=actor, reason=reason)


def idempotency_key(model: str, version: int, window_ids: list[int]) -> str:
    digest = hashlib.sha256(f"{model}:{version}:{','.join(map(str, window_ids))}".encode()).hexdigest()[:12]
    return f"{model}-v{version}-{digest}"


# (model, serving version, idempotency key, rows since) → the training table, written.
Assemble = Callable[[str, int, str, "pd.Timestamp | None"], TrainingTable]


class RetrainCoordinator:
    """Turns trigger decisions into retrains and retrains into recorded outcomes.

    Args:
        registry: Versions, aliases and the audit trail (where this class's state is kept).
        trigger: The trigger policy's settings.
        retrain: Pipeline parameters and whether rows count only since the first signalling window.
        runner: The port to the CT pipeline; None records triggers without starting runs.
        assemble: Writes a retrain's training table (the monitor's: reference data + labelled traffic).
        metrics: Decisions and rollout outcomes are counted here.
        reports: The monitor's reports directory, named in the trigger's evidence.
    """

    def __init__(self, registry: ModelRegistry, trigger: TriggerConfig, retrain: RetrainConfig,
                 runner: Runner | None, assemble: Assemble, metrics: MonitorMetrics | None = None,
                 reports: Path | None = None) -> None:
        self.registry, self.trigger_config, self.retrain_config = registry, trigger, retrain
        self.runner, self.assemble = runner, assemble
        self.metrics = metrics or MonitorMetrics()
        self.reports = reports
        self._policies: dict[str, TriggerPolicy] = {}
        self._retrains: dict[str, list[Retrain]] = {}
        self._reference_versions: dict[str, int | None] = {}

    # ---- state ---------------------------------------------------------------------------------------

    def policy(self, model: str) -> TriggerPolicy:
        """The model's trigger policy, restored from its audit trail on first use."""
        if model not in self._policies:
            self.restore(model)
        return self._policies[model]

    def retrains(self, model: str) -> list[Retrain]:
        self.policy(model)
        return self._retrains[model]

    def restore(self, model: str, now: float | None = None) -> TrailState:
        """Rebuilds the model's trigger state and retrains from the audit trail; a retrain that was in
        flight goes to :meth:`recover`."""
        state = fold(model, self.registry.history(model))
        policy = TriggerPolicy(self.trigger_config)
        policy.last_trigger_at, policy.consecutive_failures = state.last_trigger_at, state.consecutive_failures
        self._policies[model], self._retrains[model] = policy, state.retrains[-KEEP_RETRAINS:]
        interrupted = state.in_flight
        if interrupted is not None:
            policy.in_flight = interrupted.key
            if interrupted not in self._retrains[model]:
                self._retrains[model].append(interrupted)
            self.recover(interrupted, time.time() if now is None else now)
        return state

    def recover(self, retrain: Retrain, now: float) -> None:
        """A retrain an earlier monitor process started and never saw end (it was killed or restarted).

        Its run is followed again when the runner can find it; otherwise it is judged once by what the
        registry shows — its version may have been registered and rolled out meanwhile — and recorded as
        interrupted (one ``retrain-finished`` entry; without a deployed version that is a failure).
        """
        if retrain.state == RetrainState.RUNNING and self.runner is not None and retrain.run_id \
                and self.runner.attach(retrain.key, retrain.run_id):
            log.info("monitor: following retrain %s (run %s) again after a restart", retrain.key, retrain.run_url)
            return
        where = f"run {retrain.run_url}" if retrain.run_url else "its run"
        self._judge(retrain, RunOutcome("FAILED", f"interrupted: the monitor restarted and {where} cannot be "
                                                  "followed"), now, interrupted=True)

    def remember_windows(self, model: str, production: int | None, signals: list[tuple[int, bool]]) -> None:
        """Puts the signals of windows closed before a restart back into the policy (measured against
        ``production``'s reference)."""
        policy = self.policy(model)
        self._reference_versions[model] = production
        for window_id, signal in signals:
            policy.signals.append((window_id, signal))

    # ---- decisions -----------------------------------------------------------------------------------

    def on_window(self, model: str, production: int | None, window: WindowRecord, recent: list[WindowRecord],
                  now: float) -> Decision | None:
        """Feeds one closed window to the policy and acts on its decision; None when the window could not be
        analysed (it does not count). ``recent`` are the model's earlier windows, whose signals may have
        changed as labels arrived."""
        policy = self.policy(model)
        if self._reference_versions.get(model) not in (None, production):
            policy.reset_signals()  # earlier windows were measured against the previous version's reference
        self._reference_versions[model] = production
        if window.error is not None or production is None:
            return None
        for earlier in recent:
            policy.update(earlier.id, earlier.signal)
        if policy.stopped:  # someone may have resumed it since (``driftloop monitor resume`` writes the trail)
            policy.consecutive_failures = fold(model, self.registry.history(model)).consecutive_failures
        decision = policy.observe(window.id, window.signal, now)
        self.metrics.decisions.labels(model, decision.action).inc()
        if decision.action == "in-flight":
            self.registry.record(model, "retrain-refused", actor=ACTOR, version=production, reason=decision.reason,
                                 evidence={"in_flight": policy.in_flight})
        elif decision.triggers:
            signalling = set(policy.signalling_windows())
            windows = [w for w in [*recent, window] if w.id in signalling]
            # The retrain's reason says what each window signalled (drift, or quality in its metric's terms).
            causes = "; ".join(f"window {w.id}: {w.signal_reason}" for w in windows if w.signal_reason)
            decision = Decision(decision.action, f"{decision.reason}: {causes}" if causes else decision.reason)
            self._trigger(model, production, decision, windows, now)
        return decision

    def _trigger(self, model: str, production: int, decision: Decision, windows: list[WindowRecord],
                 now: float) -> Retrain | None:
        key = idempotency_key(model, production, [w.id for w in windows])
        if any(r.key == key for r in self.retrains(model)):
            return None  # triggered before a restart
        retrain = Retrain(model, key, decision.reason, production, [w.id for w in windows], now)
        self._retrains[model] = [*self._retrains[model], retrain][-KEEP_RETRAINS:]
        self._policies[model].started(key, now)
        evidence = {"key": key, "triggered_at": now, "windows": [self._window_evidence(w) for w in windows]}
        # Float seconds hold a time to about a microsecond: a millisecond's margin keeps the window's first row.
        since = (pd.Timestamp(min(w.opened_at for w in windows), unit="s", tz="UTC").floor("ms")
                 if self.retrain_config.since_signal and windows else None)
        try:
            table = self.assemble(model, production, key, since)
        except Exception as exc:  # noqa: BLE001 - whatever blocks a retrain must end it, not wedge the policy
            if not isinstance(exc, DriftloopError):
                log.exception("monitor: assembling the data of retrain %s failed", key)
            reason = f"retrain {key} blocked: {exc}"
            self.registry.record(model, "retrain-blocked", actor=ACTOR, version=production, reason=reason,
                                 evidence=evidence | {"state": RetrainState.BLOCKED.value})
            self._end(retrain, RetrainState.BLOCKED, now, error=str(exc))
            return retrain
        retrain.data_uri = table.uri
        evidence |= {"data_uri": table.uri, "reference_rows": table.n_reference, "recent_rows": table.n_recent,
                     "recent_uri": table.recent_uri, "held_back_rows": table.n_holdback}
        if self.runner is None:
            self.registry.record(model, "retrain-triggered", actor=ACTOR, version=production,
                                 reason=decision.reason + " (runner 'none': not started)",
                                 evidence=evidence | {"state": RetrainState.TRIGGERED.value})
            retrain.finished_at = now
            self._policies[model].in_flight = None  # recorded, not run: neither a success nor a failure
            return retrain
        try:
            run = self.runner.start(self._params(model, production, key, table), key)
        except Exception as exc:  # noqa: BLE001 - a retrain that cannot start has failed; the policy counts it
            self.registry.record(model, "retrain-failed", actor=ACTOR, version=production,
                                 reason=f"retrain {key} could not start: {exc}",
                                 evidence=evidence | {"state": RetrainState.FAILED.value})
            self._end(retrain, RetrainState.FAILED, now, error=str(exc))
            return retrain
        self.registry.record(model, "retrain-triggered", actor=ACTOR, version=production, reason=decision.reason,
                             evidence=evidence | {"state": RetrainState.RUNNING.value, "run": run.url,
                                                  "run_id": run.run_id})
        retrain.state, retrain.run_id, retrain.run_url = RetrainState.RUNNING, run.run_id, run.url
        return retrain

    def _params(self, model: str, production: int, key: str, table: TrainingTable) -> CTParams:
        spec = DatasetSpec.from_json(self.registry.read_file(model, production, "spec.json").decode())
        return CTParams(data_uri=table.uri, target=spec.target, model_name=model, spec_json=spec.to_json(),
                        id_column=spec.id_column or "", timestamp_column=spec.timestamp_column or "",
                        recent_uri=table.recent_uri, triggered_by=f"drift:{key}", **self.retrain_config.pipeline_params)

    def _window_evidence(self, window: WindowRecord) -> dict:
        report = (str(self.reports / window.model / f"window-{window.id:06d}.html") if self.reports else None)
        return {"id": window.id, "drift_share": window.drift_share, "drifted_features": window.drifted_features,
                "prediction_drift": window.prediction_drift, "quality_dropped": window.quality_dropped,
                "quality_reason": window.quality_reason, "report": report}

    # ---- outcomes ------------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Polls running retrains and hands the ones waiting for approval to :meth:`expire_pending`."""
        for model in list(self._retrains):
            for retrain in list(self._retrains[model]):
                if retrain.state != RetrainState.RUNNING or self.runner is None:
                    continue
                try:
                    outcome = self.runner.poll(retrain.key)
                except DriftloopError as exc:
                    log.warning("monitor: cannot poll retrain %s: %s", retrain.key, exc)
                    continue
                if outcome is not None:
                    self._judge(retrain, outcome, now)
        pending = [r for rs in self._retrains.values() for r in rs if r.state == RetrainState.PENDING_APPROVAL]
        if pending:
            self.expire_pending(pending, now)

    def expire_pending(self, pending: list[Retrain], now: float) -> None:
        """Called each tick with the retrains whose version waits for approval: a wait past the policy's timeout
        rolls the canary back through the deployment interface (``approval-expired``); an approval or a rejection
        made meanwhile (``driftloop models approve | reject``) settles the retrain as what it became."""
        from driftloop.deploy.approval import deployment_for, expire_pending

        for retrain in pending:
            try:
                expire_pending(deployment_for(self.registry, retrain.model, ACTOR), retrain.model, now)
            except DriftloopError as exc:
                log.warning("monitor: cannot enforce the approval timeout of %s: %s", retrain.key, exc)
                continue
            outcome = rollout_outcome(self.registry, retrain.model, retrain.version)
            if outcome != PENDING_APPROVAL:
                state = _ROLLOUT_STATES.get(outcome, RetrainState.FAILED)
                self.metrics.rollouts.labels(retrain.model, outcome.replace("-", "_")).inc()
                self.settle(retrain, state, now, reason=f"retrain {retrain.key}: v{retrain.version} {outcome} "
                                                       "after waiting for approval")

    def settle(self, retrain: Retrain, state: RetrainState, now: float, *, reason: str = "",
               version: int | None = None, error: str | None = None, evidence: dict | None = None) -> None:
        """Records how a retrain ended (``retrain-finished``), then applies it: the record, the policy's
        failure count and, when that reaches the limit, ``retrain-stopped``."""
        version = retrain.version if version is None else version
        self.registry.record(retrain.model, "retrain-finished", actor=ACTOR, version=version,
                             reason=reason or f"retrain {retrain.key} ended {state.value}",
                             evidence={"key": retrain.key, "state": state.value, "run": retrain.run_url,
                                       "run_id": retrain.run_id, **(evidence or {})})
        retrain.version = version
        self._end(retrain, state, now, error=error)

    def _judge(self, retrain: Retrain, outcome: RunOutcome, now: float, interrupted: bool = False) -> None:
        """A run ended: the retrain is judged by how its version's rollout ended, not by "production moved"
        (on a cluster the run may end with the canary still serving its share, waiting for evidence or a
        person); a rolled-back canary is a failure, one still serving is not."""
        model, key = retrain.model, retrain.key
        version = next((v.version for v in reversed(self.registry.list_versions(model))
                        if v.lineage.get("triggered_by") == f"drift:{key}"), None)
        rollout = rollout_outcome(self.registry, model, version) if version is not None else None
        state = _ROLLOUT_STATES.get(rollout)
        if state is not None:
            self.metrics.rollouts.labels(model, rollout.replace("-", "_")).inc()
            error = outcome.error or None
        else:
            state = RetrainState.FAILED
            error = outcome.error or (f"v{version} was not deployed" if version is not None
                                      else "the run registered no version")
        reason = (f"retrain {key}: v{version} {state.value}" if version is not None
                  else f"retrain {key} ended {state.value}") + (f": {error}" if error else "")
        self.settle(retrain, state, now, reason=reason, version=version, error=error,
                    evidence={"interrupted": True} if interrupted else None)

    def _end(self, retrain: Retrain, state: RetrainState, now: float, error: str | None = None) -> None:
        retrain.state, retrain.finished_at, retrain.error = state, now, error
        policy = self.policy(retrain.model)
        was_stopped = policy.stopped
        if policy.in_flight in (None, retrain.key):
            policy.finished(state.succeeded)
        else:  # a late second ending (e.g. an approval timed out): counts, but another retrain is in flight
            in_flight = policy.in_flight
            policy.finished(state.succeeded)
            policy.in_flight = in_flight
        if policy.stopped and not was_stopped:
            self.registry.record(retrain.model, "retrain-stopped", actor=ACTOR,
                                 reason=f"retraining of {retrain.model} stopped after {policy.consecutive_failures} "
                                        "consecutive failed or rolled-back retrains")

    # ---- status --------------------------------------------------------------------------------------

    def status(self, model: str, limit: int) -> dict:
        if model not in self._policies:
            return {"trigger": None, "retrains": []}
        return {"trigger": self._policies[model].state(),
                "retrains": [r.to_dict() for r in self._retrains[model][-limit:]]}

    def models(self) -> list[str]:
        return sorted(self._policies)
