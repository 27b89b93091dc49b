"""The pipeline rolls out on a cluster: the deploy step, run as KFP's launcher runs it (executor command from
the compiled IR, executor input as the driver builds it), against the emulated KServe control plane (tests/cluster)
serving versions on driftloop's own ServingRuntime (manifests/base, as it is), judged from a real Prometheus
scraping the emulated queue-proxies and runtimes, with the drift monitor receiving the agent's payload log.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from kubernetes import client as kube
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from driftloop import model_dir, synthetic
from driftloop.data import infer_spec
from driftloop.registry import PRODUCTION, open_registry
from driftloop.registry.approvals import ApprovalPolicy
from driftloop.training import save_model, train_model
from driftloop.validation import validate_table

from ..cluster.fixtures import driftloop_serving_runtime
from ..conftest import ServerThread, run_cli
from ..kfp_launcher import run_task

pytestmark = pytest.mark.timeout(600)
GROUP, VERSION = "serving.kserve.io", "v1beta1"
FEATURES_TO_DROP = [synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN]
# Short steps: the analysis needs a few canary requests per step, which steady load at ~40 req/s gives. Latency
# on two shared cores (emulator, Prometheus, two model servers, the load) jitters by more than the default
# 1.5x between two equal models over a few seconds; errors are what these scenarios judge.
POLICY = {"steps": [10, 50, 100], "min_requests": 5, "max_inconclusive": 6, "max_latency_ratio": 4.0}
INTERVAL = 5.0


@pytest.fixture(scope="module")
def world(s3_server, tmp_path_factory) -> dict:
    """An S3 registry with v1, v2 (good), v3 (answers 500 on most rows) and v4 (trained, it says, with
    scikit-learn 1.5: the runtime must refuse it), and request rows."""
    tmp = tmp_path_factory.mktemp("kserve-rollout")
    registry = open_registry(f"s3://rollout-{uuid.uuid4().hex[:10]}/registry", s3_server.settings())
    registry.ensure_bucket()
    frame = synthetic.generate(800, seed=1)
    spec = infer_spec(frame, synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN)
    clean, _, spec = validate_table(frame, spec)
    good = [train_model(clean, spec, "logistic_regression", seed=seed).model for seed in (1, 2)]
    # A real model that fails on most inputs: the log of centred features is NaN, which the estimator refuses.
    failing = Pipeline([("pre", good[0][0]), ("log", FunctionTransformer(np.log)), ("model", good[0][1])])
    libraries = model_dir.library_versions()
    versions = []
    for model, trained_with in ((good[0], libraries), (good[1], libraries), (failing, libraries),
                                (good[1], {**libraries, "scikit-learn": "1.5.2"})):
        directory = tmp / f"m{len(versions)}"
        save_model(model, directory)
        versions.append(registry.register(
            "churn", directory, model_format="sklearn", lineage={"libraries": trained_with}, metrics={},
            attachments={"spec.json": spec.to_json().encode()}, actor="test").version)
    assert versions == [1, 2, 3, 4]
    rows = json.loads(frame.drop(columns=FEATURES_TO_DROP).head(40).to_json(orient="records"))
    return {"registry": registry, "rows": rows, "tmp": tmp, "s3_env": s3_server.env}


@pytest.fixture(scope="module")
def cluster(kserve_cluster, prometheus, world) -> dict:
    """One namespace with the project's ServingRuntime; the emulator's scrape targets go to the real Prometheus;
    a kubeconfig whose context names the namespace (the deploy step infers it from there)."""
    namespace = f"rollout-{uuid.uuid4().hex[:6]}"
    kube.CustomObjectsApi(kserve_cluster.api_client()).create_namespaced_custom_object(
        GROUP, "v1alpha1", namespace, "servingruntimes", driftloop_serving_runtime(namespace))
    kserve_cluster.scrape_targets.move_to(prometheus.targets_dir / "kserve-rollout.json")
    kubeconfig = kserve_cluster.write_kubeconfig(world["tmp"] / "kubeconfig", namespace)
    env = {**world["s3_env"], "KUBECONFIG": str(kubeconfig)}
    yield {"cluster": kserve_cluster, "namespace": namespace, "env": env, "prometheus": prometheus}
    kserve_cluster.delete_namespace(namespace)


class Load:
    """Steady V1 traffic through the ingress; every answer's status and serving version kept by request id."""

    def __init__(self, cluster, namespace: str, rows: list[dict], model: str = "churn", clients: int = 3) -> None:
        self.url = f"{cluster.url(namespace, model)}/v1/models/{model}:predict"
        self.rows = rows
        self.answers: dict[str, tuple[int, str | None]] = {}
        self._stop = threading.Event()
        # Several clients: on two loaded cores one client's round trips alone can be too few for a 10 % step.
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            i = 0
            while not self._stop.is_set():
                request_id = f"req-{uuid.uuid4().hex[:12]}"
                # KServe's agent takes the event id from an incoming Ce-Id header (pkg/logger/handler.go).
                response = http.post(self.url, json={"instances": [self.rows[i % len(self.rows)]]},
                                     headers={"Ce-Id": request_id})
                self.answers[request_id] = (response.status_code, response.headers.get("x-driftloop-model-version"))
                i += 1
                time.sleep(0.025)

    def failures(self) -> list:
        return [a for a in self.answers.values() if a[0] != 200]

    def versions(self) -> set[str | None]:
        return {v for status, v in self.answers.values() if status == 200}


