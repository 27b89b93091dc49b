"""Automated canary analysis, in the manner of Flagger and Argo Rollouts, over either deployment backend.

The canary's traffic steps up (e.g. 10 → 25 → 50 → 100 %) through the deployment port — registry aliases
the local gateway follows, or an InferenceService — and each step waits for the serving layer to confirm
it. The analysis then observes an interval, reads what every version did from the metrics port (the
gateway's ``/metrics`` or Prometheus) and compares the canary with stable: error rate and latency. With a
drift monitor to ask, it also compares realised quality on labelled traffic since the rollout began, in the
model's quality metric (accuracy, or RMSE for regression); the last step needs that evidence. A step with fewer canary requests than the minimum is inconclusive — never a
pass — and is retried a bounded number of times. A failed check aborts: stable takes 100 % again. Passing the
last step promotes the canary — or, when the model's approval policy requires it, leaves the canary at its
share waiting for a person's decision (the deployment port decides which). Every decision and its evidence
goes to the registry's audit trail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from driftloop.errors import RegistryError
from driftloop.registry import CANARY
from driftloop.rollout.metrics import RequestMetrics, Window
from driftloop.rollout.policy import RolloutPolicy
from driftloop.rollout.quality import Quality, judge_quality

if TYPE_CHECKING:  # the deployment port imports the rollout's metrics port; only the engine needs both
    from driftloop.deploy.base import Deployment


@dataclass
class StepResult:
    percent: int
    verdict: str  # "pass" | "fail" | "inconclusive"
    reasons: list[str]
    canary: dict
    stable: dict


@dataclass
class RolloutResult:
    model: str
    canary_version: int
    stable_version: int
    outcome: str  # "promoted" | "aborted" | "pending-approval" (passed; the canary waits for a person)
    reason: str
    steps: list[StepResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def judge(canary: Window, stable: Window, policy: RolloutPolicy) -> tuple[str, list[str]]:
    """One observation's verdict and its reasons."""
    if canary.requests < policy.min_requests:
        return "inconclusive", [f"canary served {canary.requests} requests; a step needs {policy.min_requests}"]
    reasons, failed = [], False
    if canary.error_rate > policy.max_error_rate:
        failed = True
        reasons.append(f"canary error rate {canary.error_rate:.2%} is above the limit {policy.max_error_rate:.2%}")
    if canary.error_rate > stable.error_rate + policy.max_error_rate_increase:
        failed = True
        reasons.append(f"canary error rate {canary.error_rate:.2%} exceeds stable's {stable.error_rate:.2%} by more "
                       f"than {policy.max_error_rate_increase:.2%}")
    if canary.mean_latency is not None and stable.mean_latency:
        ratio = canary.mean_latency / stable.mean_latency
        slower = canary.mean_latency - stable.mean_latency
        if ratio > policy.max_latency_ratio and slower > policy.latency_tolerance:
            failed = True
            reasons.append(f"canary mean latency {canary.mean_latency * 1000:.1f} ms is {ratio:.2f}× stable's "
                           f"(limit {policy.max_latency_ratio:.2f}×) and {slower * 1000:.1f} ms more (tolerance "
                           f"{policy.latency_tolerance * 1000:.1f} ms)")
    if not failed:
        reasons.append(f"canary: {canary.requests} requests, error rate {canary.error_rate:.2%}; "
                       f"stable error rate {stable.error_rate:.2%}")
    return ("fail" if failed else "pass"), reasons


