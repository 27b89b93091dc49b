"""The fast scoring path as a user meets it: compiled and checked at registration, recorded in the version's
metadata, covered by its checksums, and answering through the real gateway exactly what the Pipeline answers."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import onnx
import pandas as pd
import pytest
from onnx import numpy_helper

from driftloop import model_dir, steps, synthetic
from driftloop.data import infer_spec
from driftloop.errors import IntegrityError
from driftloop.evaluation import GateDecision, evaluate_model
from driftloop.fastpath import convert
from driftloop.registry import PRODUCTION, LocalRegistry
from driftloop.serving.gateway import Gateway
from driftloop.serving.versions import ServedVersion
from driftloop.training import save_model, train_model
from driftloop.validation import validate_table

from ..conftest import REPO_ROOT, ServerThread, free_port, run_cli

FAST, CALIBRATED, PIPELINE_ONLY = "churn", "churn-calibrated", "churn-pipeline"
BROKEN, NUMERIC = "churn-broken", "churn-numeric"


def _broken_conversion(convert):
    """``convert`` with the numeric features' standard deviations 1 % off in the graph: a subtly wrong converter."""
    def broken(pipeline, spec) -> bytes:
        graph = onnx.load_from_string(convert(pipeline, spec))
        divisor = next(node.input[1] for node in graph.graph.node if node.op_type == "Div")
        tensor = next(t for t in graph.graph.initializer if t.name == divisor)
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 1.01, divisor))
        return graph.SerializeToString()
    return broken


