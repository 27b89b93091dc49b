"""The KServe emulator (tests/cluster) keeps the semantics users rely on; each test cites its upstream source.

The rollouts run real processes (the stand-in runtime) fed by KServe's storage initializer from moto's S3, behind
the emulated ingress, and are driven through the official kubernetes client like the project's deploy step.
"""

from __future__ import annotations

import collections
import io
import json
import time
import uuid

import httpx
import pytest
from kubernetes import client as kube
from kubernetes import config as kube_config
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from driftloop import synthetic
from driftloop.registry import open_registry

from ..cluster.fixtures import driftloop_serving_runtime, stand_in_serving_runtime, upload_stand_in_model
from ..conftest import register_trained

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def api(kserve_cluster, kserve_namespace) -> kube.CustomObjectsApi:
    """The kubernetes client on the emulator, with the stand-in ServingRuntime ``driftloop`` in the namespace."""
    custom = kube.CustomObjectsApi(kserve_cluster.api_client())
    custom.create_namespaced_custom_object(GROUP, "v1alpha1", kserve_namespace, "servingruntimes",
                                           stand_in_serving_runtime(kserve_namespace))
    return custom


@pytest.fixture
def models(s3_server):
    """Uploads stand-in model versions: ``models(version, corrupt=False) -> storageUri``."""
    bucket = f"emu-{uuid.uuid4().hex[:10]}"
    return lambda version, corrupt=False: upload_stand_in_model(s3_server.settings(), bucket, "registry", "churn",
                                                                version, corrupt)


def _isvc(namespace: str, storage_uri: str, mode: str = "Serverless", **predictor) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
            "metadata": {"name": "churn", "namespace": namespace,
                         "annotations": {"serving.kserve.io/deploymentMode": mode}},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "runtime": "driftloop",
                                             "storageUri": storage_uri}, **predictor}}}


def _patch(api, namespace: str, body: dict) -> dict:
    return api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "churn", body)


def _versions(cluster, namespace: str, n: int, host: str | None = None) -> collections.Counter:
    """Sends ``n`` V1 predictions through the ingress; counts the model version that answered each."""
    counts: collections.Counter = collections.Counter()
    with httpx.Client(base_url=cluster.ingress_url, headers={"Host": host or cluster.host(namespace, "churn")},
                      timeout=30) as http:
        for _ in range(n):
            response = http.post("/v1/models/churn:predict", json={"instances": [[1.0, 2.0]]})
            counts[response.json()["predictions"][0] if response.status_code == 200 else response.status_code] += 1
    return counts


def _predictor(isvc: dict) -> dict:
    return isvc["status"]["components"]["predictor"]


def _condition(isvc: dict, condition_type: str) -> dict:
    return next((c for c in isvc["status"].get("conditions", []) if c["type"] == condition_type), {})


def _traffic(isvc: dict) -> list[tuple]:
    return sorted((t["revisionName"], t["percent"], t.get("tag", ""), t["latestRevision"])
                  for t in _predictor(isvc)["traffic"])


def _settled(cluster, namespace: str) -> dict:
    cluster.wait_settled()
    return cluster.inference_service(namespace, "churn")


def test_first_rollout_ignores_canary_traffic_percent(kserve_cluster, kserve_namespace, api, models) -> None:
    # ksvc_reconciler.go createKnativeService: P is used only once latestRolledoutRevision is set, so the
    # first deployment is a single `latestRevision: true, percent: 100` target; revisions are <ksvc>-0000N.
    # Once that revision is rolled out, the next reconcile splits P / 100-P over the same revision (latest and
    # `prev` both resolve to it), so everything still lands on it.
    api.create_namespaced_custom_object(GROUP, VERSION, kserve_namespace, PLURAL,
                                        _isvc(kserve_namespace, models(1), canaryTrafficPercent=10))
    isvc = _settled(kserve_cluster, kserve_namespace)

    assert _condition(isvc, "Ready")["status"] == "True"
    assert _traffic(isvc) == [("churn-predictor-00001", 10, "", True), ("churn-predictor-00001", 90, "prev", False)]
    assert _predictor(isvc)["latestRolledoutRevision"] == "churn-predictor-00001"
    assert isvc["status"]["url"] == f"http://churn.{kserve_namespace}.example.com"
    assert _versions(kserve_cluster, kserve_namespace, 10) == {1: 10}
    path_form = httpx.post(f"{kserve_cluster.url(kserve_namespace, 'churn')}/v1/models/churn:predict",
                           json={"instances": [[1.0]]})
    assert path_form.json() == {"predictions": [1]}


