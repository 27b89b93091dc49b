"""A multi-class and a regression model served by the real gateway on 127.0.0.1, each on its verified fast path:
class labels and numbers over V1 and V2, class probabilities on request, a 400 where a regression is asked for
them, and the payload log carrying what the monitor reads."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest

from driftloop.registry import PRODUCTION, LocalRegistry
from driftloop.serving.gateway import Gateway
from driftloop.tasks import MULTICLASS, REGRESSION

from ..conftest import ServerThread
from ..task_tables import CLASSES, register, task_frame, trained

TICKETS, BILLS = "tickets", "bills"


class _Receiver(BaseHTTPRequestHandler):
    """The payload log's receiver: keeps each event's type and body."""

    events: list = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["content-length"]))
        _Receiver.events.append((self.headers["ce-type"], self.headers["ce-id"], json.loads(body)))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    """``tickets`` (multi-class logistic regression) and ``bills`` (regression, histogram gradient boosting), both
    registered with an accepted fast path, behind a gateway whose payload log goes to a receiver."""
    tmp = tmp_path_factory.mktemp("serving-tasks")
    registry = LocalRegistry(tmp / "registry")
    models = {TICKETS: trained(MULTICLASS, "logistic_regression"), BILLS: trained(REGRESSION, "gradient_boosting")}
    for name, model in models.items():
        registry.set_alias(name, PRODUCTION, register(registry, tmp, name, model), actor="test")
    rows = {TICKETS: task_frame(MULTICLASS, 30, seed=31), BILLS: task_frame(REGRESSION, 30, seed=31)}
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    gateway = Gateway(registry, logger_url=f"http://127.0.0.1:{receiver.server_port}/events", poll_interval=3600)
    try:
        with ServerThread(gateway.app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            yield {"client": client, "models": models, "rows": rows, "gateway": gateway}
    finally:
        receiver.shutdown()


def _records(served, name: str, n: int) -> list[dict]:
    spec = served["models"][name].spec
    return json.loads(served["rows"][name].head(n)[spec.feature_names].to_json(orient="records"))


def _v2_inputs(served, name: str, n: int) -> list[dict]:
    spec, rows = served["models"][name].spec, served["rows"][name].head(n)
    datatype = {"numeric": "FP64", "categorical": "BYTES", "boolean": "BOOL"}
    return [{"name": f.name, "shape": [n], "datatype": datatype[f.kind],
             "data": json.loads(rows[f.name].to_json(orient="values"))} for f in spec.features]


def _expected(served, name: str, n: int):
    """The Pipeline's own answers: labels of its class indices (multi-class), or its numbers; and probabilities."""
    model = served["models"][name]
    frame = served["rows"][name].head(n)[model.spec.feature_names]
    if name == BILLS:
        return model.model.predict(frame).tolist(), None
    return [CLASSES[i] for i in model.model.predict(frame)], model.model.predict_proba(frame)