def _deploy(env: dict, version: int, tmp: Path, **parameters) -> object:
    values = {"registry_uri": parameters.pop("registry_uri"), "model_name": "churn", "version": version,
              "serve_target": "kserve", "ready_timeout": 120.0, **parameters}
    workdir = tmp / f"deploy-{uuid.uuid4().hex[:6]}"
    workdir.mkdir()
    return run_task("deploy-model", values, workdir, env=env)


def _actions(registry, since: int = 0) -> list[str]:
    return [e.action for e in registry.history("churn")[since:]]


def _isvc(context: dict) -> dict:
    return context["cluster"].inference_service(context["namespace"], "churn")


def test_the_pipeline_rolls_versions_out_on_kserve(world, cluster) -> None:
    registry, tmp, env = world["registry"], world["tmp"], cluster["env"]
    common = {"registry_uri": registry.uri}
    monitor = _start_monitor(registry, tmp)
    with monitor as monitor_server:
        logger = {"logger_url": monitor_server.url + "/events"}
        # 1. A first version: the InferenceService is created on driftloop's runtime and serves it.
        first = _deploy(env, 1, tmp, **common, **logger)
        assert first.returncode == 0, first.stderr[-3000:]
        assert first.outputs["Output"] == "promoted"
        assert registry.aliases("churn") == {PRODUCTION: 1}
        isvc = _isvc(cluster)
        assert isvc["spec"]["predictor"]["model"]["runtime"] == "driftloop"
        assert isvc["spec"]["predictor"]["annotations"] == {"driftloop.io/model-version": "1"}
        # What the pipeline created is what `driftloop deploy --dry-run` prints for that version.
        dry = run_cli("deploy", "churn", "--target", "kserve", "--dry-run", "--version", "1", "--namespace",
                      cluster["namespace"], "--logger-url", logger["logger_url"], "--registry", registry.uri,
                      "--home", str(tmp), env=world["s3_env"])
        assert dry.returncode == 0, dry.stderr
        assert yaml.safe_load(dry.stdout)["spec"] == isvc["spec"]

        with Load(cluster["cluster"], cluster["namespace"], world["rows"]) as load:
            # 2. A good canary: stepped 10 → 50 → 100 from Prometheus' evidence, promoted, no failed request.
            before = len(registry.history("churn"))
            good = _deploy(env, 2, tmp, **common, **logger, rollout_prometheus=cluster["prometheus"].url,
                           rollout_interval=INTERVAL, rollout_policy=POLICY)
            assert good.returncode == 0, good.stderr[-3000:]
            assert good.outputs["Output"] == "promoted", _reasons(registry, before)
            time.sleep(1)
        assert load.failures() == [] and len(load.answers) > 100
        assert load.versions() == {"1", "2"}
        assert registry.aliases("churn") == {PRODUCTION: 2}
        steps = [e for e in registry.history("churn")[before:] if e.action in ("rollout-step", "rollout-analysis")]
        assert [e.evidence.get("canary_traffic_percent") for e in steps if e.action == "rollout-step"] == [10, 50]
        assert all(e.reason.split(": ")[1] in ("pass", "inconclusive") for e in steps if e.action == "rollout-analysis")
        assert _actions(registry, before)[-1] == "promote"
        predictor = _isvc(cluster)["status"]["components"]["predictor"]
        assert [t["percent"] for t in predictor["traffic"]] == [100]
        assert predictor["latestRolledoutRevision"] == predictor["latestReadyRevision"]

        # The monitor filed every logged row under the version that answered it (KServe's agent sends the
        # version annotation in ce-annotations), canary rows included.
        rows = _monitor_rows(monitor.monitor)
        assert len(rows) > 50
        answered = {rid: version for rid, (status, version) in load.answers.items() if status == 200}
        mismatched = [(e, v) for e, v in zip(rows["event_id"], rows["version"], strict=True)
                      if e in answered and str(v) != answered[e]]
        assert mismatched == [] and set(rows["version"]) == {1, 2}

    # 3. A canary that answers 500: aborted at its first step, traffic back to stable, production unchanged.
    with Load(cluster["cluster"], cluster["namespace"], world["rows"]) as load:
        before = len(registry.history("churn"))
        bad = _deploy(env, 3, tmp, **common, rollout_prometheus=cluster["prometheus"].url,
                      rollout_interval=INTERVAL, rollout_policy=POLICY)
        assert bad.returncode == 0, bad.stderr[-3000:]
        assert bad.outputs["Output"] == "aborted"
        time.sleep(1)
    assert registry.aliases("churn") == {PRODUCTION: 2}
    aborted = [e for e in registry.history("churn")[before:] if e.action == "rollout-abort"]
    assert len(aborted) == 1 and "error rate" in aborted[0].reason
    traffic = _isvc(cluster)["status"]["components"]["predictor"]["traffic"]
    assert {t["revisionName"]: t["percent"] for t in traffic if t["percent"]} == {
        _isvc(cluster)["status"]["components"]["predictor"]["latestRolledoutRevision"]: 100}
    with Load(cluster["cluster"], cluster["namespace"], world["rows"]) as after:
        time.sleep(2)
    assert after.failures() == [] and after.versions() == {"2"}, (_reasons(registry, before), _isvc(cluster)["status"],
                                                                   bad.stderr[-2000:])

    # 4. A version trained with another scikit-learn minor: the runtime refuses it, the revision fails, it
    # never gets a request, and the step fails saying why; the registry keeps v2.
    with Load(cluster["cluster"], cluster["namespace"], world["rows"]) as load:
        before = len(registry.history("churn"))
        refused = _deploy(env, 4, tmp, **common, rollout_prometheus=cluster["prometheus"].url,
                          rollout_interval=INTERVAL, rollout_policy=POLICY)
    assert refused.returncode != 0
    assert "scikit-learn 1.5.2" in refused.stderr
    assert load.failures() == [] and load.versions() == {"2"}
    assert registry.aliases("churn") == {PRODUCTION: 2}
    assert "rollout-failed" in _actions(registry, before)


