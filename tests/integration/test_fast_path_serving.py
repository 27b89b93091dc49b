"""The fast scoring path as a user meets it: compiled and checked at registration, recorded in the version's
metadata, covered by its checksums, and answering through the real gateway exactly what the Pipeline answers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pandas as pd
import pytest

from driftloop import model_dir, steps, synthetic
from driftloop.data import infer_spec
from driftloop.errors import IntegrityError
from driftloop.evaluation import GateDecision, evaluate_model
from driftloop.registry import PRODUCTION, LocalRegistry
from driftloop.serving.gateway import Gateway
from driftloop.serving.versions import ServedVersion
from driftloop.training import save_model, train_model
from driftloop.validation import validate_table

from ..conftest import ServerThread

FAST, CALIBRATED, PIPELINE_ONLY = "churn", "churn-calibrated", "churn-pipeline"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """One logistic-regression Pipeline registered by the CT pipeline's register step (``churn``, fast path) and
    by the registry alone (``churn-pipeline``, no fast path); a calibrated one by the register step (refused)."""
    tmp = tmp_path_factory.mktemp("fast-path")
    frame = synthetic.generate(1000, seed=5)
    spec = infer_spec(frame, synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN)
    frame, _, spec = validate_table(frame, spec)
    frame.to_parquet(tmp / "data.parquet", index=False)
    registry_uri = str(tmp / "registry")
    registry = LocalRegistry(registry_uri)
    pipelines = {}
    for name, calibration in ((FAST, "none"), (CALIBRATED, "sigmoid")):
        trained = train_model(frame, spec, "logistic_regression", seed=1, calibration=calibration)
        save_model(trained.model, tmp / name)
        trained.holdout_frame.to_parquet(tmp / f"{name}-holdout.parquet", index=False)
        evaluation = evaluate_model(trained.model, trained.holdout_frame, spec)
        decision = GateDecision(True, ["first version"], "roc_auc", evaluation.metrics["roc_auc"], None, None, {})
        outcome = json.dumps({"evaluation": evaluation.to_dict(), "decision": decision.to_dict()})
        steps.register(str(tmp / name), str(tmp / "data.parquet"), spec.to_json(), outcome, registry_uri, name,
                       {"run_id": f"run-{name}"}, holdout_path=str(tmp / f"{name}-holdout.parquet"))
        pipelines[name] = trained.model
    registry.register(PIPELINE_ONLY, tmp / FAST, model_format="sklearn", lineage={}, metrics={},
                      attachments={"spec.json": spec.to_json().encode()}, actor="test")
    for name in (FAST, CALIBRATED, PIPELINE_ONLY):
        registry.set_alias(name, PRODUCTION, 1, actor="test")
    return {"registry": registry, "spec": spec, "pipelines": pipelines, "tmp": tmp,
            "rows": synthetic.generate(40, seed=6).drop(columns=[synthetic.TARGET, synthetic.ID_COLUMN,
                                                                  synthetic.TIMESTAMP_COLUMN])}


def test_the_version_metadata_carries_the_agreement_figures_and_says_what_serves(world, tmp_path) -> None:
    registry = world["registry"]
    fast = registry.get_version(FAST, 1)
    assert "model/model.onnx" in fast.files
    record = fast.lineage["fast_path"]
    assert record["status"] == "accepted" and record["file"] == "model.onnx"
    assert set(record["rows_checked"]) == {"holdout", "reference_sample", "edge_cases"}
    assert record["rows"] == sum(record["rows_checked"].values()) and record["rows_checked"]["holdout"] == 250
    assert record["max_abs_diff"] <= record["tolerance"] == 1e-5 and record["label_disagreements"] == 0
    directory = registry.fetch_model(FAST, 1, tmp_path / "fast")
    manifest = model_dir.read_manifest(directory)
    assert manifest.lineage["fast_path"] == record and set(manifest.files) == {"model.joblib", "model.onnx"}
    served = ServedVersion.from_directory(directory, registry.trust)  # what driftloop's KServe runtime does
    assert served.scoring_path == "onnx" and served.serves_with.startswith("the fast path (ONNX, agrees")

    calibrated = registry.get_version(CALIBRATED, 1)
    assert "model/model.onnx" not in calibrated.files
    refused = calibrated.lineage["fast_path"]
    assert refused["status"] == "refused" and "calibrated models" in refused["reason"]
    served = ServedVersion.load(registry, CALIBRATED, 1)
    assert served.scoring_path == "pipeline" and "calibrated models" in served.serves_with
    assert ServedVersion.load(registry, PIPELINE_ONLY, 1).serves_with == "the Pipeline: registered without a fast path"


def test_a_changed_model_onnx_is_refused_like_a_changed_model_joblib(world, tmp_path) -> None:
    directory = world["registry"].fetch_model(FAST, 1, tmp_path / "fetched")
    graph = directory / "model.onnx"
    graph.write_bytes(graph.read_bytes().replace(b"LogisticRegression", b"LogisticRegressioN"))
    with pytest.raises(IntegrityError, match="checksum mismatch for model.onnx"):
        ServedVersion.from_directory(directory, world["registry"].trust)
    copy = tmp_path / "registry"
    shutil.copytree(world["registry"].root, copy)
    stored = Path(LocalRegistry(copy).get_version(FAST, 1).storage_uri) / "model.onnx"
    stored.write_bytes(graph.read_bytes())
    with pytest.raises(IntegrityError, match="model.onnx"):
        ServedVersion.load(LocalRegistry(copy), FAST, 1)


def _bodies(rows: pd.DataFrame, names: list[str]) -> dict[str, dict]:
    """The same rows in every V1 body shape the gateway takes (KServe's sklearn runtime's among them)."""
    records = json.loads(rows.to_json(orient="records"))
    halves = (records[:25], records[25:])
    return {
        "records": {"instances": records},
        "column lists, several rows per instance": {"instances": [{n: [r[n] for r in half] for n in names}
                                                                  for half in halves]},
        "lists of records": {"instances": [list(half) for half in halves]},
        "positional lists": {"instances": [[r[n] for n in names] for r in records]},
        "inputs": {"inputs": records},
    }


def test_the_fast_path_answers_every_body_shape_as_the_pipeline_does(world) -> None:
    spec, rows = world["spec"], world["rows"].astype({"has_autopay": object})
    rows.loc[rows.index[::7], "region"] = "atlantis"  # a category never seen in training
    rows.loc[rows.index[::5], "age"] = None
    rows.loc[rows.index[::6], "has_autopay"] = None
    names = spec.feature_names
    gateway = Gateway(world["registry"], poll_interval=60)
    with ServerThread(gateway.app) as server, httpx.Client(base_url=server.url) as client:
        assert 'driftloop_fast_path{endpoint="default",model="churn"} 1.0' in client.get("/metrics").text
        assert 'driftloop_fast_path{endpoint="default",model="churn-pipeline"} 0.0' in client.get("/metrics").text
        for shape, body in _bodies(rows, names).items():
            fast = client.post(f"/v1/models/{FAST}:predict", json=body)
            pipeline = client.post(f"/v1/models/{PIPELINE_ONLY}:predict", json=body)
            assert fast.status_code == pipeline.status_code == 200, (shape, fast.text)
            assert fast.json() == pipeline.json(), shape
            assert len(fast.json()["predictions"]) == 40
        complete = rows.dropna().head(10)  # V2 tensors have no null
        inputs = [{"name": f.name, "shape": [len(complete)], "data": complete[f.name].tolist(),
                   "datatype": {"numeric": "FP64", "categorical": "BYTES", "boolean": "BOOL"}[f.kind]}
                  for f in spec.features]
        v2 = {"parameters": {"content_type": "pd"}, "inputs": inputs}
        fast = client.post(f"/v2/models/{FAST}/infer", json=v2).json()
        pipeline = client.post(f"/v2/models/{PIPELINE_ONLY}/infer", json=v2).json()
        assert fast["outputs"] == pipeline["outputs"] and len(fast["outputs"][0]["data"]) == len(complete)
        assert fast["outputs"][0]["data"] == world["pipelines"][FAST].predict(complete[names]).tolist()
