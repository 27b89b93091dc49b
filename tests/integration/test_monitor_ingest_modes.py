"""The three ways payload logs reach the monitor make the same rows: KServe-agent binary events over HTTP,
CloudEvents batches from driftloop's gateway, and the objects KServe's agent writes to S3 (logger.storage)."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import os
import time

import httpx
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftloop import synthetic
from driftloop.monitor.app import Monitor
from driftloop.monitor.config import MonitorConfig
from driftloop.monitor.events import event_headers
from driftloop.registry import LocalRegistry
from driftloop.serving.payload_logger import BATCH_CONTENT_TYPE, REQUEST_TYPE, RESPONSE_TYPE, LoggedEvent
from driftloop.serving.versions import ServedVersion

from ..conftest import ServerThread, register_trained

PAIRS = 14
NO_RETRAIN = {"retrain": {"runner": "none"}}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A registry with a production version, and PAIRS single-row requests with that version's answers."""
    root = tmp_path_factory.mktemp("modes")
    registry = LocalRegistry(root / "registry")
    register_trained(registry, root, synthetic.generate(600, seed=1))
    registry.promote("churn", 1, actor="test")
    version = ServedVersion.load(registry, "churn", 1)
    frame = synthetic.generate(PAIRS, seed=5)
    frame.loc[3, "region"] = None  # a missing category travels as null in every mode
    rows = json.loads(frame[version.spec.feature_names].to_json(orient="records"))
    answers = [int(p) for p in version.predict(frame)]
    pairs = [(f"pair-{i:02d}", {"instances": [rows[i]]}, {"predictions": [answers[i]]}) for i in range(PAIRS)]
    return registry, pairs


def agent_headers(event_id: str, kind: str) -> dict[str, str]:
    """What KServe's agent sends: no model version, an empty endpoint, the version in ce-annotations."""
    return {"ce-specversion": "1.0", "ce-id": event_id, "ce-type": kind, "ce-source": "churn-predictor-abc",
            "ce-inferenceservicename": "churn", "ce-namespace": "ml", "ce-component": "predictor",
            "ce-endpoint": "", "ce-annotations": '{"driftloop.io/model-version":"1"}', "ce-metadata": "{}",
            "content-type": "application/json"}


def stored(monitor: Monitor) -> pd.DataFrame:
    rows = monitor.store.read("churn").drop(columns=["received_at"])
    return rows.sort_values(["event_id", "row"]).reset_index(drop=True)


def wait_for_rows(monitor: Monitor, count: int) -> None:
    deadline = time.monotonic() + 30
    while monitor.store.rows_added < count and time.monotonic() < deadline:
        time.sleep(0.05)


def kserve_record(event_id: str, kind: str, body: dict, go_names: bool = False) -> dict:
    """One LogRequest as the agent's JSON marshaller writes it (kserve pkg/logger/types.go)."""
    record = {"url": {"Scheme": "s3", "Host": "logs", "Path": "/payload"}, "bytes": base64.b64encode(
        orjson.dumps(body)).decode(), "contentType": "application/json", "reqType": kind, "id": event_id,
        "sourceUri": "churn-predictor-abc", "inferenceService": "churn", "namespace": "ml",
        "component": "predictor", "endpoint": "", "metadata": {},
        "annotations": {"driftloop.io/model-version": "1"}, "occurrenceTime": "2026-11-28T08:00:00Z"}
    if go_names:  # v0.15/v0.16: no json tags, Go's field names, one record per object
        record = {k[:1].upper() + k[1:]: v for k, v in record.items() if k not in ("occurrenceTime", "sourceUri")}
    return record


def flat(record: dict) -> dict:
    """The record as the Parquet and CSV marshallers flatten it (marshaller_record.go: JSON text, no url struct)."""
    return {"url": "s3://logs/payload", "bytes": record["bytes"], "contentType": record["contentType"],
            "reqType": record["reqType"], "id": record["id"], "sourceUri": record["sourceUri"],
            "inferenceService": record["inferenceService"], "namespace": record["namespace"],
            "component": record["component"], "endpoint": record["endpoint"],
            # As Go's encoding/json writes a map: compact, keys sorted (tests/cluster/blob_store.py's agent too).
            "metadata": json.dumps(record["metadata"], separators=(",", ":"), sort_keys=True),
            "annotations": json.dumps(record["annotations"], separators=(",", ":"), sort_keys=True),
            "certName": "", "tlsSkipVerify": False}