def test_standard_mode_canaries_roll_out_through_spec_canary(world, cluster, s3_server) -> None:
    registry = open_registry(f"s3://standard-{uuid.uuid4().hex[:8]}/registry", s3_server.settings())
    registry.ensure_bucket()
    source = world["registry"]
    for number in (1, 2):  # the same two good versions, in a registry of their own
        fetched = source.fetch_model("churn", number, world["tmp"] / f"std-{number}")
        (fetched / model_dir.MANIFEST_FILE).unlink()
        manifest = json.loads(source.read_file("churn", number, "model/" + model_dir.MANIFEST_FILE))
        registry.register("churn-std", fetched, model_format="sklearn", lineage=manifest["lineage"], metrics={},
                          attachments={"spec.json": source.read_file("churn", number, "spec.json")}, actor="test")
    env, tmp = cluster["env"], world["tmp"]
    common = {"registry_uri": registry.uri, "model_name": "churn-std", "deployment_mode": "Standard"}
    first = run_task("deploy-model", {**common, "version": 1, "serve_target": "kserve", "ready_timeout": 120.0},
                     _workdir(tmp), env=env)
    assert first.returncode == 0 and first.outputs["Output"] == "promoted", first.stderr[-3000:]
    with Load(cluster["cluster"], cluster["namespace"], world["rows"], model="churn-std") as load:
        canary = run_task("deploy-model", {**common, "version": 2, "serve_target": "kserve", "ready_timeout": 120.0,
                                           "rollout_prometheus": cluster["prometheus"].url,
                                           "rollout_interval": INTERVAL, "rollout_policy": POLICY},
                          _workdir(tmp), env=env)
        time.sleep(1)
    assert canary.returncode == 0 and canary.outputs["Output"] == "promoted", (
        canary.stderr[-3000:], [f"{e.action}: {e.reason}" for e in registry.history("churn-std")])
    assert load.failures() == [] and load.versions() == {"1", "2"}
    assert registry.aliases("churn-std") == {PRODUCTION: 2}
    isvc = cluster["cluster"].inference_service(cluster["namespace"], "churn-std")
    # Promotion in Standard mode: the stable predictor becomes the canary's (its name and model), no canary left.
    assert isvc["spec"]["predictor"]["name"] == "v2" and "canary" not in isvc["spec"]
    assert isvc["spec"]["predictor"]["annotations"] == {"driftloop.io/model-version": "2"}
    analysed = [e for e in registry.history("churn-std") if e.action == "rollout-analysis"]
    assert analysed and all(e.evidence["canary"]["requests"] >= 0 for e in analysed)