def test_serverless_canary_split_promote_and_roll_back(kserve_cluster, kserve_namespace, api, models) -> None:
    api.create_namespaced_custom_object(GROUP, VERSION, kserve_namespace, PLURAL, _isvc(kserve_namespace, models(1)))
    _settled(kserve_cluster, kserve_namespace)

    # A canary at P: the latest revision takes P %, `prev` (the rolled-out revision) the rest
    # (ksvc_reconciler.go createKnativeService; Knative route traffic.go resolves latestRevision).
    _patch(api, kserve_namespace, {"spec": {"predictor": {"canaryTrafficPercent": 20, "model": {
        "storageUri": models(2)}}}})
    isvc = _settled(kserve_cluster, kserve_namespace)
    assert _traffic(isvc) == [("churn-predictor-00001", 80, "prev", False), ("churn-predictor-00002", 20, "", True)]
    assert _predictor(isvc)["latestRolledoutRevision"] == "churn-predictor-00001"  # a canary never moves it
    assert _versions(kserve_cluster, kserve_namespace, 100) == {1: 80, 2: 20}
    prev_host = f"prev-churn-predictor.{kserve_namespace}.example.com"  # knative tag host {{.Tag}}-{{.Name}}
    assert _versions(kserve_cluster, kserve_namespace, 5, host=prev_host) == {1: 5}

    # queue-proxy counted each revision's requests (knative pkg/queue/request_metric.go), and the file_sd
    # targets carry the labels a PodMonitor would give.
    targets = [t for t in json.loads(kserve_cluster.scrape_targets.path.read_text())
               if t["labels"]["namespace"] == kserve_namespace]
    queue_proxies = {t["labels"]["revision"]: t for t in targets if t["labels"]["job"] == "driftloop-queue-proxy"}
    counts = {}
    for revision, target in queue_proxies.items():
        assert target["labels"]["inferenceservice"] == "churn" and target["labels"]["service"] == "churn-predictor"
        text = httpx.get(f"http://{target['targets'][0]}/metrics").text
        line = next(x for x in text.splitlines()
                    if x.startswith('kn_serving_invocation_duration_seconds_count{http_response_status_code="200"}'))
        counts[revision] = float(line.split()[-1])
    assert counts == {"churn-predictor-00001": 85.0, "churn-predictor-00002": 20.0}
    runtimes = [t["labels"] for t in targets if t["labels"]["job"] == "driftloop-runtime"]
    assert {r["deployment"] for r in runtimes} == {"churn-predictor-00001-deployment", "churn-predictor-00002-deployment"}

    # Promote = remove P: the latest takes 100 %, and PropagateStatus rolls latestRolledoutRevision forward.
    _patch(api, kserve_namespace, {"spec": {"predictor": {"canaryTrafficPercent": None}}})
    isvc = _settled(kserve_cluster, kserve_namespace)
    assert _traffic(isvc) == [("churn-predictor-00002", 100, "", True)]
    assert (_predictor(isvc)["latestRolledoutRevision"], _predictor(isvc)["previousRolledoutRevision"]) == (
        "churn-predictor-00002", "churn-predictor-00001")
    assert _versions(kserve_cluster, kserve_namespace, 10) == {2: 10}

    # Roll back = P 0 right after the promotion: PropagateStatus reverts latestRolledoutRevision (the split is over
    # one revision), the next reconcile points `prev` at the older revision, which takes everything again.
    _patch(api, kserve_namespace, {"spec": {"predictor": {"canaryTrafficPercent": 0}}})
    isvc = _settled(kserve_cluster, kserve_namespace)
    assert _traffic(isvc) == [("churn-predictor-00001", 100, "prev", False), ("churn-predictor-00002", 0, "", True)]
    assert _predictor(isvc)["latestRolledoutRevision"] == "churn-predictor-00001"
    assert _versions(kserve_cluster, kserve_namespace, 10) == {1: 10}
    # a change of canaryTrafficPercent alone creates no revision (it is not part of the revision template)
    assert [r["name"] for r in kserve_cluster.revisions(kserve_namespace, "churn")] == [
        "churn-predictor-00001", "churn-predictor-00002"]


