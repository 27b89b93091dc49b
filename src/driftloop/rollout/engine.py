"""Automated canary analysis, in the manner of Flagger and Argo Rollouts.

The canary's traffic steps up (e.g. 10 → 25 → 50 → 100 %). At each step the analysis waits an
interval, reads the gateway's Prometheus metrics, and compares the canary with the stable version
over that interval: error rate and latency. With a drift monitor to ask, it also compares realised
quality on labelled traffic since the rollout began; the last step needs that evidence. A step with fewer
canary requests than the minimum is inconclusive — never a pass — and is retried a bounded number
of times. A failed check aborts: the canary is removed and stable takes 100 % again. Passing the
last step promotes the canary. Every decision and its evidence goes to the registry's audit trail.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from driftloop.errors import ConfigError, RegistryError
from driftloop.registry import CANARY, PRODUCTION, ModelRegistry
from driftloop.rollout.metrics import Window


@dataclass(frozen=True)
class RolloutPolicy:
    """How a canary earns its promotion.

    Attributes:
        steps: Canary traffic percentages, ascending, ending at 100.
        interval: Seconds each step is observed.
        min_requests: Canary requests a step needs to be judged at all.
        max_error_rate: Highest canary error rate (server errors / requests) a step may show.
        max_error_rate_increase: How much the canary's error rate may exceed stable's.
        max_latency_ratio: Highest ratio of canary to stable mean latency.
        max_inconclusive: Inconclusive observations allowed in total before the rollout aborts.
        max_failures: Failed checks that abort the rollout.
        max_quality_drop: How far the canary's realised accuracy may fall below stable's (labels needed).
        min_labels: Labelled rows each side needs before quality is compared.
    """

    steps: tuple[int, ...] = (10, 25, 50, 100)
    interval: float = 30.0
    min_requests: int = 50
    max_error_rate: float = 0.01
    max_error_rate_increase: float = 0.005
    max_latency_ratio: float = 1.5
    max_inconclusive: int = 3
    max_failures: int = 1
    max_quality_drop: float = 0.05
    min_labels: int = 30

    @classmethod
    def from_dict(cls, values: dict) -> RolloutPolicy:
        """A policy from overrides such as a pipeline's ``rollout_policy`` parameter.

        KFP hands dict parameters over as JSON, where integers may come back as floats; they are
        restored here, and unknown keys are refused rather than ignored.
        """
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown rollout policy setting(s): {', '.join(unknown)}; known: {', '.join(known)}")
        converted = {}
        for key, value in values.items():
            try:
                if key == "steps":
                    converted[key] = tuple(int(v) for v in value)
                elif known[key] == "int":
                    converted[key] = int(value)
                else:
                    converted[key] = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"rollout policy setting {key} has a bad value: {value!r}") from None
        return cls(**converted)

    def __post_init__(self) -> None:
        if (len(self.steps) < 2 or list(self.steps) != sorted(set(self.steps)) or self.steps[-1] != 100
                or self.steps[0] <= 0):
            raise ConfigError(f"rollout steps must rise from above 0 to 100 with at least one step before 100, "
                              f"got {list(self.steps)}")
        if self.interval <= 0 or self.min_requests < 1:
            raise ConfigError("rollout interval must be > 0 and min requests >= 1")


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
    outcome: str  # "promoted" | "aborted"
    reason: str
    steps: list[StepResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# Counters per (version, outcome) and latency sum/count per version, for one model.
Snapshot = dict[tuple[str, str], float]
Z_95_ONE_SIDED = 1.645
# Realised quality per version since a time: {version: {"labelled": n, "accuracy": x}}.
Quality = dict[int, dict]


def scrape_gateway(url: str, model: str) -> Snapshot:
    """Reads the driftloop counters of ``model`` from a gateway's /metrics."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"gateway URL must start with http:// or https://, got '{url}'")
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - an operator-given http URL
            text = response.read().decode()
    except (OSError, ValueError) as exc:  # URLError, refused connections and timeouts are OSErrors
        raise ConfigError(f"cannot read the gateway's metrics at {url}: {getattr(exc, 'reason', exc)}") from None
    return parse_metrics(text, model)