def _register(tmp: Path, frame: pd.DataFrame, spec, name: str, calibration: str = "none"):
    """Trains a logistic regression and registers it with the CT pipeline's register step; returns the Pipeline."""
    frame.to_parquet(tmp / f"{name}-data.parquet", index=False)
    trained = train_model(frame, spec, "logistic_regression", seed=1, calibration=calibration)
    save_model(trained.model, tmp / name)
    trained.holdout_frame.to_parquet(tmp / f"{name}-holdout.parquet", index=False)
    evaluation = evaluate_model(trained.model, trained.holdout_frame, spec)
    decision = GateDecision(True, ["first version"], "roc_auc", evaluation.metrics["roc_auc"], None, None, {})
    outcome = json.dumps({"evaluation": evaluation.to_dict(), "decision": decision.to_dict()})
    steps.register(str(tmp / name), str(tmp / f"{name}-data.parquet"), spec.to_json(), outcome, str(tmp / "registry"),
                   name, {"run_id": f"run-{name}"}, holdout_path=str(tmp / f"{name}-holdout.parquet"))
    return trained.model


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Logistic-regression Pipelines registered by the CT pipeline's register step: ``churn`` (fast path),
    ``churn-calibrated`` (not compiled), ``churn-broken`` (compiled by a deliberately broken converter, refused),
    ``churn-numeric`` (numeric features only, fast path: V2's row-major tensor); and ``churn``'s Pipeline
    registered by the registry alone (``churn-pipeline``, no fast path)."""
    tmp = tmp_path_factory.mktemp("fast-path")
    frame = synthetic.generate(1000, seed=5)
    spec = infer_spec(frame, synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN)
    frame, _, spec = validate_table(frame, spec)
    registry = LocalRegistry(tmp / "registry")
    pipelines = {FAST: _register(tmp, frame, spec, FAST), CALIBRATED: _register(tmp, frame, spec, CALIBRATED, "sigmoid")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(convert, "to_onnx", _broken_conversion(convert.to_onnx))
        pipelines[BROKEN] = _register(tmp, frame, spec, BROKEN)
    numeric = frame[[*spec.names_of("numeric"), synthetic.TARGET]]
    numeric, _, numeric_spec = validate_table(numeric, infer_spec(numeric, synthetic.TARGET))
    pipelines[NUMERIC] = _register(tmp, numeric, numeric_spec, NUMERIC)
    registry.register(PIPELINE_ONLY, tmp / FAST, model_format="sklearn", lineage={}, metrics={},
                      attachments={"spec.json": spec.to_json().encode()}, actor="test")
    for name in (FAST, CALIBRATED, PIPELINE_ONLY, BROKEN, NUMERIC):
        registry.set_alias(name, PRODUCTION, 1, actor="test")
    return {"registry": registry, "spec": spec, "numeric_spec": numeric_spec, "pipelines": pipelines, "tmp": tmp,
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
    # The manifest's hash made to match: its Ed25519 signature, which covers the hashes, refuses it.
    manifest_file = directory / model_dir.MANIFEST_FILE
    manifest = json.loads(manifest_file.read_text())
    manifest["files"]["model.onnx"] = hashlib.sha256(graph.read_bytes()).hexdigest()
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="signature does not match the content"):
        ServedVersion.from_directory(directory, world["registry"].trust)
    copy = tmp_path / "registry"
    shutil.copytree(world["registry"].root, copy)
    stored = Path(LocalRegistry(copy).get_version(FAST, 1).storage_uri) / "model.onnx"
    stored.write_bytes(graph.read_bytes())
    with pytest.raises(IntegrityError, match="model.onnx"):
        ServedVersion.load(LocalRegistry(copy), FAST, 1)


DATATYPES = {"numeric": "FP64", "categorical": "BYTES", "boolean": "BOOL"}


def _rows(world) -> pd.DataFrame:
    """40 fresh rows with missing values and a category never seen in training."""
    rows = world["rows"].astype({"has_autopay": object})
    rows.loc[rows.index[::7], "region"] = "atlantis"
    rows.loc[rows.index[::5], "age"] = None
    rows.loc[rows.index[::6], "has_autopay"] = None
    return rows


def _bodies(rows: pd.DataFrame, spec) -> dict[str, tuple[str, dict, pd.DataFrame]]:
    """The same rows in every body shape the gateway and the runtime take: shape → (protocol, body, the rows it
    holds). V2 tensors have no null, so V2 bodies hold the complete rows; a row-major tensor is one datatype,
    so only an all-numeric spec gets one."""
    names = spec.feature_names
    records = json.loads(rows[names].to_json(orient="records"))
    halves = (records[:25], records[25:])
    complete = rows[names].dropna().head(10)
    per_column = [{"name": f.name, "shape": [len(complete)], "data": complete[f.name].tolist(),
                   "datatype": DATATYPES[f.kind]} for f in spec.features]
    bodies = {
        "V1 records": ("v1", {"instances": records}, rows),
        "V1 column lists, several rows per instance": ("v1", {"instances": [{n: [r[n] for r in half] for n in names}
                                                                            for half in halves]}, rows),
        "V1 lists of records": ("v1", {"instances": [list(half) for half in halves]}, rows),
        "V1 positional lists": ("v1", {"instances": [[r[n] for n in names] for r in records]}, rows),
        "V1 inputs": ("v1", {"inputs": records}, rows),
        "V2 content_type pd": ("v2", {"parameters": {"content_type": "pd"}, "inputs": per_column}, complete),
        "V2 one tensor per column": ("v2", {"inputs": per_column}, complete),
    }
    if {f.kind for f in spec.features} == {"numeric"}:
        bodies["V2 one row-major tensor"] = ("v2", {"inputs": [{
            "name": "input-0", "shape": list(complete.shape), "datatype": "FP64",
            "data": complete.to_numpy().ravel().tolist()}]}, complete)
    return bodies


def _answer(client: httpx.Client, model: str, protocol: str, body: dict) -> list:
    """The predictions a body gets, after checking it got them."""
    response = client.post(f"/v1/models/{model}:predict" if protocol == "v1" else f"/v2/models/{model}/infer",
                           json=body)
    assert response.status_code == 200, response.text
    return response.json()["predictions"] if protocol == "v1" else response.json()["outputs"][0]["data"]


def test_the_fast_path_answers_every_body_shape_as_the_pipeline_does(world) -> None:
    rows, pipelines = _rows(world), world["pipelines"]
    gateway = Gateway(world["registry"], poll_interval=60)
    with ServerThread(gateway.app) as server, httpx.Client(base_url=server.url) as client:
        metrics = client.get("/metrics").text
        for model, gauge in ((FAST, 1), (NUMERIC, 1), (PIPELINE_ONLY, 0), (CALIBRATED, 0), (BROKEN, 0)):
            assert f'driftloop_fast_path{{endpoint="default",model="{model}"}} {gauge:.1f}' in metrics, model
        for shape, (protocol, body, held) in _bodies(rows, world["spec"]).items():
            fast = _answer(client, FAST, protocol, body)
            assert fast == _answer(client, PIPELINE_ONLY, protocol, body), shape  # the same server, the Pipeline
            assert fast == pipelines[FAST].predict(held).tolist() and len(fast) == len(held), shape
        numeric = world["numeric_spec"]
        bodies = _bodies(rows[numeric.feature_names], numeric)
        assert len(bodies) == 8
        for shape, (protocol, body, held) in bodies.items():
            assert _answer(client, NUMERIC, protocol, body) == pipelines[NUMERIC].predict(held).tolist(), shape


def test_a_deliberately_broken_conversion_is_refused_and_the_pipeline_serves(world) -> None:
    registry = world["registry"]
    version = registry.get_version(BROKEN, 1)
    assert "model/model.onnx" not in version.files
    record = version.lineage["fast_path"]
    assert record["status"] == "refused" and record["file"] is None
    assert record["reason"].startswith("disagrees with the Pipeline: max |dp|")
    assert record["max_abs_diff"] > record["tolerance"] and set(record["rows_checked"]) == {
        "holdout", "reference_sample", "edge_cases"}
    served = ServedVersion.load(registry, BROKEN, 1)
    assert served.scoring_path == "pipeline"
    assert served.serves_with == f"the Pipeline: the fast path was refused at registration ({record['reason']})"
    shown = run_cli("models", "show", BROKEN, "1", "--registry", registry.uri)
    assert shown.returncode == 0, shown.stderr
    assert "fast_path" in shown.stdout and "refused" in shown.stdout and "disagrees" in shown.stdout
    rows = _rows(world)
    with ServerThread(Gateway(registry, poll_interval=60).app) as server, httpx.Client(base_url=server.url) as client:
        protocol, body, held = _bodies(rows, world["spec"])["V1 records"]
        assert _answer(client, BROKEN, protocol, body) == world["pipelines"][BROKEN].predict(held).tolist()


def test_driftloops_runtime_serves_the_fast_path_from_the_model_directory(world, tmp_path) -> None:
    """The cluster runtime, started as the ServingRuntime starts it, on the directory KServe's storage
    initializer would leave: it says it scores with the fast path, and answers every body as the Pipeline."""
    directory = world["registry"].fetch_model(FAST, 1, tmp_path / "mnt-models")
    port, log = free_port(), tmp_path / "runtime.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "driftloop.serving.runtime", f"--model_name={FAST}",
                                    f"--model_dir={directory}", f"--http_port={port}"],
                                   cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if client.get("/v2/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline and process.poll() is None, log.read_text()[-2000:]
                time.sleep(0.3)
            assert f'driftloop_fast_path{{endpoint="default",model="{FAST}"}} 1.0' in client.get("/metrics").text
            for shape, (protocol, body, held) in _bodies(_rows(world), world["spec"]).items():
                assert _answer(client, FAST, protocol, body) == world["pipelines"][FAST].predict(held).tolist(), shape
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "scoring with the fast path (ONNX, agrees with the Pipeline: max |dp|" in log.read_text()