def write_kserve_objects(s3_server, pairs, prefix: str) -> None:
    """The pairs as the agent's blob store writes them, in every format and batching it has: one record per
    object (JSON, camelCase and Go names), a JSON array, Parquet and CSV batches; request and response of a
    pair often in different objects."""
    client = s3_server.settings().client()
    if not client.bucket_exists("logs"):
        client.make_bucket("logs")
    base = f"{prefix}/ml/churn/predictor/v1"

    def put(key: str, data: bytes) -> None:
        client.put_object("logs", f"{base}/{key}", io.BytesIO(data), len(data))

    records = [kserve_record(event_id, kind, body)
               for event_id, request, response in pairs
               for kind, body in ((REQUEST_TYPE, request), (RESPONSE_TYPE, response))]
    for record in records[:4]:  # batch size 1 (the default): <id>-<request|response>.json
        put(f"{record['id']}-{record['reqType'].rsplit('.', 1)[1]}.json", orjson.dumps(record))
    for record in records[4:6]:
        legacy = kserve_record(record["id"], record["reqType"], orjson.loads(base64.b64decode(record["bytes"])),
                               go_names=True)
        put(f"{record['id']}-{record['reqType'].rsplit('.', 1)[1]}.json", orjson.dumps(legacy))
    put(f"{records[6]['id']}-request.json", orjson.dumps(records[6:13]))  # a batch splits a pair
    table = pa.Table.from_pylist([flat(r) for r in records[13:20]])
    sink = io.BytesIO()
    pq.write_table(table, sink)
    put(f"{records[13]['id']}-response.parquet", sink.getvalue())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(flat(records[0])), lineterminator="\n")
    writer.writeheader()
    for record in records[20:]:
        writer.writerow({k: str(v).lower() if isinstance(v, bool) else v for k, v in flat(record).items()})
    put(f"{records[20]['id']}-request.csv", text.getvalue().encode())


def test_batches_and_kserve_store_objects_make_the_rows_binary_events_make(served, tmp_path, s3_server,
                                                                          monkeypatch) -> None:
    registry, pairs = served
    config = MonitorConfig.from_dict(NO_RETRAIN)

    binary = Monitor(registry, tmp_path / "binary", config, tick_seconds=3600)
    with ServerThread(binary.app) as server, httpx.Client(base_url=server.url) as client:
        answers = [client.post("/events", content=orjson.dumps(body), headers=agent_headers(event_id, kind))
                   for event_id, request, response in pairs
                   for kind, body in ((REQUEST_TYPE, request), (RESPONSE_TYPE, response))]
    assert {a.status_code for a in answers} == {202}

    batched = Monitor(registry, tmp_path / "batched", config, tick_seconds=3600)
    source = "http://driftloop-gateway/v1/models/churn"
    events = [LoggedEvent(event_id, kind, "churn", "default", orjson.dumps(body), 1).structured("local", source)
              for event_id, request, response in pairs
              for kind, body in ((REQUEST_TYPE, request), (RESPONSE_TYPE, response))]
    batch_headers = {"content-type": BATCH_CONTENT_TYPE}
    with ServerThread(batched.app) as server, httpx.Client(base_url=server.url) as client:
        refused = [client.post("/events", content=b"[" + b",".join(events[:3]) + b',{"type": "x"}]',
                               headers=batch_headers),
                   client.post("/events", content=b'{"not": "a batch"}', headers=batch_headers)]
        first = client.post("/events", content=b"[" + b",".join(events[:9]) + b"]", headers=batch_headers)
        second = client.post("/events", content=b"[" + b",".join(events[9:]) + b"]", headers=batch_headers)
    assert [r.status_code for r in refused] == [400, 400] and all("error" in r.json() for r in refused)
    assert first.status_code == second.status_code == 202
    assert first.json()["accepted"] == 9 and first.json()["rows"] == 4 and second.json()["rejected"] == []

    for name, value in s3_server.env.items():  # the monitor reaches the store as every s3:// user does
        monkeypatch.setenv(name, value)
    write_kserve_objects(s3_server, pairs, "payload")
    store_config = MonitorConfig.from_dict({**NO_RETRAIN, "kserve_store": {"uri": "s3://logs/payload",
                                                                           "poll_seconds": 0.1}})
    from_store = Monitor(registry, tmp_path / "store", store_config, tick_seconds=3600)
    with ServerThread(from_store.app):
        wait_for_rows(from_store, PAIRS)
    assert from_store.kserve_store.status()["objects_taken"] == 6 + 1 + 1 + 1  # single records, JSON, Parquet, CSV

    expected = stored(binary)
    assert len(expected) == PAIRS and set(expected["version"]) == {1} and set(expected["endpoint"]) == {"default"}
    pd.testing.assert_frame_equal(stored(batched), expected)
    pd.testing.assert_frame_equal(stored(from_store), expected)

    # Restarted, the store source takes nothing twice: which objects were taken is in the log's checkpoint.
    restarted = Monitor(registry, tmp_path / "store", store_config, tick_seconds=3600)
    assert asyncio.run(restarted.kserve_store.poll()) == 0
    pd.testing.assert_frame_equal(stored(restarted), expected)