def parse_metrics(text: str, model: str) -> Snapshot:
    snapshot: Snapshot = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model") != model:
                continue
            version = labels.get("version", "")
            if sample.name == "driftloop_requests_total":
                snapshot[(version, labels["outcome"])] = sample.value
            elif sample.name == "driftloop_request_latency_seconds_sum":
                snapshot[(version, "latency_sum")] = sample.value
            elif sample.name == "driftloop_request_latency_seconds_count":
                snapshot[(version, "latency_count")] = sample.value
    return snapshot


def quality_reader(monitor_url: str, model: str) -> Callable[[str], Quality]:
    """A function asking the drift monitor for each version's realised quality since a time."""
    if not monitor_url.startswith(("http://", "https://")):
        raise ConfigError(f"monitor URL must start with http:// or https://, got '{monitor_url}'")

    def read(since: str) -> Quality:
        url = (f"{monitor_url.rstrip('/')}/quality/{urllib.parse.quote(model)}?"
               + urllib.parse.urlencode({"since": since}))
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - an operator-given http URL
                body = json.loads(response.read())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read realised quality from the monitor at {url}: "
                              f"{getattr(exc, 'reason', exc)}") from None
        return {int(v): q for v, q in (body.get("versions") or {}).items()}

    return read


def judge_quality(canary: dict | None, stable: dict | None, policy: RolloutPolicy,
                  final: bool) -> tuple[str, str]:
    """Compares realised accuracy. Returns ("pass" | "fail" | "inconclusive", reason).

    A few dozen labels make accuracy noisy (±0.09 at 30 labels), so the canary fails only when it is
    worse than stable by more than ``max_quality_drop`` with 95 % confidence (one-sided, normal
    approximation of the difference of two proportions). Without enough labels on both sides the
    comparison is "inconclusive" on the final step (a canary is not promoted blind when quality was asked
    for) and "pass" before it (labels lag behind traffic).
    """
    c_n, s_n = (canary or {}).get("labelled", 0), (stable or {}).get("labelled", 0)
    if c_n < policy.min_labels or s_n < policy.min_labels:
        reason = (f"quality: {c_n} canary and {s_n} stable labelled rows so far; comparing needs "
                  f"{policy.min_labels} each")
        return ("inconclusive" if final else "pass"), reason
    c_acc, s_acc = canary["accuracy"], stable["accuracy"]
    margin = Z_95_ONE_SIDED * math.sqrt(c_acc * (1 - c_acc) / c_n + s_acc * (1 - s_acc) / s_n)
    observed = f"canary accuracy {c_acc:.3f} on {c_n} labels, stable {s_acc:.3f} on {s_n}"
    if c_acc - s_acc + margin < -policy.max_quality_drop:
        return "fail", (f"{observed}: the canary is worse by more than {policy.max_quality_drop:.3f} "
                        f"(95 % confidence, ±{margin:.3f})")
    return "pass", f"quality: {observed} (not worse beyond {policy.max_quality_drop:.3f} ± {margin:.3f})"


def window(before: Snapshot, after: Snapshot, version: int) -> Window:
    """The difference of two snapshots for one version."""
    v = str(version)

    def delta(kind: str) -> float:
        return after.get((v, kind), 0.0) - before.get((v, kind), 0.0)

    ok, errors = delta("ok"), delta("error")
    return Window(int(ok + errors), int(errors), delta("latency_sum"), int(delta("latency_count")))


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
        if ratio > policy.max_latency_ratio:
            failed = True
            reasons.append(f"canary mean latency {canary.mean_latency * 1000:.1f} ms is {ratio:.2f}× stable's "
                           f"(limit {policy.max_latency_ratio:.2f}×)")
    if not failed:
        reasons.append(f"canary: {canary.requests} requests, error rate {canary.error_rate:.2%}; "
                       f"stable error rate {stable.error_rate:.2%}")
    return ("fail" if failed else "pass"), reasons