def test_a_canary_that_passed_waits_for_approval_at_its_share_and_approve_promotes_it(world, cluster) -> None:
    registry, tmp, env, namespace = world["registry"], world["tmp"], cluster["env"], cluster["namespace"]
    for directory in ("m0", "m1"):  # the two good models, as a model of their own
        registry.register("churn-gov", tmp / directory, model_format="sklearn", metrics={}, actor="ct-pipeline",
                          lineage={"libraries": model_dir.library_versions()},
                          attachments={"spec.json": registry.read_file("churn", 1, "spec.json")})
    common = {"registry_uri": registry.uri, "model_name": "churn-gov", "serve_target": "kserve", "ready_timeout": 120.0}
    first = run_task("deploy-model", {**common, "version": 1}, _workdir(tmp), env=env)
    assert first.returncode == 0 and first.outputs["Output"] == "promoted", first.stderr[-3000:]
    registry.set_approval_policy("churn-gov", ApprovalPolicy(approvers=("alice",)), actor="erin")

    def isvc() -> dict:
        return cluster["cluster"].inference_service(namespace, "churn-gov")

    with Load(cluster["cluster"], namespace, world["rows"], model="churn-gov") as load:
        held = run_task("deploy-model", {**common, "version": 2, "rollout_prometheus": cluster["prometheus"].url,
                                         "rollout_interval": INTERVAL, "rollout_policy": {**POLICY, "steps": [50, 100]}},
                        _workdir(tmp), env=env)
        assert held.returncode == 0 and held.outputs["Output"] == "pending-approval", (
            held.stderr[-3000:], "\n".join(f"{e.action}: {e.reason}" for e in registry.history("churn-gov")))
        seen = len(load.answers)
        time.sleep(3)
        waiting = [version for status, version in list(load.answers.values())[seen:] if status == 200]
        # While it waits, the canary keeps its step's share on its own revision.
        assert set(waiting) == {"1", "2"}
        assert isvc()["spec"]["predictor"]["canaryTrafficPercent"] == 50
        assert sorted(t["percent"] for t in isvc()["status"]["components"]["predictor"]["traffic"]) == [50, 50]
        assert registry.aliases("churn-gov") == {PRODUCTION: 1, "canary": 2}
        # `approve` finds where the canary serves in its approval request (target, namespace, mode).
        approved = run_cli("models", "approve", "churn-gov", "2", "--reason", "reviewed the canary's analysis",
                           "--actor", "alice", "--registry", registry.uri, "--home", str(tmp), env=env)
        assert approved.returncode == 0, approved.stderr
        seen = len(load.answers)
        time.sleep(2)
        after = {version for status, version in list(load.answers.values())[seen:] if status == 200}
    assert load.failures() == [] and after == {"2"}
    assert registry.aliases("churn-gov") == {PRODUCTION: 2}
    predictor = isvc()["status"]["components"]["predictor"]
    assert "canaryTrafficPercent" not in isvc()["spec"]["predictor"]
    assert [t["percent"] for t in predictor["traffic"]] == [100]
    assert predictor["latestRolledoutRevision"] == predictor["latestReadyRevision"]
    decision = registry.history("churn-gov")[-1]
    assert (decision.action, decision.actor, decision.to_version) == ("approve", "alice", 2)
    # The emulated API server does not serve SelfSubjectReview: the actor is self-declared, and says why.
    assert decision.evidence["approval"]["verified"] is False
    assert "SelfSubjectReview" in decision.evidence["approval"]["identity"]["note"]


def _reasons(registry, since: int) -> list[str]:
    """The rollout's audit entries, for a failure message."""
    return [f"{e.action}: {e.reason}" for e in registry.history("churn")[since:]]


def _workdir(tmp: Path) -> Path:
    path = tmp / f"task-{uuid.uuid4().hex[:6]}"
    path.mkdir()
    return path


class _MonitorServer:
    def __init__(self, monitor) -> None:
        self.monitor = monitor
        self._server = ServerThread(monitor.app, http=monitor.http_protocol())

    def __enter__(self):
        return self._server.__enter__()

    def __exit__(self, *exc) -> None:
        self._server.__exit__(*exc)


def _start_monitor(registry, tmp: Path) -> _MonitorServer:
    from driftloop.monitor.app import Monitor
    from driftloop.monitor.config import MonitorConfig

    config = MonitorConfig.from_dict({"model": "churn", "window": {"rows": 100000, "seconds": 3600},
                                      "retrain": {"runner": "none"}})
    return _MonitorServer(Monitor(registry, tmp / "monitor", config, tick_seconds=0.5))


def _monitor_rows(monitor) -> pd.DataFrame:
    return monitor.store.read("churn")  # parts and rows the next checkpoint writes
