"""The canary's realised quality: the drift monitor's labelled traffic per version, and the judgement on it."""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from collections.abc import Callable

from driftloop.errors import ConfigError, UnavailableError
from driftloop.rollout.policy import RolloutPolicy

Z_95_ONE_SIDED = 1.645
# Realised quality per version since a time: {version: {"labelled": n, "accuracy": x}}.
Quality = dict[int, dict]


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


