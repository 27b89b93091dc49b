"""The canary's realised quality: the drift monitor's labelled traffic per version, and the judgement on it."""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from driftloop.errors import ConfigError, UnavailableError
from driftloop.rollout.policy import RolloutPolicy
from driftloop.tasks import BINARY, QUALITY_METRIC, drop_text, higher_is_better, quality_drop

Z_95_ONE_SIDED = 1.645
# The monitor gives an error metric's standard error per version under "<metric>_stderr" (monitor/quality.py).
STDERR_SUFFIX = "_stderr"


@dataclass(frozen=True)
class Quality:
    """Realised quality per version since a time, as the monitor's ``/quality`` gives it.

    Attributes:
        metric: The model's quality metric (``tasks.QUALITY_METRIC``): accuracy, or RMSE for regression.
        versions: {version: {"labelled": n, <metric>: value, ...}}.
    """

    metric: str
    versions: dict[int, dict]


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
            raise UnavailableError(f"cannot read realised quality from the monitor at {url}: "
                              f"{getattr(exc, 'reason', exc)}") from None
        return Quality(body.get("metric") or QUALITY_METRIC[BINARY],
                       {int(v): q for v, q in (body.get("versions") or {}).items()})

    return read


def judge_quality(canary: dict | None, stable: dict | None, policy: RolloutPolicy, final: bool,
                  metric: str = QUALITY_METRIC[BINARY]) -> tuple[str, str]:
    """Compares realised quality in ``metric``. Returns ("pass" | "fail" | "inconclusive", reason).

    The canary fails only when it is worse than stable by more than ``max_quality_drop`` with 95 % confidence
    (one-sided, normal approximation), "worse" as :func:`driftloop.tasks.quality_drop` says: an absolute drop
    of accuracy, a relative rise of RMSE. A few dozen labels make either noisy (accuracy ±0.09 at 30 labels),
    so the margin is the standard error of the difference: of two proportions for accuracy, of two RMSEs (the
    monitor's ``rmse_stderr``) for RMSE. Without enough labels on both sides the comparison is "inconclusive" on
    the final step (a canary is not promoted blind when quality was asked for) and "pass" before it (labels lag
    behind traffic).
    """
    c_n, s_n = (canary or {}).get("labelled", 0), (stable or {}).get("labelled", 0)
    if c_n < policy.min_labels or s_n < policy.min_labels:
        reason = (f"quality: {c_n} canary and {s_n} stable labelled rows so far; comparing needs "
                  f"{policy.min_labels} each")
        return ("inconclusive" if final else "pass"), reason
    c_q, s_q = canary[metric], stable[metric]
    worse = quality_drop(metric, s_q, c_q)
    margin = Z_95_ONE_SIDED * math.hypot(_stderr(metric, canary), _stderr(metric, stable))
    if not higher_is_better(metric):  # an error metric's drop is relative to stable's value; so is its margin
        margin = margin / s_q if s_q > 0 else math.inf
    tolerance = drop_text(metric, policy.max_quality_drop)
    observed = f"canary {metric} {c_q:.4g} on {c_n} labels, stable {s_q:.4g} on {s_n}"
    if worse - margin > policy.max_quality_drop:
        return "fail", (f"{observed}: the canary is worse by more than {tolerance} stable "
                        f"(95 % confidence, ±{_amount(metric, margin)})")
    return "pass", f"quality: {observed} (not worse beyond {tolerance} stable ± {_amount(metric, margin)})"


def _stderr(metric: str, stats: dict) -> float:
    """The standard error of one version's ``metric``: of a proportion for a score, the monitor's for RMSE."""
    value, n = stats[metric], stats["labelled"]
    if higher_is_better(metric):
        return math.sqrt(value * (1 - value) / n)
    return stats.get(metric + STDERR_SUFFIX, value / math.sqrt(2 * n))  # normal errors when the monitor gave none


def _amount(metric: str, value: float) -> str:
    return f"{value:.3f}" if higher_is_better(metric) else f"{value:.0%}"
