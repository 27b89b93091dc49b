"""The canary analysis's quality check: worse beyond the tolerance with confidence fails; noise does not."""

from __future__ import annotations

import pytest

from driftloop.deploy.local import LocalDeployment
from driftloop.registry import LocalRegistry
from driftloop.rollout import RolloutPolicy, judge_quality, run_rollout
from driftloop.rollout.metrics import RequestMetrics, ServingTarget, Window
from driftloop.rollout.quality import Quality

POLICY = RolloutPolicy(max_quality_drop=0.05, min_labels=30)


def q(accuracy: float, labelled: int) -> dict:
    return {"accuracy": accuracy, "labelled": labelled}


def test_a_clearly_worse_canary_fails() -> None:
    verdict, reason = judge_quality(q(0.60, 400), q(0.80, 4000), POLICY, final=False)
    assert verdict == "fail" and "worse by more than 0.050" in reason


def test_a_noisy_dip_on_few_labels_is_not_a_failure() -> None:
    # 31 labels: 0.516 vs 0.645 is well within the noise of a proportion (±0.15 at 95 %).
    verdict, reason = judge_quality(q(0.516, 31), q(0.645, 310), POLICY, final=False)
    assert verdict == "pass" and "not worse beyond" in reason


def test_the_same_dip_on_many_labels_fails() -> None:
    assert judge_quality(q(0.516, 3100), q(0.645, 31000), POLICY, final=False)[0] == "fail"


def test_too_few_labels_passes_early_steps_but_never_the_last() -> None:
    assert judge_quality(q(0.9, 10), q(0.9, 500), POLICY, final=False)[0] == "pass"
    verdict, reason = judge_quality(q(0.9, 10), q(0.9, 500), POLICY, final=True)
    assert verdict == "inconclusive" and "comparing needs 30 each" in reason
    assert judge_quality(None, q(0.9, 500), POLICY, final=True)[0] == "inconclusive"


# -- the engine judges the canary in the model's quality metric ----------------------------------------------


class _Healthy(RequestMetrics):
    """Every observation: both versions served plenty of requests, no errors, the same latency."""

    def mark(self) -> None:
        return None

    def since(self, mark, targets: list[ServingTarget]) -> dict[int, Window]:
        return {t.version: Window(requests=200, latency_sum=2.0, latency_count=200) for t in targets}


@pytest.fixture
def canary(tmp_path) -> LocalDeployment:
    """v1 in production, v2 its canary at 10 % (stand-in model files: nothing here loads them)."""
    registry = LocalRegistry(tmp_path / "registry")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.joblib").write_bytes(b"a stand-in")
    for _ in range(2):
        registry.register("m", tmp_path / "m", model_format="sklearn", lineage={}, metrics={}, attachments={},
                          actor="ci")
    registry.promote("m", 1, actor="ci")
    deployment = LocalDeployment(registry, "ci")
    deployment.roll_out("m", 2, 10)
    return deployment


@pytest.mark.parametrize(("metric", "canary_stats", "stable_stats", "outcome", "said"), [
    # Multi-class (and binary): accuracy 0.71 against 0.84 on 2,000 labels each is a drop well past 0.05.
    ("accuracy", {"accuracy": 0.71}, {"accuracy": 0.84}, "aborted",
     "canary accuracy 0.71 on 2000 labels, stable 0.84 on 2000: the canary is worse by more than 0.050 below stable"),
    # Regression: RMSE 13.0 against 10.0, each known to ±0.2, is 30 % above stable's; the limit is 5 %.
    ("rmse", {"rmse": 13.0, "rmse_stderr": 0.2}, {"rmse": 10.0, "rmse_stderr": 0.2}, "aborted",
     "canary rmse 13 on 2000 labels, stable 10 on 2000: the canary is worse by more than 5% above stable"),
    # Regression: 10.4 against 10.0 is 4 % above — within the limit — and a lower RMSE is better, not worse.
    ("rmse", {"rmse": 10.4, "rmse_stderr": 0.2}, {"rmse": 10.0, "rmse_stderr": 0.2}, "promoted",
     "quality: canary rmse 10.4 on 2000 labels, stable 10 on 2000 (not worse beyond 5% above stable"),
    ("rmse", {"rmse": 7.0, "rmse_stderr": 0.2}, {"rmse": 10.0, "rmse_stderr": 0.2}, "promoted", "not worse beyond"),
])
def test_the_canary_is_judged_in_the_models_quality_metric(canary, metric, canary_stats, stable_stats, outcome,
                                                           said) -> None:
    def read(since: str) -> Quality:
        return Quality(metric, {2: {"labelled": 2000, **canary_stats}, 1: {"labelled": 2000, **stable_stats}})

    result = run_rollout(canary, "m", _Healthy(), POLICY, sleep=lambda _: None, read_quality=read)
    assert result.outcome == outcome
    reasons = [r for step in result.steps for r in step.reasons]
    assert any(said in r for r in reasons), reasons
    if outcome == "aborted":
        assert said in canary.registry.history("m")[-1].reason and canary.registry.aliases("m") == {"production": 1}
