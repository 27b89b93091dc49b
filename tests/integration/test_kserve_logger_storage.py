"""Payload logs through object storage end to end on the loopback KServe (tests/cluster): InferenceServices built by
driftloop with ``logger_storage``, KServe's agent (emulated from pkg/logger) writing the served exchanges to S3
(moto), and the drift monitor reading them (``kserve_store``) with the rows it makes from the same exchanges
logged over HTTP."""

from __future__ import annotations

import json
import uuid
from contextlib import ExitStack

import httpx
import pandas as pd
import pytest
from kubernetes import client as kube

from driftloop import synthetic
from driftloop.deploy.inference_service import ServingConfig, build_inference_service, to_dict
from driftloop.logger_storage import object_prefix, parse_key
from driftloop.monitor.app import Monitor
from driftloop.monitor.config import MonitorConfig
from driftloop.registry import open_registry

from ..cluster.fixtures import stand_in_serving_runtime
from ..conftest import ServerThread, register_trained
from .test_monitor_ingest_modes import NO_RETRAIN, stored, wait_for_rows

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
EXCHANGES = 8
pytestmark = pytest.mark.timeout(300)


def _serve(cluster, api, namespace: str, version, config: ServingConfig) -> None:
    """The InferenceService driftloop builds for ``version``, on the stand-in runtime, created and ready."""
    api.create_namespaced_custom_object(GROUP, "v1alpha1", namespace, "servingruntimes",
                                        stand_in_serving_runtime(namespace))
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                        to_dict(build_inference_service(version, config)))
    cluster.wait_settled()
    status = cluster.inference_service(namespace, "churn")["status"]
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in status["conditions"]), status


def test_logger_storage_objects_make_the_rows_http_logging_makes(kserve_cluster, s3_server, tmp_path,
                                                                 monkeypatch) -> None:
    for name, value in s3_server.env.items():  # the monitor reaches the store as every s3:// user does
        monkeypatch.setenv(name, value)
    bucket = f"logs-{uuid.uuid4().hex[:10]}"
    registry = open_registry(f"s3://{bucket}/registry", s3_server.settings())
    registry.ensure_bucket()
    frame = synthetic.generate(600, seed=1)
    version = register_trained(registry, tmp_path, frame)
    registry.promote("churn", version.version, actor="test")
    features = frame.drop(columns=[synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN]).head(EXCHANGES)
    rows = json.loads(features.to_json(orient="records"))

    # Three InferenceServices serving the same version: one logging over HTTP to a monitor, two writing to S3
    # (JSON one record per object, KServe's default; Parquet in batches of 4, KServe >= 0.17).
    uris = {"json": f"s3://{bucket}/payload-logs/json", "parquet": f"s3://{bucket}/payload-logs/parquet"}
    namespaces = {kind: f"test-{uuid.uuid4().hex[:8]}" for kind in ("http", "json", "parquet")}
    config = MonitorConfig.from_dict(NO_RETRAIN)
    monitors = {"http": Monitor(registry, tmp_path / "http", config, tick_seconds=3600)}
    for kind, uri in uris.items():
        monitors[kind] = Monitor(registry, tmp_path / kind, MonitorConfig.from_dict(
            {**NO_RETRAIN, "kserve_store": {"uri": uri, "poll_seconds": 0.1}}), tick_seconds=3600)
    api = kube.CustomObjectsApi(kserve_cluster.api_client())
    with ExitStack() as stack:
        servers = {kind: stack.enter_context(ServerThread(monitor.app, http=monitor.http_protocol())) for kind, monitor in monitors.items()}
        for namespace in namespaces.values():
            stack.callback(kserve_cluster.delete_namespace, namespace)
        _serve(kserve_cluster, api, namespaces["http"], version,
               ServingConfig(namespace=namespaces["http"], logger_url=f"{servers['http'].url}/events"))
        _serve(kserve_cluster, api, namespaces["json"], version,
               ServingConfig(namespace=namespaces["json"], logger_storage=uris["json"]))
        _serve(kserve_cluster, api, namespaces["parquet"], version,
               ServingConfig(namespace=namespaces["parquet"], logger_storage=uris["parquet"],
                             logger_storage_format="parquet", logger_batch_size=4))

        for namespace in namespaces.values():  # the same exchanges (ids, bodies) through each one's ingress
            with httpx.Client(base_url=kserve_cluster.ingress_url, timeout=30,
                              headers={"Host": kserve_cluster.host(namespace, "churn")}) as http:
                for i, row in enumerate(rows):
                    answer = http.post("/v1/models/churn:predict", content=json.dumps({"instances": [row]}),
                                       headers={"Content-Type": "application/json", "Ce-Id": f"pair-{i:02d}"})
                    assert answer.status_code == 200 and answer.json() == {"predictions": [version.version]}
        for monitor in monitors.values():
            wait_for_rows(monitor, EXCHANGES)

    # Where the agent wrote is where driftloop says it writes (driftloop.logger_storage): under the logger's
    # url, <namespace>/<isvc>/predictor/<storage.path>/, one object per batch named after its first record.
    client = s3_server.settings().client()
    for kind, uri in uris.items():
        prefix = object_prefix(uri, namespaces[kind], "churn")
        keys = sorted(o.object_name for o in client.list_objects(bucket, prefix=f"payload-logs/{kind}/",
                                                                  recursive=True))
        assert keys and all(key.startswith(prefix + "/") for key in keys), (prefix, keys)
        objects = [parse_key(key) for key in keys]
        assert {o.extension for o in objects} == {kind}
        assert monitors[kind].kserve_store.status() == {"uri": uri, "objects_taken": len(keys), "objects_refused": 0}
        named = sorted((o.event_id, o.kind) for o in objects)
        if kind == "json":  # one record per object: each half of each exchange
            assert named == sorted((f"pair-{i:02d}", half) for i in range(EXCHANGES) for half in ("request", "response"))
        else:  # batches of 4 records (two exchanges), each named after its first record
            assert named == [(f"pair-{i:02d}", "request") for i in range(0, EXCHANGES, 2)]

    expected = stored(monitors["http"])
    assert len(expected) == EXCHANGES and set(expected["version"]) == {version.version}
    assert list(expected["event_id"]) == [f"pair-{i:02d}" for i in range(EXCHANGES)]
    pd.testing.assert_frame_equal(stored(monitors["json"]), expected)
    pd.testing.assert_frame_equal(stored(monitors["parquet"]), expected)