def run_rollout(
    deployment: Deployment,
    name: str,
    metrics: RequestMetrics,
    policy: RolloutPolicy = RolloutPolicy(),
    sleep: Callable[[float], None] = time.sleep,
    on_step: Callable[[StepResult], None] | None = None,
    read_quality: Callable[[str], Quality] | None = None,
) -> RolloutResult:
    """Walks the canary of ``name`` through the policy's steps; promotes it (or holds it for approval) or
    aborts.

    Args:
        deployment: Where the versions serve (moves traffic, confirms it, records it).
        metrics: What each version did during a step (the gateway's /metrics or Prometheus).
        read_quality: Optional; realised quality per version since an ISO time (see
            :func:`~driftloop.rollout.quality.quality_reader`).
    """
    traffic = deployment.observe(name)
    aliases = deployment.registry.aliases(name)
    if CANARY not in aliases or traffic is None or traffic.canary is None:
        raise RegistryError(f"model '{name}' needs a production version and a serving canary to roll out")
    result = RolloutResult(name, traffic.canary.version, traffic.stable.version, "aborted", "")
    try:
        return _walk(deployment, name, metrics, policy, sleep, on_step, result, read_quality)
    except BaseException as exc:
        # Whatever stopped the analysis (unreachable metrics, Ctrl-C), the canary must not be left
        # half-rolled-out with nobody watching it.
        if deployment.registry.aliases(name).get(CANARY) == result.canary_version:
            _abort(deployment, name, result, f"analysis stopped: {type(exc).__name__}: {exc}")
        raise


def _walk(deployment: Deployment, name: str, metrics: RequestMetrics, policy: RolloutPolicy, sleep, on_step,
          result: RolloutResult, read_quality: Callable[[str], Quality] | None) -> RolloutResult:
    canary, stable = result.canary_version, result.stable_version
    inconclusive = failures = 0
    started = datetime.now(UTC).isoformat()
    for percent in policy.steps[:-1]:
        traffic = deployment.set_traffic(name, percent, reason=f"rollout step: canary at {percent}%")
        while True:
            _check_still_canary(deployment, name, canary)
            mark = metrics.mark()
            sleep(policy.interval)
            windows = metrics.since(mark, traffic.targets())
            canary_window, stable_window = windows.get(canary, Window()), windows.get(stable, Window())
            verdict, reasons = judge(canary_window, stable_window, policy)
            if read_quality is not None and verdict == "pass":
                quality = read_quality(started)
                q_verdict, q_reason = judge_quality(quality.versions.get(canary), quality.versions.get(stable), policy,
                                                    final=percent == policy.steps[-2], metric=quality.metric)
                verdict, reasons = (verdict if q_verdict == "pass" else q_verdict), [*reasons, q_reason]
            step = StepResult(percent, verdict, reasons, asdict(canary_window), asdict(stable_window))
            result.steps.append(step)
            deployment.record(name, "rollout-analysis", f"{percent}%: {verdict}: " + "; ".join(reasons),
                              version=canary, evidence=asdict(step) | {"served": traffic.describe()})
            if on_step:
                on_step(step)
            if verdict == "pass":
                break
            if verdict == "fail":
                failures += 1
                if failures >= policy.max_failures:
                    return _abort(deployment, name, result, "; ".join(reasons))
            else:
                inconclusive += 1
                if inconclusive > policy.max_inconclusive:
                    return _abort(deployment, name, result,
                                  f"too little canary traffic: {inconclusive} inconclusive observations")
    _check_still_canary(deployment, name, canary)
    result.outcome = deployment.conclude(name, reason="canary passed every rollout step",
                                         evidence={"steps": [asdict(s) for s in result.steps]})
    result.reason = f"v{canary} passed {len(policy.steps) - 1} steps" + (
        "" if result.outcome == "promoted" else "; it waits for approval at its current share")
    return result


def _check_still_canary(deployment: Deployment, name: str, canary: int) -> None:
    if deployment.registry.aliases(name).get(CANARY) != canary:
        raise RegistryError(f"the canary of '{name}' changed during the rollout; stopping")


def _abort(deployment: Deployment, name: str, result: RolloutResult, reason: str) -> RolloutResult:
    deployment.abort(name, reason, evidence={"steps": [asdict(s) for s in result.steps]})
    result.outcome, result.reason = "aborted", reason
    return result
