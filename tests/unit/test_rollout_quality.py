"""The canary analysis's quality check: worse beyond the tolerance with confidence fails; noise does not."""

from __future__ import annotations

from driftloop.rollout import RolloutPolicy, judge_quality

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