def test_a_failed_revision_never_gets_traffic_and_status_says_why(kserve_cluster, kserve_namespace, api, models) -> None:
    api.create_namespaced_custom_object(GROUP, VERSION, kserve_namespace, PLURAL, _isvc(kserve_namespace, models(1)))
    _settled(kserve_cluster, kserve_namespace)

    _patch(api, kserve_namespace, {"spec": {"predictor": {"canaryTrafficPercent": 50, "model": {
        "storageUri": models(2, corrupt=True)}}}})
    isvc = _settled(kserve_cluster, kserve_namespace)

    # knative revision_lifecycle.go: ContainerHealthy False "ExitCode1", "Container failed with: <log tail>";
    # configuration.go: the Configuration (so the ksvc, so PredictorReady) fails with the revision's message.
    predictor_ready = _condition(isvc, "PredictorReady")
    assert predictor_ready["status"] == "False" and predictor_ready["reason"] == "RevisionFailed"
    assert "churn-predictor-00002" in predictor_ready["message"]
    assert "Container failed with: stand-in runtime: refusing to start: model.joblib sha256" in predictor_ready["message"]
    failure = isvc["status"]["modelStatus"]
    assert failure["transitionStatus"] == "BlockedByFailedLoad"
    assert failure["lastFailureInfo"]["reason"] == "ModelLoadFailed" and failure["lastFailureInfo"]["exitCode"] == 1
    # latestRevision resolves to the latest *ready* revision, so the canary's share stays on the old one
    assert _predictor(isvc)["latestReadyRevision"] == "churn-predictor-00001"
    assert {name for name, *_ in _traffic(isvc)} == {"churn-predictor-00001"}
    assert _versions(kserve_cluster, kserve_namespace, 20) == {1: 20}

    # Nothing under the storageUri: the storage initializer fails at once and KServe's modelStatus says so
    # (PropagateModelStatus reads the init container); Knative only sees a pod that never becomes ready, so the
    # revision fails at its progress deadline (knative revision_lifecycle.go; here 3 s by its annotation).
    missing = models(1).replace("/versions/1/", "/versions/404/")
    _patch(api, kserve_namespace, {"spec": {"predictor": {
        "annotations": {"serving.knative.dev/progress-deadline": "3s"}, "model": {"storageUri": missing}}}})
    isvc = kserve_cluster.wait_for(kserve_namespace, "churn", lambda i: "No model found" in i["status"].get(
        "modelStatus", {}).get("lastFailureInfo", {}).get("message", ""), what="storage initializer failure")
    assert isvc["status"]["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    isvc = kserve_cluster.wait_for(kserve_namespace, "churn", lambda i: "Initial scale was never achieved" in _condition(
        i, "PredictorReady").get("message", ""), what="progress deadline")
    assert _condition(isvc, "PredictorReady")["status"] == "False"
    assert kserve_cluster.revisions(kserve_namespace, "churn")[-1]["reason"] == "ProgressDeadlineExceeded"
    assert _versions(kserve_cluster, kserve_namespace, 10) == {1: 10}