def run_rollout(
    registry: ModelRegistry,
    name: str,
    read_metrics: Callable[[], Snapshot],
    policy: RolloutPolicy = RolloutPolicy(),
    actor: str = "rollout",
    sleep: Callable[[float], None] = time.sleep,
    on_step: Callable[[StepResult], None] | None = None,
    read_quality: Callable[[str], Quality] | None = None,
) -> RolloutResult:
    """Walks the canary of ``name`` through the policy's steps; promotes it or aborts.

    Args:
        read_metrics: Reads the gateway's counters (see :func:`scrape_gateway`).
        read_quality: Optional; realised quality per version since an ISO time (see :func:`quality_reader`).
    """
    aliases = registry.aliases(name)
    if CANARY not in aliases or PRODUCTION not in aliases:
        raise RegistryError(f"model '{name}' needs a production version and a canary to roll out")
    canary, stable = aliases[CANARY], aliases[PRODUCTION]
    result = RolloutResult(name, canary, stable, "aborted", "")
    try:
        return _walk(registry, name, read_metrics, policy, actor, sleep, on_step, result, read_quality)
    except BaseException as exc:
        # Whatever stopped the analysis (an unreachable gateway, Ctrl-C), the canary must not be left
        # half-rolled-out with nobody watching it.
        if registry.aliases(name).get(CANARY) == canary:
            _abort(registry, name, result, actor, f"analysis stopped: {type(exc).__name__}: {exc}")
        raise


def _walk(registry, name, read_metrics, policy, actor, sleep, on_step, result: RolloutResult,
          read_quality: Callable[[str], Quality] | None = None) -> RolloutResult:
    canary, stable = result.canary_version, result.stable_version
    inconclusive = failures = 0
    started = datetime.now(UTC).isoformat()
    for percent in policy.steps[:-1]:
        registry.set_canary_traffic(name, percent, actor=actor, reason=f"rollout step: canary at {percent}%",
                                    action="rollout-step")
        while True:
            _check_still_canary(registry, name, canary)
            before = read_metrics()
            sleep(policy.interval)
            after = read_metrics()
            verdict, reasons = judge(window(before, after, canary), window(before, after, stable), policy)
            if read_quality is not None and verdict == "pass":
                quality = read_quality(started)
                q_verdict, q_reason = judge_quality(quality.get(canary), quality.get(stable), policy,
                                                    final=percent == policy.steps[-2])
                verdict, reasons = (verdict if q_verdict == "pass" else q_verdict), [*reasons, q_reason]
            step = StepResult(percent, verdict, reasons, asdict(window(before, after, canary)),
                              asdict(window(before, after, stable)))
            result.steps.append(step)
            registry.record(name, "rollout-analysis", actor=actor, version=canary,
                            reason=f"{percent}%: {verdict}: " + "; ".join(reasons), evidence=asdict(step))
            if on_step:
                on_step(step)
            if verdict == "pass":
                break
            if verdict == "fail":
                failures += 1
                if failures >= policy.max_failures:
                    return _abort(registry, name, result, actor, "; ".join(reasons))
            else:
                inconclusive += 1
                if inconclusive > policy.max_inconclusive:
                    return _abort(registry, name, result, actor,
                                  f"too little canary traffic: {inconclusive} inconclusive observations")
    _check_still_canary(registry, name, canary)
    registry.promote(name, canary, actor=actor, reason="canary passed every rollout step",
                     evidence={"steps": [asdict(s) for s in result.steps]}, expect_canary=canary)
    result.outcome, result.reason = "promoted", f"v{canary} passed {len(policy.steps) - 1} steps"
    return result


def _check_still_canary(registry: ModelRegistry, name: str, canary: int) -> None:
    if registry.aliases(name).get(CANARY) != canary:
        raise RegistryError(f"the canary of '{name}' changed during the rollout; stopping")


def _abort(registry: ModelRegistry, name: str, result: RolloutResult, actor: str, reason: str) -> RolloutResult:
    registry.remove_alias(name, CANARY, actor=actor, action="rollout-abort",
                          reason=f"canary v{result.canary_version} aborted: {reason}",
                          evidence={"steps": [asdict(s) for s in result.steps]}, expect=result.canary_version)
    result.outcome, result.reason = "aborted", reason
    return result
