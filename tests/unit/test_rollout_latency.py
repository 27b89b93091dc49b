"""The canary analysis's latency check: a canary materially slower than stable fails; jitter at sub-millisecond
means does not."""

from __future__ import annotations

import pytest

from driftloop.errors import ConfigError
from driftloop.rollout import RolloutPolicy
from driftloop.rollout.engine import judge
from driftloop.rollout.metrics import Window


def served(mean_ms: float, requests: int = 100) -> Window:
    return Window(requests=requests, latency_sum=mean_ms / 1000 * requests, latency_count=requests)


@pytest.mark.parametrize(("canary_ms", "stable_ms", "verdict"), [
    (3.3, 0.5, "pass"),  # 6.6× but 2.8 ms: one preempted request among a step's few dozen on a fast path
    (30.0, 5.0, "fail"),  # 6× and 25 ms: callers notice
    (7.0, 1.0, "fail"),  # 7× and 6 ms: beyond the 5 ms tolerance
    (9.0, 6.0, "pass"),  # 3 ms more but 1.5× only, the limit
])
def test_a_canary_fails_for_latency_only_when_it_is_slower_by_both_the_ratio_and_the_tolerance(
        canary_ms, stable_ms, verdict) -> None:
    outcome, reasons = judge(served(canary_ms), served(stable_ms), RolloutPolicy())
    assert outcome == verdict, reasons
    if verdict == "fail":
        assert "ms more (tolerance 5.0 ms)" in reasons[0]


def test_the_tolerance_is_a_policy_setting() -> None:
    strict = RolloutPolicy.from_dict({"latency_tolerance": 0})
    assert judge(served(3.3), served(0.5), strict)[0] == "fail"
    with pytest.raises(ConfigError, match="latency_tolerance has a bad value"):
        RolloutPolicy.from_dict({"latency_tolerance": "fast"})
    with pytest.raises(ConfigError, match="latency tolerance must be >= 0 seconds, got -0.001"):
        RolloutPolicy.from_dict({"latency_tolerance": -0.001})