def test_standard_mode_routes_only_to_ready_canaries(kserve_cluster, kserve_namespace, api, models) -> None:
    api.create_namespaced_custom_object(GROUP, VERSION, kserve_namespace, PLURAL,
                                        _isvc(kserve_namespace, models(1), mode="Standard", name="v1"))
    _settled(kserve_cluster, kserve_namespace)

    # the CRD requires `name` (the container's) in a canary's model, unlike in spec.predictor.model
    canaries = [{"predictor": {"name": "v2", "model": {"name": "kserve-container", "modelFormat": {"name": "sklearn"},
                                                       "storageUri": models(2)}}, "trafficPercent": 30},
                {"predictor": {"name": "v3", "model": {"name": "kserve-container", "modelFormat": {"name": "sklearn"},
                                                       "storageUri": models(3, corrupt=True)}}, "trafficPercent": 20}]
    _patch(api, kserve_namespace, {"spec": {"canary": canaries}})
    isvc = _settled(kserve_cluster, kserve_namespace)

    # predictor.go reconcileCanaryDeployments: canaryStatuses in spec order, ready = availableReplicas > 0
    assert isvc["status"]["canaryStatuses"] == [{"name": "v2", "ready": True, "trafficPercent": 30},
                                                {"name": "v3", "ready": False, "trafficPercent": 20}]
    assert _condition(isvc, "CanaryPredictorReady")["reason"] == "CanariesNotReady"
    assert _condition(isvc, "Ready")["status"] == "True"  # CanaryPredictorReady is not part of Ready
    # httproute_reconciler.go applyCanaryWeights: stable 100 - Σ ready canaries, not-ready canaries get nothing
    assert _versions(kserve_cluster, kserve_namespace, 100) == {1: 70, 2: 30}
    assert {d["name"] for d in kserve_cluster.deployments(kserve_namespace, "churn")} == {
        "churn-v1-predictor", "churn-v2-predictor", "churn-v3-predictor"}

    # Promotion (inference_service.go API comment): the stable predictor takes the canary's name and model and the
    # canary entry goes; the Deployments no longer expected are deleted.
    promoted = {"name": "v2", "model": {"modelFormat": {"name": "sklearn"}, "runtime": "driftloop",
                                        "storageUri": models(2)}}
    _patch(api, kserve_namespace, {"spec": {"predictor": promoted, "canary": None}})
    isvc = _settled(kserve_cluster, kserve_namespace)
    assert "canaryStatuses" not in isvc["status"] and _condition(isvc, "CanaryPredictorReady") == {}
    assert [d["name"] for d in kserve_cluster.deployments(kserve_namespace, "churn")] == ["churn-v2-predictor"]
    assert _versions(kserve_cluster, kserve_namespace, 10) == {2: 10}


