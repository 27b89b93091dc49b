"""The monitor receives the gateway's payload events and keeps every logged row."""

from __future__ import annotations

import json
import os
import time

import httpx
import pandas as pd

from driftloop import synthetic
from driftloop.monitor.app import Monitor
from driftloop.monitor.config import MonitorConfig
from driftloop.registry import LocalRegistry
from driftloop.serving.gateway import Gateway
from driftloop.serving.payload_logger import REQUEST_TYPE, RESPONSE_TYPE
from driftloop.serving.versions import ServedVersion

from ..conftest import ServerThread, promoted_churn, register_trained


def test_every_logged_row_is_stored_with_its_prediction_and_version(tmp_path) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    frame = synthetic.generate(600, seed=1)
    register_trained(registry, tmp_path, frame)
    registry.promote("churn", 1, actor="test")
    spec = ServedVersion.load(registry, "churn", 1).spec
    monitor = Monitor(registry, tmp_path / "store", tick_seconds=0.2)
    rows = json.loads(frame[spec.feature_names].head(40).to_json(orient="records"))
    with ServerThread(monitor.app, http=monitor.http_protocol()) as receiver:
        gateway = Gateway(registry, logger_url=receiver.url + "/events")
        with ServerThread(gateway.app) as server, httpx.Client(base_url=server.url) as client:
            answers = [client.post("/v1/models/churn:predict", json={"instances": rows[i:i + 4]}).json()
                       for i in range(0, 40, 4)]
            deadline = time.monotonic() + 15
            while monitor.store.rows_added < 40 and time.monotonic() < deadline:
                time.sleep(0.1)
        bad = httpx.post(receiver.url + "/events", content=b"{}", headers={"ce-id": "x", "ce-type": "other",
                                                                              "content-type": "application/json"})
        status = httpx.get(receiver.url + "/status").json()
    stored = monitor.store.read("churn")
    assert len(stored) == 40 and set(stored["version"]) == {1} and set(stored["endpoint"]) == {"default"}
    stored = stored.sort_values(["received_at", "event_id", "row"])
    expected = [p for answer in answers for p in answer["predictions"]]
    assert sorted(stored["prediction"].tolist()) == sorted(expected)
    assert stored.groupby("event_id").size().tolist() == [4] * 10
    pd.testing.assert_series_equal(
        stored.sort_values("age")["age"].reset_index(drop=True),
        pd.Series([r["age"] for r in rows], name="age").sort_values().reset_index(drop=True), check_dtype=False)
    assert bad.status_code == 400 and "not a KServe payload event" in bad.json()["error"]
    assert status["rows_stored"] == 40 and status["events_rejected"] == 1
    assert list((tmp_path / "store" / "rows" / "churn").glob("date=*/part-*.parquet"))


def test_what_the_log_cannot_take_is_503_and_a_restart_brings_back_what_was_acknowledged(tmp_path) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    frame = synthetic.generate(600, seed=1)
    register_trained(registry, tmp_path, frame)
    registry.promote("churn", 1, actor="test")
    row = json.loads(frame[ServedVersion.load(registry, "churn", 1).spec.feature_names].head(1).to_json(orient="records"))
    store = tmp_path / "store"
    (store / "ingest").mkdir(parents=True)
    for seq in (1, 2):  # the log's first two segments land on a device that is always full
        os.symlink("/dev/full", store / "ingest" / f"log-{seq:016d}.wal")
    config = MonitorConfig.from_dict({"retrain": {"runner": "none"}})
    monitor = Monitor(registry, store, config, tick_seconds=3600)

    def half(event_id: str, kind: str, body: dict) -> dict:
        return {"content": json.dumps(body).encode(), "headers": {
            "ce-id": event_id, "ce-type": kind, "ce-inferenceservicename": "churn", "ce-modelversion": "1",
            "content-type": "application/json"}}

    with ServerThread(monitor.app, http=monitor.http_protocol()) as server, httpx.Client(base_url=server.url) as client:
        refused = [client.post("/events", **half("lost", REQUEST_TYPE, {"instances": row})),
                   client.post("/feedback", json=[{"id": "lost", "label": 1}])]
        accepted = [client.post("/events", **half("kept", REQUEST_TYPE, {"instances": row})),
                    client.post("/events", **half("kept", RESPONSE_TYPE, {"predictions": [1]})),
                    client.post("/feedback", json=[{"id": "kept", "label": 1}])]
        metrics = client.get("/metrics").text
    assert [r.status_code for r in refused] == [503, 503]
    assert all("could not write to its ingest log" in r.json()["error"] for r in refused)
    assert [r.status_code for r in accepted] == [202, 202, 200]
    assert "driftloop_monitor_log_failures_total 2.0" in metrics
    restarted = Monitor(registry, store, config, tick_seconds=3600)
    assert restarted.store.read("churn")["event_id"].tolist() == ["kept"]
    assert len(restarted.labels) == 1 and restarted.buffers["churn"].rows == 1  # back in the open window
    assert restarted.quality_since("churn", None)["labelled"] == 1


def test_v2_predictions_through_the_gateway_are_stored_like_v1s(tmp_path) -> None:
    """The same rows asked for over V1 and over V2 (one tensor per feature, as KServe's docs send them) reach the
    monitor through the gateway's payload log and are stored alike: every V2 prediction is logged too."""
    registry, frame, features = promoted_churn(tmp_path, 600)
    spec = ServedVersion.load(registry, "churn", 1).spec
    monitor = Monitor(registry, tmp_path / "store", tick_seconds=0.2)
    rows = json.loads(frame[features].head(12).to_json(orient="records"))
    datatype = {"numeric": "FP64", "categorical": "BYTES", "boolean": "BOOL"}

    def v2(chunk: list[dict]) -> dict:
        return {"parameters": {"content_type": "pd"}, "inputs": [
            {"name": f.name, "shape": [len(chunk)], "datatype": datatype[f.kind], "data": [r[f.name] for r in chunk]}
            for f in spec.features]}

    with ServerThread(monitor.app, http=monitor.http_protocol()) as receiver:
        gateway = Gateway(registry, logger_url=receiver.url + "/events")
        with ServerThread(gateway.app) as server, httpx.Client(base_url=server.url) as client:
            over_v1 = [client.post("/v1/models/churn:predict", json={"instances": rows[i:i + 3]}) for i in range(0, 12, 3)]
            over_v2 = [client.post("/v2/models/churn/infer", json=v2(rows[i:i + 3])) for i in range(0, 12, 3)]
            deadline = time.monotonic() + 15
            while monitor.store.rows_added < 24 and time.monotonic() < deadline:
                time.sleep(0.1)
        status = httpx.get(receiver.url + "/status").json()
    assert {a.status_code for a in over_v1 + over_v2} == {200}
    assert status["events_rejected"] == 0 and status["rows_stored"] == 24
    stored = monitor.store.read("churn")
    counts = stored.groupby([f.name for f in spec.features] + ["prediction"], dropna=False).size()
    assert len(counts) == 12 and set(counts) == {2}  # each row stored twice, once per protocol, and alike
    predictions = [p for answer in over_v1 for p in answer.json()["predictions"]]
    predictions += [p for answer in over_v2 for p in answer.json()["outputs"][0]["data"]]
    assert sorted(stored["prediction"].tolist()) == sorted(predictions)