def test_v1_answers_labels_and_on_request_each_class_probability_in_class_order(served) -> None:
    client, n = served["client"], 12
    labels, probabilities = _expected(served, TICKETS, n)
    plain = client.post(f"/v1/models/{TICKETS}:predict", json={"instances": _records(served, TICKETS, n)})
    assert plain.status_code == 200, plain.text
    assert plain.json() == {"predictions": labels} and len(set(labels)) > 1

    asked = client.post(f"/v1/models/{TICKETS}:predict", json={"instances": _records(served, TICKETS, n),
                                                                 "parameters": {"probabilities": True}})
    body = asked.json()
    assert body["predictions"] == labels and body["classes"] == list(CLASSES)
    answered = np.asarray(body["probabilities"])
    assert answered.shape == (n, len(CLASSES))
    np.testing.assert_allclose(answered.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(answered, probabilities, rtol=0, atol=1e-5)  # the fast path's tolerance
    assert [CLASSES[i] for i in answered.argmax(axis=1)] == labels  # columns in the classes' order
    metrics = client.get("/metrics").text
    for name in (TICKETS, BILLS):  # both answer from their verified fast path
        assert f'driftloop_fast_path{{endpoint="default",model="{name}"}} 1.0' in metrics


def test_v2_answers_text_labels_as_bytes_and_probabilities_as_an_fp64_tensor(served) -> None:
    client, n = served["client"], 5
    labels, probabilities = _expected(served, TICKETS, n)
    plain = client.post(f"/v2/models/{TICKETS}/infer", json={"inputs": _v2_inputs(served, TICKETS, n)})
    assert plain.status_code == 200, plain.text
    (output,) = plain.json()["outputs"]
    assert output["datatype"] == "BYTES" and output["shape"] == [n] and output["data"] == labels

    for asking in ({"parameters": {"probabilities": True}}, {"outputs": [{"name": "output-0"},
                                                                          {"name": "probabilities"}]}):
        body = client.post(f"/v2/models/{TICKETS}/infer", json={"inputs": _v2_inputs(served, TICKETS, n), **asking})
        assert body.status_code == 200, body.text
        predicted, tensor = body.json()["outputs"]
        assert predicted["data"] == labels
        assert tensor["name"] == "probabilities" and tensor["datatype"] == "FP64" and tensor["shape"] == [n, 4]
        assert json.loads(tensor["parameters"]["classes"]) == list(CLASSES)
        answered = np.asarray(tensor["data"]).reshape(n, 4)
        np.testing.assert_allclose(answered.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(answered, probabilities, rtol=0, atol=1e-5)

    only = client.post(f"/v2/models/{TICKETS}/infer", json={"inputs": _v2_inputs(served, TICKETS, n),
                                                             "outputs": [{"name": "probabilities"}]})
    assert [o["name"] for o in only.json()["outputs"]] == ["probabilities"]  # KServe's rule: what was named


def test_a_regression_model_answers_numbers_and_refuses_class_probabilities_with_400(served) -> None:
    client, n = served["client"], 8
    numbers, _ = _expected(served, BILLS, n)
    v1 = client.post(f"/v1/models/{BILLS}:predict", json={"instances": _records(served, BILLS, n)})
    assert v1.status_code == 200, v1.text
    np.testing.assert_allclose(v1.json()["predictions"], numbers, rtol=1e-5)
    assert all(isinstance(p, float) for p in v1.json()["predictions"])
    v2 = client.post(f"/v2/models/{BILLS}/infer", json={"inputs": _v2_inputs(served, BILLS, n)})
    (output,) = v2.json()["outputs"]
    assert output["datatype"] == "FP64" and output["shape"] == [n]
    np.testing.assert_allclose(output["data"], numbers, rtol=1e-5)

    refusal = "bills v1 is a regression model: a regression model has no class probabilities"
    for path, body in (
            (f"/v1/models/{BILLS}:predict", {"instances": _records(served, BILLS, 1), "parameters": {"probabilities": True}}),
            (f"/v2/models/{BILLS}/infer", {"inputs": _v2_inputs(served, BILLS, 1), "parameters": {"probabilities": True}}),
            (f"/v2/models/{BILLS}/infer", {"inputs": _v2_inputs(served, BILLS, 1), "outputs": [{"name": "probabilities"}]})):
        answer = client.post(path, json=body)
        assert (answer.status_code, answer.json()) == (400, {"error": refusal}), path
    not_a_flag = client.post(f"/v1/models/{TICKETS}:predict", json={"instances": _records(served, TICKETS, 1),
                                                                      "parameters": {"probabilities": "yes"}})
    assert (not_a_flag.status_code, not_a_flag.json()) == \
        (400, {"error": 'parameters.probabilities must be true or false, got "yes"'})


def test_the_payload_log_carries_the_labels_first_whatever_outputs_were_asked(served) -> None:
    """The monitor reads a response's ``predictions`` (V1) or its first output (V2): labels for every row."""
    client, n = served["client"], 3
    labels, _ = _expected(served, TICKETS, n)
    _Receiver.events = []
    client.post(f"/v1/models/{TICKETS}:predict", json={"instances": _records(served, TICKETS, n),
                                                       "parameters": {"probabilities": True}},
                headers={"x-request-id": "v1-asked"})
    client.post(f"/v2/models/{TICKETS}/infer", json={"inputs": _v2_inputs(served, TICKETS, n),
                                                     "outputs": [{"name": "probabilities"}]},
                headers={"x-request-id": "v2-only-probabilities"})
    deadline = time.monotonic() + 10
    while len(_Receiver.events) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    responses = {event_id: body for kind, event_id, body in _Receiver.events if kind.endswith(".response")}
    assert responses["v1-asked"]["predictions"] == labels
    first, second = responses["v2-only-probabilities"]["outputs"]
    assert first["data"] == labels and second["name"] == "probabilities"