def test_logger_posts_cloudevents_with_the_annotation(kserve_cluster, kserve_namespace, api, models,
                                                      event_sink) -> None:
    logger = {"mode": "all", "url": event_sink.url, "metadataAnnotations": ["driftloop.io/model-version"]}
    api.create_namespaced_custom_object(GROUP, VERSION, kserve_namespace, PLURAL, _isvc(
        kserve_namespace, models(1), logger=logger, annotations={"driftloop.io/model-version": "1"}))
    _settled(kserve_cluster, kserve_namespace)

    body = json.dumps({"instances": [[1.0, 2.0]]})
    with httpx.Client(base_url=kserve_cluster.ingress_url, timeout=30,
                      headers={"Host": kserve_cluster.host(kserve_namespace, "churn")}) as http:
        answered = http.post("/v1/models/churn:predict", content=body,
                             headers={"Content-Type": "application/json", "X-Request-Id": "r-1"})
        refused = http.post("/v1/models/churn:predict", content="not json", headers={"Ce-Id": "bad-1"})
    assert answered.status_code == 200 and refused.status_code == 400
    deadline = time.monotonic() + 10
    while len(event_sink.events) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # a fourth event (a response to the 400) would arrive by now

    # pkg/logger handler.go + worker.go: binary CloudEvents, one id per exchange, no response event unless 200
    events = {(e.headers["ce-id"], e.headers["ce-type"].rsplit(".", 1)[-1]): e for e in event_sink.events}
    assert len(event_sink.events) == 3 and ("bad-1", "request") in events and ("bad-1", "response") not in events
    [exchange_id] = {i for i, _ in events if i != "bad-1"}
    request, response = events[(exchange_id, "request")], events[(exchange_id, "response")]
    pod = next(r["pod"] for r in kserve_cluster.revisions(kserve_namespace, "churn"))
    for event in (request, response):
        assert event.headers["ce-specversion"] == "1.0" and event.headers["ce-source"] == pod
        assert event.headers["ce-inferenceservicename"] == "churn"
        assert event.headers["ce-namespace"] == kserve_namespace
        assert event.headers["ce-component"] == "predictor" and event.headers["ce-endpoint"] == ""
        assert json.loads(event.headers["ce-annotations"]) == {"driftloop.io/model-version": "1"}
        assert event.headers["content-type"] == "application/json"  # the request's, also on the response event
    assert request.body == body.encode() and json.loads(response.body) == answered.json()


