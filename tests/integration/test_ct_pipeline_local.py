"""The whole CT pipeline under kfp.local, as `driftloop run` runs it, on small data.

Run 1 reads its data over S3 from a loopback server and becomes production; run 2 — a drift retrain, as the
monitor would start it — trains on drifted data, beats the champion on the same holdout and goes out as a
canary; run 3's gate is set out of reach, so nothing is registered and nothing moves; run 4's data fails
validation. Every report a person opens is read back from these runs.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
from pathlib import Path

import joblib
import pandas as pd
import pytest

from driftloop import api, synthetic
from driftloop.registry import CANARY, PRODUCTION, LocalRegistry, verify_chain
from driftloop.settings import Settings
from tests.report_pages import ReportPage, signed_number

DRIFT_KEY = "churn-it-v1-0123456789ab"
DRIFT_REASON = "drift share 0.64 >= 0.30 in 2 consecutive windows"
INTENDED_USE = "Rank customers by churn risk for the retention team's weekly calls."


def _grouped(n: int) -> str:
    """A count as the reports print it, read back with its (thin) separators as spaces."""
    return f"{n:,}".replace(",", " ")


@pytest.fixture(scope="module")
def loop(tmp_path_factory, s3_server) -> dict:
    home = tmp_path_factory.mktemp("ct-home")
    settings = Settings.resolve(str(home))
    reference = synthetic.generate(1500, seed=11)
    drifted = synthetic.generate(1500, seed=12, covariate_shift=0.6, concept_shift=0.8, id_offset=1500)
    drifted_path = home / "drifted.parquet"
    drifted.to_parquet(drifted_path, index=False)
    client = s3_server.settings().client()
    if not client.bucket_exists("ct-data"):
        client.make_bucket("ct-data")
    data = reference.to_csv(index=False).encode()
    client.put_object("ct-data", "reference.csv", io.BytesIO(data), len(data))

    events: list = []
    # Component subprocesses inherit the environment: that is how S3 settings reach them locally.
    os.environ.update(s3_server.env)
    try:
        first = api.run(api.demo_params("s3://ct-data/reference.csv", model_name="churn-it"), settings, events.append)
    finally:
        for key in s3_server.env:
            os.environ.pop(key, None)
    # What the drift monitor records before it starts a retrain (monitor.app): the reason the card quotes.
    LocalRegistry(settings.registry_uri).record("churn-it", "retrain-triggered", actor="drift-monitor", version=1,
                                                reason=DRIFT_REASON, evidence={"key": DRIFT_KEY})
    second = api.run(api.demo_params(str(drifted_path), model_name="churn-it", estimator="xgboost",
                                     estimator_params={"n_estimators": 60}, triggered_by=f"drift:{DRIFT_KEY}",
                                     intended_use=INTENDED_USE), settings)
    third = api.run(api.demo_params(str(drifted_path), model_name="churn-it", min_gate_value=0.999), settings)
    broken = drifted.astype({"income": object})
    broken.loc[7, "income"] = "unknown"
    broken_path = home / "broken.csv"
    broken.to_csv(broken_path, index=False)
    fourth = api.run(api.demo_params(str(broken_path), model_name="churn-it"), settings)
    return {"settings": settings, "runs": [first, second, third, fourth], "events": events, "drifted": drifted,
            "drifted_path": drifted_path}


def test_first_run_reads_s3_and_goes_straight_to_production(loop) -> None:
    first = loop["runs"][0]
    assert first.state == "SUCCEEDED", first.error
    assert first.version == 1 and first.deploy_action == "promoted" and first.gate_passed
    registry = LocalRegistry(loop["settings"].registry_uri)
    assert registry.aliases("churn-it")[PRODUCTION] == 1
    lineage = registry.get_version("churn-it", 1).lineage
    assert lineage["data_uri"] == "s3://ct-data/reference.csv"
    assert len(lineage["data_sha256"]) == 64
    assert lineage["run_name"] == first.run_name


def test_progress_events_cover_every_step_in_order(loop) -> None:
    finished = [e.task for e in loop["events"] if e.state == "succeeded"]
    assert finished == ["load-and-validate", "train-model", "evaluate-model", "register-model", "deploy-model"]


def test_second_run_is_compared_with_the_champion_and_deployed_as_canary(loop) -> None:
    second = loop["runs"][1]
    assert second.state == "SUCCEEDED", second.error
    assert second.version == 2 and second.deploy_action == "canary"
    assert second.champion_metrics is not None
    assert second.metrics["roc_auc"] > second.champion_metrics["roc_auc"]
    assert any("champion v1" in reason for reason in second.gate_reasons)
    registry = LocalRegistry(loop["settings"].registry_uri)
    assert registry.aliases("churn-it") == {PRODUCTION: 1, CANARY: 2}
    version = registry.get_version("churn-it", 2)
    assert version.lineage["parent_version"] == 1
    assert version.lineage["estimator"] == "xgboost"
    assert version.lineage["params"] == {"n_estimators": 60}
    assert version.lineage["libraries"]["xgboost"]
    assert set(version.files) >= {"model/model.joblib", "spec.json", "profile.json", "model_card.md"}


def test_registered_model_serves_dict_instances(loop, tmp_path) -> None:
    registry = LocalRegistry(loop["settings"].registry_uri)
    model_dir = registry.fetch_model("churn-it", 2, tmp_path / "m")
    # Self-contained: exactly one .joblib (what KServe's sklearn runtime loads), driftloop's manifest, and the
    # fast path's graph, which register accepted after checking it on the run's holdout and reference sample.
    assert sorted(p.name for p in model_dir.iterdir()) == ["driftloop-model.json", "model.joblib", "model.onnx"]
    manifest = json.loads((model_dir / "driftloop-model.json").read_text())
    assert (manifest["model"], manifest["version"]) == ("churn-it", 2)
    # v2 is an XGBoost Pipeline: only driftloop's runtime serves that format (KServe's sklearn one has no xgboost).
    assert manifest["lineage"]["estimator"] == "xgboost" and manifest["model_format"] == "xgboost-pipeline"
    assert manifest["libraries"]["scikit-learn"] == importlib.metadata.version("scikit-learn")
    assert manifest["spec"]["target"] == "churned" and manifest["lineage"]["run_id"]
    fast_path = manifest["lineage"]["fast_path"]
    assert fast_path["status"] == "accepted" and fast_path["rows_checked"]["holdout"] > 0, fast_path
    model = joblib.load(model_dir / "model.joblib")
    rows = loop["drifted"].drop(columns=["churned"]).head(5).to_dict(orient="records")
    predictions = model.predict(pd.DataFrame(rows))
    assert set(predictions.tolist()) <= {0, 1} and len(predictions) == 5


def test_gate_failure_registers_nothing_and_says_why(loop) -> None:
    third = loop["runs"][2]
    assert third.state == "SUCCEEDED"
    assert third.gate_passed is False and third.version is None and third.deploy_action is None
    assert any("below the minimum 0.9990" in reason for reason in third.gate_reasons)
    registry = LocalRegistry(loop["settings"].registry_uri)
    assert [v.version for v in registry.list_versions("churn-it")] == [1, 2]
    assert registry.aliases("churn-it") == {PRODUCTION: 1, CANARY: 2}


def test_dashboard_artifacts_are_written(loop) -> None:
    second = loop["runs"][1]
    evaluation_html = Path(second.artifacts["evaluation_report"]).read_text()
    assert "<svg" in evaluation_html and "champion v1" in evaluation_html
    assert "Data validation" in Path(second.artifacts["validation_report"]).read_text()
    card = Path(second.artifacts["model_card"]).read_text()
    assert card.startswith("# Model card: churn-it v2") and "roc_auc" in card
    # Tasks inside the "data-valid" condition live one level down, in the condition's directory.
    metrics = json.loads(next(Path(second.run_dir).rglob("evaluate-model/executor_output.json")).read_text())
    logged = metrics["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert {"roc_auc", "accuracy", "f1", "log_loss", "champion_roc_auc"} <= set(logged)
    classification = metrics["artifacts"]["classification"]["artifacts"][0]["metadata"]
    assert "confusionMatrix" in classification and "confidenceMetrics" in classification


def test_the_evaluation_page_states_who_what_when_and_the_delta(loop) -> None:
    second = loop["runs"][1]
    page = ReportPage(Path(second.artifacts["evaluation_report"]).read_text())

    assert page.errors == [] and page.scripts == 0
    assert page.headings[0] == ("h1", "Evaluation of churn-it (candidate)")  # the number comes at registration
    facts = page.facts
    assert facts["Model"] == "churn-it" and facts["Compared with"] == "champion v1"
    assert facts["Pipeline run"].startswith(second.run_name)
    n_holdout = int(second.metrics["n_holdout"])
    assert facts["Data"].startswith(str(loop["drifted_path"]))
    assert f"{_grouped(len(loop['drifted']))} rows" in facts["Data"]
    assert facts["Holdout"].startswith(f"{_grouped(n_holdout)} rows")
    assert facts["Triggered by"].startswith(f"A drift retrain: the drift monitor started it because {DRIFT_REASON}")
    assert facts["Evaluated"].endswith("UTC")
    table = page.table_under("On the holdout")
    auc = table.row("ROC AUC")
    delta = second.metrics["roc_auc"] - second.champion_metrics["roc_auc"]
    assert signed_number(auc[3].text) == pytest.approx(delta, abs=1e-4) and delta > 0 and "better" in auc[3].classes
    loss = table.row("log loss")
    loss_delta = second.metrics["log_loss"] - second.champion_metrics["log_loss"]
    assert signed_number(loss[3].text) == pytest.approx(loss_delta, abs=1e-4)
    assert ("better" if loss_delta < 0 else "worse") in loss[3].classes
    assert page.banner.title.startswith("Gate PASSED")
    assert [t.heading for t in page.tables if t.heading in ("candidate", "champion v1")] == ["candidate", "champion v1"]
    # The registry keeps its own copy, which knows the number.
    registry = LocalRegistry(loop["settings"].registry_uri)
    stored = ReportPage(registry.read_file("churn-it", 2, "evaluation.html").decode())
    assert stored.headings[0] == ("h1", "Evaluation of churn-it v2") and stored.facts["Version"] == "v2"


def test_the_model_card_names_its_version_trigger_parent_and_use_in_every_copy(loop) -> None:
    from markdown_it import MarkdownIt

    second = loop["runs"][1]
    artifact = Path(second.artifacts["model_card"]).read_text()
    stored = LocalRegistry(loop["settings"].registry_uri).read_file("churn-it", 2, "model_card.md").decode()

    assert artifact == stored
    assert artifact.startswith("# Model card: churn-it v2\n")
    card = ReportPage(MarkdownIt("commonmark").enable("table").render(artifact))
    details = card.table_under("Model details")
    assert details.row("Triggered by")[1].text.startswith(
        f"A drift retrain: the drift monitor started it because {DRIFT_REASON} (retrain {DRIFT_KEY})")
    assert details.row("Parent version")[1].text == "churn-it v1 (production when this run started)"
    assert details.row("Pipeline run")[1].text.startswith(second.run_name)
    assert details.row("Estimator")[1].text == "xgboost"
    assert INTENDED_USE in card.document.replace("&#x27;", "'")
    rows = card.table_under("Training data").row("Rows")[1].text
    n_holdout = int(second.metrics["n_holdout"])
    total = len(loop["drifted"])
    assert rows == f"{_grouped(total)} validated: {_grouped(total - n_holdout)} trained on, {_grouped(n_holdout)} held out"


def test_the_validation_page_warns_about_the_drifted_target_balance(loop) -> None:
    first = ReportPage(Path(loop["runs"][0].artifacts["validation_report"]).read_text())
    second = ReportPage(Path(loop["runs"][1].artifacts["validation_report"]).read_text())

    assert first.title == "Data validation: reference.csv" and first.banner.kind in ("pass", "warn")
    assert first.facts["Reference"].startswith("none")
    assert second.title == "Data validation: drifted.parquet" and second.facts["Reference"].startswith("production v1")
    drifted_share = float((loop["drifted"][synthetic.TARGET] == 1).mean())
    assert second.facts["Positive share"].startswith(f"{drifted_share * 100:.1f} %")
    assert second.banner.kind == "warn" and "positive share" in second.banner.detail
    assert [r[0].text for r in second.table_under("Features against the reference").rows][:2] == ["age", "income"]


def test_a_failed_validation_still_writes_its_report_artifact(loop) -> None:
    fourth = loop["runs"][3]
    assert fourth.state == "FAILED" and "column 'income': text in a numeric column" in fourth.error
    assert fourth.version is None
    # kfp.local keeps the step's output artifact where the dashboard would find it.
    reports = sorted(Path(fourth.run_dir).rglob("load-and-validate/report"))
    assert len(reports) == 1
    page = ReportPage(reports[0].read_text())
    assert page.banner.kind == "fail" and page.banner.title == "Validation FAILED — the run stops here"
    assert "text in a numeric column" in page.banner.detail and page.title == "Data validation: broken.csv"


def test_every_run_outcome_is_in_the_audit_trail(loop) -> None:
    registry = LocalRegistry(loop["settings"].registry_uri)
    history = registry.history("churn-it")
    assert verify_chain(history) == []
    finished = [e for e in history if e.action == "run-finished"]
    assert [e.evidence["state"] for e in finished] == ["SUCCEEDED"] * 3 + ["FAILED"]
    assert [e.to_version for e in finished] == [1, 2, None, None]
    actions = [e.action for e in history]
    assert actions.index("register") < actions.index("promote") < actions.index("deploy-canary")


def test_same_data_and_seed_give_identical_predictions(loop, tmp_path) -> None:
    """Re-running the same step on the same input reproduces the model's predictions exactly."""
    from driftloop import steps

    first = loop["runs"][1]
    spec_json = json.loads((Path(first.run_dir) / "load-and-validate" / "executor_output.json").read_text())[
        "parameterValues"]["spec_json"]
    dataset = first.artifacts["dataset"]
    outputs = []
    for attempt in range(2):
        steps.train(dataset, spec_json, str(tmp_path / f"m{attempt}"), str(tmp_path / f"h{attempt}.parquet"),
                    "xgboost", {"n_estimators": 60}, 0.25, 42)
        model = joblib.load(tmp_path / f"m{attempt}" / "model.joblib")
        holdout = pd.read_parquet(tmp_path / f"h{attempt}.parquet")
        outputs.append(model.predict_proba(holdout)[:, 1])
    assert (outputs[0] == outputs[1]).all()
    registered = joblib.load(LocalRegistry(loop["settings"].registry_uri).fetch_model("churn-it", 2, tmp_path / "r")
                             / "model.joblib")
    assert (registered.predict_proba(holdout)[:, 1] == outputs[0]).all()
