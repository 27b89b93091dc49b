"""Pipeline steps as the KFP launcher runs them: a retried register publishes once; no NaN reaches KFP."""

from __future__ import annotations

import json
import math
from pathlib import Path

from driftloop import steps
from driftloop.evaluation import Evaluation, GateDecision
from driftloop.registry import LocalRegistry
from driftloop.training import save_model


def _outcome(lr_evaluation: Evaluation) -> str:
    decision = GateDecision(True, ["first version"], "roc_auc", lr_evaluation.metrics["roc_auc"], None, None, {})
    return json.dumps({"evaluation": lr_evaluation.to_dict(), "decision": decision.to_dict()})


def test_a_retried_register_returns_the_version_the_first_attempt_published(
        tmp_path: Path, trained_lr, validated, churn_spec, lr_evaluation) -> None:
    save_model(trained_lr.model, tmp_path / "model")
    validated.frame.to_parquet(tmp_path / "data.parquet", index=False)
    registry_uri = str(tmp_path / "registry")
    args = (str(tmp_path / "model"), str(tmp_path / "data.parquet"), churn_spec.to_json(), _outcome(lr_evaluation),
            registry_uri, "churn")
    first, _ = steps.register(*args, {"run_id": "run-7"})
    again, card = steps.register(*args, {"run_id": "run-7"})
    other, _ = steps.register(*args, {"run_id": "run-8"})
    assert (first.version, again.version, other.version) == (1, 1, 2)
    assert card.startswith("# Model card: churn v1")
    assert [e.action for e in LocalRegistry(registry_uri).history("churn")] == ["register", "register"]


def test_metrics_that_are_not_finite_are_left_out_of_the_kfp_artifacts(lr_evaluation: Evaluation) -> None:
    one_class = Evaluation({**lr_evaluation.metrics, "roc_auc": math.nan}, lr_evaluation.confusion_matrix,
                           {"fpr": [0.0, math.nan], "tpr": [0.0, 1.0], "threshold": [1.0, 0.5]})
    decision = GateDecision(False, [], "roc_auc", math.nan, {"roc_auc": math.inf, "accuracy": 0.8}, 1, {})
    scalars, roc = steps.dashboard_metrics(steps.EvaluateResult(one_class, decision, None))
    assert "roc_auc" not in scalars and "champion_roc_auc" not in scalars
    assert scalars["accuracy"] == lr_evaluation.metrics["accuracy"] and scalars["champion_accuracy"] == 0.8
    assert roc is None
    json.dumps(scalars, allow_nan=False)  # what KFP's launcher will parse