def test_api_server_speaks_kubernetes(kserve_cluster, kserve_namespace, api, models, tmp_path) -> None:
    kube_config.load_kube_config(config_file=str(kserve_cluster.write_kubeconfig(tmp_path / "kubeconfig")))
    custom = kube.CustomObjectsApi()  # the default client, configured from the kubeconfig
    created = custom.create_namespaced_custom_object(GROUP, VERSION, kserve_namespace, PLURAL,
                                                     _isvc(kserve_namespace, models(1)))
    meta = created["metadata"]
    watching = watch.Watch()  # as a client waits for readiness: a watch with a field selector
    for event in watching.stream(custom.list_namespaced_custom_object, GROUP, VERSION, kserve_namespace, PLURAL,
                                 field_selector="metadata.name=churn", timeout_seconds=60):
        if "status" in event["object"] and _condition(event["object"], "Ready").get("status") == "True":
            watching.stop()
    assert _condition(custom.get_namespaced_custom_object(GROUP, VERSION, kserve_namespace, PLURAL, "churn"),
                      "Ready")["status"] == "True"
    assert meta["generation"] == 1 and meta["uid"] and meta["creationTimestamp"] and meta["resourceVersion"]
    # KServe's defaulter normalises the legacy mode name (inference_service_defaults.go)
    assert meta["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"

    with pytest.raises(ApiException) as exists:
        custom.create_namespaced_custom_object(GROUP, VERSION, kserve_namespace, PLURAL, _isvc(kserve_namespace, "s3://b/m/"))
    assert exists.value.status == 409 and json.loads(exists.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as missing:
        custom.get_namespaced_custom_object(GROUP, VERSION, kserve_namespace, PLURAL, "nope")
    assert missing.value.status == 404 and json.loads(missing.value.body)["kind"] == "Status"

    # metadata.generation moves on spec changes only; status written on the main resource is ignored
    labelled = custom.patch_namespaced_custom_object(GROUP, VERSION, kserve_namespace, PLURAL, "churn", {
        "metadata": {"labels": {"team": "a"}}, "status": {"url": "http://forged"}})
    assert labelled["metadata"]["generation"] == 1 and labelled.get("status", {}).get("url") != "http://forged"
    changed = custom.api_client.call_api(
        f"/apis/{GROUP}/{VERSION}/namespaces/{kserve_namespace}/{PLURAL}/churn", "PATCH",
        header_params={"Content-Type": "application/json-patch+json", "Accept": "application/json"},
        body=[{"op": "add", "path": "/spec/predictor/canaryTrafficPercent", "value": 10}],
        response_type="object", _return_http_data_only=True)
    assert changed["metadata"]["generation"] == 2

    stale = dict(changed, metadata={**changed["metadata"], "resourceVersion": meta["resourceVersion"]})
    with pytest.raises(ApiException) as conflict:
        custom.replace_namespaced_custom_object(GROUP, VERSION, kserve_namespace, PLURAL, "churn", stale)
    assert conflict.value.status == 409 and json.loads(conflict.value.body)["reason"] == "Conflict"

    with pytest.raises(ApiException) as invalid:  # the CRD's openAPIV3Schema
        _patch(custom, kserve_namespace, {"spec": {"predictor": {"canaryTrafficPercent": "ten"}}})
    assert invalid.value.status == 422 and "spec.predictor.canaryTrafficPercent" in json.loads(invalid.value.body)["message"]
    with pytest.raises(ApiException) as denied:  # validateLogger: no default for mode
        _patch(custom, kserve_namespace, {"spec": {"predictor": {"logger": {"url": "http://x"}}}})
    assert denied.value.status == 403 and "invalid logger type" in json.loads(denied.value.body)["message"]
    with pytest.raises(ApiException) as canary_denied:  # validateCanarySpecs: Standard mode only
        _patch(custom, kserve_namespace, {"spec": {"canary": [{"predictor": {"name": "v2", "model": {
            "name": "kserve-container", "modelFormat": {"name": "sklearn"}, "storageUri": "s3://b/v2/"}},
            "trafficPercent": 10}]}})
    assert canary_denied.value.status == 403
    assert "canary is only supported in Standard deployment mode" in json.loads(canary_denied.value.body)["message"]

    recorded = [r for r in kserve_cluster.requests
                if r.method == "PATCH" and r.path == f"/apis/{GROUP}/{VERSION}/namespaces/{kserve_namespace}/{PLURAL}/churn"]
    assert [r.content_type for r in recorded][:2] == ["application/merge-patch+json", "application/json-patch+json"]
    assert recorded[1].body == [{"op": "add", "path": "/spec/predictor/canaryTrafficPercent", "value": 10}]


def test_storage_initializer_downloads_by_string_prefix(s3_server, tmp_path) -> None:
    # kserve_storage.py _download_s3: the listing uses the key *prefix*, so ".../model" also matches
    # ".../model_card.md" (saved as "_card.md"); a prefix equal to an object key fetches only that object.
    from ..cluster import storage_initializer

    client = s3_server.settings().client()
    bucket = f"emu-{uuid.uuid4().hex[:10]}"
    client.make_bucket(bucket)
    for key in ("m/model/a.pkl", "m/model/sub/b.json", "m/model_card.md", "m/model/empty", "m/other"):
        data = b"" if key.endswith("empty") else key.encode()
        client.put_object(bucket, key, io.BytesIO(data), len(data))

    def files(uri: str) -> set[str]:
        target = tmp_path / uuid.uuid4().hex
        target.mkdir()
        storage_initializer.download(uri, target, s3_server.settings())
        return {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}

    assert files(f"s3://{bucket}/m/model") == {"a.pkl", "sub/b.json", "_card.md"}
    assert files(f"s3://{bucket}/m/model/") == {"a.pkl", "sub/b.json"}
    assert files(f"s3://{bucket}/m/model/a.pkl") == {"a.pkl"}
    with pytest.raises(storage_initializer.StorageError, match="No model found in m/nothing"):
        files(f"s3://{bucket}/m/nothing")


def _runtime_requests(cluster, namespace: str) -> collections.Counter:
    """``driftloop_requests_total{outcome="ok"}`` per version, scraped from every runtime target of ``namespace``."""
    counts: collections.Counter = collections.Counter()
    for target in json.loads(cluster.scrape_targets.path.read_text()):
        if target["labels"]["namespace"] != namespace or target["labels"]["job"] != "driftloop-runtime":
            continue
        for line in httpx.get(f"http://{target['targets'][0]}/metrics").text.splitlines():
            if line.startswith("driftloop_requests_total{") and 'outcome="ok"' in line:
                version = line.split('version="', 1)[1].split('"', 1)[0]
                counts[version] += int(float(line.split()[-1]))
    return counts


def test_the_real_runtime_serves_registered_versions_through_a_canary(kserve_cluster, kserve_namespace, s3_server,
                                                                       prometheus, tmp_path) -> None:
    # CONTRACT.md: the project's ServingRuntime (manifests/base, applied as it is) runs `python -m
    # driftloop.serving.runtime` on the model directory KServe's storage initializer copies from the registry.
    registry = open_registry(f"s3://emu-{uuid.uuid4().hex[:10]}/registry", s3_server.settings())
    registry.ensure_bucket()
    frame = synthetic.generate(600, seed=1)
    v1, v2 = (register_trained(registry, tmp_path, frame, seed=seed) for seed in (1, 2))
    api = kube.CustomObjectsApi(kserve_cluster.api_client())
    api.create_namespaced_custom_object(GROUP, "v1alpha1", kserve_namespace, "servingruntimes",
                                        driftloop_serving_runtime(kserve_namespace))
    api.create_namespaced_custom_object(GROUP, VERSION, kserve_namespace, PLURAL,
                                        _isvc(kserve_namespace, v1.storage_uri))
    assert _condition(_settled(kserve_cluster, kserve_namespace), "Ready")["status"] == "True"
    _patch(api, kserve_namespace, {"spec": {"predictor": {"canaryTrafficPercent": 50, "model": {
        "storageUri": v2.storage_uri}}}})
    isvc = _settled(kserve_cluster, kserve_namespace)
    assert _condition(isvc, "Ready")["status"] == "True", isvc["status"]

    features = frame.drop(columns=[synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN])
    rows = json.loads(features.head(2).to_json(orient="records", date_format="iso"))
    body = json.dumps({"instances": rows})
    with httpx.Client(base_url=kserve_cluster.ingress_url, timeout=30,
                      headers={"Host": kserve_cluster.host(kserve_namespace, "churn")}) as http:
        answers = [http.post("/v1/models/churn:predict", content=body, headers={"Content-Type": "application/json"})
                   for _ in range(20)]
    assert all(a.status_code == 200 and len(a.json()["predictions"]) == 2 for a in answers), answers[0].text
    assert _runtime_requests(kserve_cluster, kserve_namespace) == {str(v1.version): 10, str(v2.version): 10}

    # A real Prometheus scraping the published file_sd targets sees both series families with the PodMonitor labels.
    kserve_cluster.scrape_targets.move_to(prometheus.targets_dir / "kserve-emulator.json")
    targets = json.loads(kserve_cluster.scrape_targets.path.read_text())
    prometheus.wait_for_targets_up({f"http://{t['targets'][0]}/metrics" for t in targets
                                    if t["labels"]["namespace"] == kserve_namespace})
    time.sleep(2 * prometheus.scrape_interval)  # one more scrape after discovery
    by_revision = prometheus.query("sum by (revision) (kn_serving_invocation_duration_seconds_count"
                                   f'{{namespace="{kserve_namespace}"}})')
    assert {r["metric"]["revision"]: float(r["value"][1]) for r in by_revision} == {
        "churn-predictor-00001": 10.0, "churn-predictor-00002": 10.0}
    by_version = prometheus.query(f'sum by (version, deployment) (driftloop_requests_total{{namespace="{kserve_namespace}"'
                                  ', outcome="ok"})')
    assert {(r["metric"]["deployment"], r["metric"]["version"]) for r in by_version} == {
        ("churn-predictor-00001-deployment", str(v1.version)), ("churn-predictor-00002-deployment", str(v2.version))}