def test_a_batch_is_acknowledged_only_once_it_is_on_disk(served, tmp_path) -> None:
    registry, pairs = served
    store = tmp_path / "store"
    (store / "ingest").mkdir(parents=True)
    os.symlink("/dev/full", store / "ingest" / f"log-{1:016d}.wal")  # the log's first segment cannot be written
    config = MonitorConfig.from_dict(NO_RETRAIN)
    monitor = Monitor(registry, store, config, tick_seconds=3600)
    source = "http://driftloop-gateway/v1/models/churn"

    def batch(selected) -> bytes:
        return b"[" + b",".join(LoggedEvent(event_id, kind, "churn", "default", orjson.dumps(body), 1)
                                .structured("local", source)
                                for event_id, request, response in selected
                                for kind, body in ((REQUEST_TYPE, request), (RESPONSE_TYPE, response))) + b"]"

    headers = {"content-type": BATCH_CONTENT_TYPE}
    with ServerThread(monitor.app, http=monitor.http_protocol()) as server, httpx.Client(base_url=server.url) as client:
        lost = client.post("/events", content=batch(pairs[:5]), headers=headers)
        kept = client.post("/events", content=batch(pairs[5:8]), headers=headers)
        assert monitor.store.read("churn")["event_id"].nunique() == 3  # none of the refused batch was applied
        # As after a crash now: no checkpoint was written (the tick is an hour away), only the log holds the
        # batch; a new monitor starts on the store (read before the first one's shutdown checkpoints).
        after_crash = Monitor(registry, store, config, tick_seconds=3600).store.read("churn")
    assert lost.status_code == 503 and "could not write to its ingest log" in lost.json()["error"]
    assert kept.status_code == 202 and kept.json()["rows"] == 3
    assert sorted(after_crash["event_id"]) == [p[0] for p in pairs[5:8]]


def _v2_bodies(request: dict, response: dict, kinds: dict[str, str]) -> tuple[dict, dict]:
    """A V1 pair as the same prediction over V2 (Open Inference Protocol): one tensor per feature, as a client
    sends it and KServe's agent logs it; the answer as V2 outputs."""
    datatype = {"numeric": "FP64", "categorical": "BYTES", "boolean": "BOOL"}
    row = request["instances"][0]
    inputs = [{"name": name, "shape": [1], "datatype": datatype[kind], "data": [row[name]]}
              for name, kind in kinds.items()]
    outputs = [{"name": "output-0", "shape": [1], "datatype": "INT64", "data": response["predictions"]}]
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}, {"model_name": "churn", "outputs": outputs}


