"""Pipeline steps as the KFP launcher runs them: a retried register publishes once; every copy of a card and
report names its version; a failed validation leaves its report; no NaN reaches KFP."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from driftloop import steps
from driftloop.errors import DataValidationError
from driftloop.evaluation import Evaluation, GateDecision
from driftloop.registry import LocalRegistry
from driftloop.training import save_model
from tests.report_pages import ReportPage


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
    first, first_card = steps.register(*args, {"run_id": "run-7"})
    again, card = steps.register(*args, {"run_id": "run-7"})
    other, _ = steps.register(*args, {"run_id": "run-8"})
    assert (first.version, again.version, other.version) == (1, 1, 2)
    assert card == first_card and card.startswith("# Model card: churn v1\n")
    assert [e.action for e in LocalRegistry(registry_uri).history("churn")] == ["register", "register"]


def test_every_copy_of_the_card_and_the_report_names_the_version(
        tmp_path: Path, trained_lr, validated, churn_spec, lr_evaluation) -> None:
    save_model(trained_lr.model, tmp_path / "model")
    validated.frame.to_parquet(tmp_path / "data.parquet", index=False)
    registry_uri = str(tmp_path / "registry")
    # Another writer took number 2 and had not finished (its directory is there, its version.json is not): the
    # next registration must not reuse the number, and its card and report must say the number it got.
    steps.register(str(tmp_path / "model"), str(tmp_path / "data.parquet"), churn_spec.to_json(),
                   _outcome(lr_evaluation), registry_uri, "churn", {"run_id": "run-1"})
    stray = Path(registry_uri) / "models" / "churn" / "versions" / "2"
    stray.mkdir(parents=True)
    (stray / "model.joblib").write_bytes(b"half-written")

    version, card = steps.register(str(tmp_path / "model"), str(tmp_path / "data.parquet"), churn_spec.to_json(),
                                   _outcome(lr_evaluation), registry_uri, "churn",
                                   {"run_id": "run-2", "intended_use": "Weekly retention call list."})

    registry = LocalRegistry(registry_uri)
    assert version.version == 3 and [v.version for v in registry.list_versions("churn")] == [1, 3]
    stored = registry.read_file("churn", 3, "model_card.md").decode()
    assert stored == card and card.startswith("# Model card: churn v3\n") and "candidate" not in card
    assert "Weekly retention call list." in card and "Started by hand" in card
    report = ReportPage(registry.read_file("churn", 3, "evaluation.html").decode())
    assert report.headings[0] == ("h1", "Evaluation of churn v3") and report.facts["Version"] == "v3"
    assert registry.get_version("churn", 3).lineage["intended_use"] == "Weekly retention call list."


def test_a_failed_validation_writes_its_report_then_raises(tmp_path: Path, churn_frame) -> None:
    churn_frame["income"] = churn_frame["income"].astype(object)
    churn_frame.loc[6, "income"] = "unknown"
    churn_frame.to_csv(tmp_path / "churn.csv", index=False)
    report_path = tmp_path / "out" / "report.html"

    with pytest.raises(DataValidationError, match="column 'income': text in a numeric column"):
        steps.load_and_validate(str(tmp_path / "churn.csv"), "churned", str(tmp_path / "registry"), "churn",
                                str(tmp_path / "out" / "data.parquet"), str(report_path))

    page = ReportPage(report_path.read_text())
    assert page.title == "Data validation: churn.csv"
    assert page.banner.kind == "fail" and "text in a numeric column" in page.banner.detail
    assert not (tmp_path / "out" / "data.parquet").exists()  # nothing for the next step


def test_metrics_that_are_not_finite_are_left_out_of_the_kfp_artifacts(lr_evaluation: Evaluation) -> None:
    one_class = Evaluation({**lr_evaluation.metrics, "roc_auc": math.nan}, lr_evaluation.confusion_matrix,
                           {"fpr": [0.0, math.nan], "tpr": [0.0, 1.0], "threshold": [1.0, 0.5]})
    decision = GateDecision(False, [], "roc_auc", math.nan, {"roc_auc": math.inf, "accuracy": 0.8}, 1, {})
    scalars, roc = steps.dashboard_metrics(steps.EvaluateResult(one_class, decision, None))
    assert "roc_auc" not in scalars and "champion_roc_auc" not in scalars
    assert scalars["accuracy"] == lr_evaluation.metrics["accuracy"] and scalars["champion_accuracy"] == 0.8
    assert roc is None
    json.dumps(scalars, allow_nan=False)  # what KFP's launcher will parse
