"""The trigger policy: debounce, cooldown, one retrain at a time, and a stop after K failures."""

from __future__ import annotations

import pytest

from driftloop.errors import ConfigError
from driftloop.monitor.config import TriggerConfig
from driftloop.monitor.trigger import TriggerPolicy

WINDOW = 60.0  # seconds between windows in these scenarios


def run(policy: TriggerPolicy, signals: list[bool], retrain_seconds: float = 0.0, succeed: bool = True) -> list[str]:
    """Feeds window signals one per minute; a started retrain finishes ``retrain_seconds`` later."""
    actions, finishes_at = [], None
    for i, signal in enumerate(signals):
        now = i * WINDOW
        if finishes_at is not None and now >= finishes_at:
            policy.finished(succeed)
            finishes_at = None
        decision = policy.observe(i, signal, now)
        actions.append(decision.action)
        if decision.triggers:
            policy.started(f"key-{i}", now)
            finishes_at = now + retrain_seconds
    return actions


def test_a_flapping_signal_never_triggers() -> None:
    policy = TriggerPolicy(TriggerConfig(m=3, n=5, cooldown_seconds=0))
    actions = run(policy, [True, False, False] * 20)
    assert "trigger" not in actions and set(actions) == {"quiet"}


def test_sustained_drift_triggers_exactly_once_per_cooldown() -> None:
    policy = TriggerPolicy(TriggerConfig(m=3, n=5, cooldown_seconds=30 * 60))
    actions = run(policy, [True] * 100)  # 100 minutes of drift, retrains finishing at once
    triggers = [i for i, a in enumerate(actions) if a == "trigger"]
    assert triggers == [2, 32, 62, 92]  # the third drifted window, then every 30 minutes
    assert actions[3:32] == ["cooldown"] * 29


def test_a_trigger_while_a_retrain_runs_is_refused() -> None:
    policy = TriggerPolicy(TriggerConfig(m=2, n=3, cooldown_seconds=0))
    actions = run(policy, [True] * 10, retrain_seconds=5 * WINDOW)
    assert actions[:8] == ["quiet", "trigger", "in-flight", "in-flight", "in-flight", "in-flight", "trigger",
                           "in-flight"]


def test_retraining_stops_after_k_consecutive_failures_and_says_so() -> None:
    policy = TriggerPolicy(TriggerConfig(m=1, n=1, cooldown_seconds=0, max_failures=3))
    actions = run(policy, [True] * 10, retrain_seconds=WINDOW / 2, succeed=False)
    assert actions.count("trigger") == 3 and actions[3:] == ["stopped"] * 7
    assert policy.stopped and policy.state()["consecutive_failures"] == 3
    decision = policy.observe(99, True, 99 * WINDOW)
    assert "stopped after 3 consecutive failed" in decision.reason
    policy.resume()
    assert policy.observe(100, True, 100 * WINDOW).triggers


def test_a_success_resets_the_failure_count() -> None:
    policy = TriggerPolicy(TriggerConfig(m=1, n=1, cooldown_seconds=0, max_failures=2))
    for succeeded in (False, True, False):
        assert policy.observe(0, True, 0).triggers
        policy.started("k", 0)
        policy.finished(succeeded)
    assert not policy.stopped and policy.consecutive_failures == 1


def test_labels_arriving_late_can_turn_a_window_into_a_signal() -> None:
    policy = TriggerPolicy(TriggerConfig(m=2, n=3, cooldown_seconds=0))
    assert policy.observe(1, False, 0).action == "quiet"
    policy.update(1, True)  # its realised accuracy dropped once labels arrived
    assert policy.observe(2, True, WINDOW).triggers


@pytest.mark.parametrize("values", [{"m": 4, "n": 3}, {"m": 0, "n": 3}, {"max_failures": 0}])
def test_impossible_policies_are_refused(values) -> None:
    with pytest.raises(ConfigError):
        TriggerConfig(**values)