def test_v2_requests_as_clients_send_them_and_as_the_gateway_logs_them_make_the_rows_v1_makes(served,
                                                                                            tmp_path) -> None:
    """KServe's agent logs a V2 request's body as the client sent it, driftloop's gateway as KServe's
    ``InferRequest.to_rest()``: both are decoded as V2, and make the rows the same predictions made over V1."""
    from kserve.protocol.infer_type import InferRequest
    from kserve.protocol.rest.v2_datamodels import InferenceRequest

    registry, pairs = served
    kinds = {f.name: f.kind for f in ServedVersion.load(registry, "churn", 1).spec.features}
    config = MonitorConfig.from_dict(NO_RETRAIN)
    made = {}
    for label in ("v1", "v2 as sent", "v2 as the gateway logs it"):
        monitor = Monitor(registry, tmp_path / label, config, tick_seconds=3600)
        with ServerThread(monitor.app) as server, httpx.Client(base_url=server.url) as client:
            answers = []
            for event_id, request, response in pairs:
                if label != "v1":
                    request, response = _v2_bodies(request, response, kinds)
                if label == "v2 as the gateway logs it":
                    request = InferRequest.from_inference_request(InferenceRequest(**request), "churn").to_rest()[0]
                answers += [client.post("/events", content=orjson.dumps(body), headers=agent_headers(event_id, kind))
                            for kind, body in ((REQUEST_TYPE, request), (RESPONSE_TYPE, response))]
        assert {a.status_code for a in answers} == {202}, [a.text for a in answers if a.status_code != 202][:2]
        made[label] = stored(monitor)
    assert len(made["v1"]) == PAIRS
    pd.testing.assert_frame_equal(made["v2 as sent"], made["v1"])
    pd.testing.assert_frame_equal(made["v2 as the gateway logs it"], made["v1"])


def test_a_v2_request_that_does_not_decode_is_refused_and_the_monitor_restarts(served, tmp_path) -> None:
    """A V2 tensor whose values its datatype cannot hold (an INT64 above 2**63 - 1), or a datatype KServe does not
    know, is the sender's mistake: the pair is answered 400, and the log that holds it replays at the next start."""
    registry, pairs = served
    kinds = {f.name: f.kind for f in ServedVersion.load(registry, "churn", 1).spec.features}
    config = MonitorConfig.from_dict(NO_RETRAIN)
    event_id, request, response = pairs[0]
    v2_request, v2_response = _v2_bodies(request, response, kinds)
    numeric = next(name for name, kind in kinds.items() if kind == "numeric")
    too_large = {**v2_request, "inputs": [{**t, "datatype": "INT64", "data": [2 ** 63]} if t["name"] == numeric
                                          else t for t in v2_request["inputs"]]}
    unknown_type = {**v2_request, "inputs": [{**t, "datatype": "FP99"} if t["name"] == numeric else t
                                             for t in v2_request["inputs"]]}
    monitor = Monitor(registry, tmp_path / "served", config, tick_seconds=3600)
    with ServerThread(monitor.app) as server, httpx.Client(base_url=server.url) as client:
        answers = {}
        for label, body in (("too large", too_large), ("unknown datatype", unknown_type)):
            first = client.post("/events", content=orjson.dumps(body), headers=agent_headers(label, REQUEST_TYPE))
            answers[label] = (first.status_code, client.post("/events", content=orjson.dumps(v2_response),
                                                             headers=agent_headers(label, RESPONSE_TYPE)))
    for label, (first, second) in answers.items():
        assert first == 202 and second.status_code == 400, label  # a lone request half is taken, the pair not
        assert "request does not decode" in second.json()["error"], second.json()
    assert f"input '{numeric}'" in answers["too large"][1].json()["error"]

    # Killed before a checkpoint, the monitor's log holds the refused pairs' halves and a good pair; the next
    # start replays them all, refuses the bad pairs again and keeps the good one.
    crashed = Monitor(registry, tmp_path / "crashed", config, tick_seconds=3600)

    async def send() -> list[int]:
        posts = [(label, kind, body) for label, body in (("too large", too_large), ("unknown datatype", unknown_type),
                                                         (event_id, v2_request))
                 for kind, body in ((REQUEST_TYPE, body), (RESPONSE_TYPE, v2_response))]
        return [(await crashed.take_events("application/json", event_headers(agent_headers(label, kind)),
                                           orjson.dumps(body)))[0] for label, kind, body in posts]

    assert asyncio.run(send()) == [202, 400, 202, 400, 202, 202]
    crashed.ingest.journal.close()  # no checkpoint: everything is in the log
    restarted = Monitor(registry, tmp_path / "crashed", config, tick_seconds=3600)
    assert restarted.ingest.replayed == 6
    assert list(restarted.recent["churn"][0].features) == list(kinds)
    assert [rows.event_id for rows in restarted.recent["churn"]] == [event_id]
