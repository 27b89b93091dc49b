"""docs/serving.md's requests, exactly as documented, against the local gateway and driftloop's KServe runtime:
every body answers the documented predictions, which are the Pipeline's own, from both servers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pandas as pd
import pytest

from driftloop import steps, synthetic
from driftloop.data import infer_spec
from driftloop.evaluation import GateDecision, evaluate_model
from driftloop.registry import PRODUCTION, LocalRegistry
from driftloop.serving.gateway import Gateway
from driftloop.training import save_model, train_model
from driftloop.validation import validate_table

from ..conftest import REPO_ROOT, ServerThread, free_port

DOC = REPO_ROOT / "docs" / "serving.md"
FEATURES = ["tenure_months", "support_calls", "plan", "has_autopay"]  # the documented model's spec, in order


def documented_requests() -> list[tuple[str, dict]]:
    """(path, body) of every curl on the page."""
    requests = []
    for block in re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S):
        for path, body in re.findall(r"curl -s \$URL(\S+) .*?-d '(.*?)'", block, re.S):
            requests.append((path, json.loads(body)))
    return requests


def documented_answers() -> tuple[dict, dict]:
    """The V1 and V2 answers the page shows."""
    v1, v2 = (json.loads(block) for block in re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S))
    return v1, v2


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    """The documented model (its four features, trained on the synthetic churn world) registered by the CT
    pipeline's register step, fast path and all; served by a gateway and by the runtime (batching on)."""
    tmp = tmp_path_factory.mktemp("serving-docs")
    frame = synthetic.generate(1500, seed=7)[[*FEATURES, synthetic.TARGET]]
    spec = infer_spec(frame, synthetic.TARGET)
    frame, _, spec = validate_table(frame, spec)
    assert spec.feature_names == FEATURES
    frame.to_parquet(tmp / "data.parquet", index=False)
    trained = train_model(frame, spec, "logistic_regression", seed=1)
    save_model(trained.model, tmp / "model")
    trained.holdout_frame.to_parquet(tmp / "holdout.parquet", index=False)
    evaluation = evaluate_model(trained.model, trained.holdout_frame, spec)
    decision = GateDecision(True, ["first version"], "roc_auc", evaluation.metrics["roc_auc"], None, None, {})
    outcome = json.dumps({"evaluation": evaluation.to_dict(), "decision": decision.to_dict()})
    registry = LocalRegistry(tmp / "registry")
    steps.register(str(tmp / "model"), str(tmp / "data.parquet"), spec.to_json(), outcome, str(registry.root), "churn",
                   {"run_id": "docs"}, holdout_path=str(tmp / "holdout.parquet"))
    registry.set_alias("churn", PRODUCTION, 1, actor="test")
    model_dir = registry.fetch_model("churn", 1, tmp / "served")
    port = free_port()
    runtime = subprocess.Popen(
        [sys.executable, "-m", "driftloop.serving.runtime", "--model_name=churn", f"--model_dir={model_dir}",
         f"--http_port={port}", "--batch_max_rows", "64"],
        env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=open(tmp / "runtime.log", "w"))  # noqa: SIM115
    try:
        with ServerThread(Gateway(registry, poll_interval=3600).app) as gateway:
            _wait_ready(f"http://127.0.0.1:{port}", runtime, tmp / "runtime.log")
            yield {"gateway": gateway.url, "runtime": f"http://127.0.0.1:{port}", "pipeline": trained.model,
                   "log": tmp / "runtime.log"}
    finally:
        runtime.terminate()
        runtime.wait(timeout=30)


def _wait_ready(url: str, process: subprocess.Popen, log) -> None:
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the runtime exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the runtime did not become ready")


def _predictions(response: httpx.Response) -> list:
    assert response.status_code == 200, response.text
    body = response.json()
    return body["predictions"] if "predictions" in body else body["outputs"][0]["data"]


def test_the_page_documents_every_format() -> None:
    requests = documented_requests()
    assert sum(path.startswith("/v1/") for path, _ in requests) == 5  # records, columns ×2, list of records, lists
    assert sum(path.startswith("/v2/") for path, _ in requests) == 3  # pd, named tensors, one row-major tensor


def _pipeline_answer(served) -> list:
    """The Pipeline's own predictions for the page's rows (its first body, the records)."""
    path, body = documented_requests()[0]
    return served["pipeline"].predict(pd.DataFrame(body["instances"])[FEATURES]).tolist()


def test_every_documented_request_answers_the_documented_predictions_on_both_servers(served) -> None:
    v1_answer, v2_answer = documented_answers()
    expected = _pipeline_answer(served)
    assert v1_answer == {"predictions": expected}  # the page shows what the model answers
    assert v2_answer["outputs"][0]["data"] == expected and sorted(set(expected)) == [0, 1]

    for server in ("gateway", "runtime"):
        with httpx.Client(base_url=served[server], timeout=30) as client:
            for path, body in documented_requests():
                response = client.post(path, json=body)
                assert _predictions(response) == expected, (server, path, body)
                if path.startswith("/v1/"):
                    assert response.json() == v1_answer
                else:
                    answer = response.json()
                    assert {k: answer[k] for k in ("model_name", "model_version", "outputs")} == \
                        {k: v2_answer[k] for k in ("model_name", "model_version", "outputs")}
    assert "scoring with the fast path" in served["log"].read_text()  # the runtime served the verified graph


def test_documented_requests_sent_at_once_each_get_their_own_answer(served) -> None:
    """The runtime batches requests that arrive together (--batch_max_rows 64); each caller still gets its own."""
    requests = documented_requests() * 4
    with httpx.Client(base_url=served["runtime"], timeout=30) as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda request: client.post(request[0], json=request[1]), requests))
    assert [_predictions(a) for a in answers] == [_pipeline_answer(served)] * len(requests)
