"""In a cluster the monitor's trigger starts the CT pipeline on Kubeflow Pipelines with the same client
as `driftloop submit`: checked against the recording KFP API, with the retrain table on S3 (moto)."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from prometheus_client import generate_latest

from driftloop import synthetic
from driftloop.monitor.app import Monitor
from driftloop.monitor.config import MonitorConfig
from driftloop.monitor.coordinator import RetrainState
from driftloop.registry import LocalRegistry
from driftloop.replay import ReplayPlan, replay
from driftloop.serving.gateway import Gateway
from driftloop.storage import S3Settings, read_bytes
from tests.conftest import ServerThread, register_trained
from tests.kfp_fake import FakeKfp

from .test_monitor_loop import wait_for, windows


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    S3Settings.from_env().client().make_bucket("retrain")
    return s3_server


def test_a_drift_trigger_submits_a_kfp_run_with_its_table_on_s3(tmp_path, s3_env, monkeypatch) -> None:
    import kfp

    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    registry = LocalRegistry(tmp_path / "registry")
    register_trained(registry, tmp_path, synthetic.generate(3000, seed=1))
    registry.promote("churn", 1, actor="test")
    fake = FakeKfp()
    with ServerThread(fake.app()) as kfp_api:
        fake.url = kfp_api.url
        config = MonitorConfig.from_dict({
            "window": {"rows": 400, "seconds": 3600}, "trigger": {"m": 1, "n": 1},
            "retrain": {"runner": "kfp", "kfp_host": kfp_api.url, "data_dir": "s3://retrain/tables",
                        "pipeline_params": {"estimator": "xgboost"}},
        })
        monitor = Monitor(registry, tmp_path / "store", config, tick_seconds=0.2,
                          registry_uri="s3://driftloop/registry")
        traffic = synthetic.generate(400, seed=5, covariate_shift=0.8, id_offset=50_000)
        plan = ReplayPlan.from_tables(traffic, id_column="customer_id", label_column="churned",
                                      timestamp_column="event_time")
        with ServerThread(monitor.app, http=monitor.http_protocol()) as receiver:
            with ServerThread(Gateway(registry, logger_url=receiver.url + "/events").app) as gateway:
                sent = replay(plan, gateway.url, "churn", rate=500, monitor_url=receiver.url, label_delay=0)
                assert sent.ok == 400
                wait_for(lambda: fake.calls("POST", "runs"), what="a KFP run")
                found = windows(receiver.url)
    run = fake.calls("POST", "runs")[0].json
    parameters = run["runtime_config"]["parameters"]
    key = parameters["triggered_by"].removeprefix("drift:")
    assert found[0]["decision"]["action"] == "trigger" and key.startswith("churn-v1-")
    assert run["display_name"] == f"driftloop-retrain-{key}"
    assert parameters["registry_uri"] == "s3://driftloop/registry" and parameters["estimator"] == "xgboost"
    assert parameters["data_uri"] == f"s3://retrain/tables/churn/retrain-{key}.parquet"
    table = pd.read_parquet(io.BytesIO(read_bytes(parameters["data_uri"])))
    held = pd.read_parquet(io.BytesIO(read_bytes(parameters["recent_uri"])))
    # v1's training data plus the labelled traffic (a label still in flight when the window closed may miss), the
    # newest third of it held back as the recent slice the pipeline judges the new world on — never trained on.
    live = table[table["customer_id"].str.startswith("c0005")]
    assert len(table) - len(live) == 3000 and (table["driftloop_source"] == "live").sum() == len(live)
    assert 390 <= len(live) + len(held) <= 400 and len(held) == (len(live) + len(held)) // 3
    assert not set(held["customer_id"]) & set(table["customer_id"])
    assert held["event_time"].min() >= live["event_time"].max()
    assert set(table["churned"].unique()) <= {0, 1}
    triggered = [e for e in registry.history("churn") if e.action == "retrain-triggered"][0]
    assert triggered.evidence["run"].startswith(kfp_api.url) and triggered.evidence["data_uri"] == parameters["data_uri"]
    assert "AWS_SECRET_ACCESS_KEY" not in str(parameters) and s3_env.env["AWS_SECRET_ACCESS_KEY"] not in str(run)


@pytest.mark.parametrize("ending", ["canary", "rolled-back"])
def test_a_cluster_retrain_is_judged_by_how_its_rollout_ended(tmp_path, s3_env, monkeypatch, ending) -> None:
    """A cluster run ends when its deploy step does: often with the canary still serving its share (no analysis
    asked for, or waiting for a person). That is not a failed retrain; an aborted canary is."""
    import asyncio

    import kfp

    from driftloop.deploy.local import LocalDeployment
    from driftloop.registry import CANARY, PRODUCTION

    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    registry = LocalRegistry(tmp_path / "registry")
    register_trained(registry, tmp_path, synthetic.generate(1500, seed=1))
    registry.promote("churn", 1, actor="test")
    fake = FakeKfp(run_states=["RUNNING"])
    with ServerThread(fake.app()) as kfp_api:
        fake.url = kfp_api.url
        config = MonitorConfig.from_dict({
            "window": {"rows": 300, "seconds": 3600}, "trigger": {"m": 1, "n": 1, "max_failures": 1},
            "retrain": {"runner": "kfp", "kfp_host": kfp_api.url, "data_dir": "s3://retrain/tables"}})
        monitor = Monitor(registry, tmp_path / "store", config, tick_seconds=3600, registry_uri="s3://driftloop/registry")
        traffic = synthetic.generate(300, seed=5, covariate_shift=0.8, id_offset=50_000)
        plan = ReplayPlan.from_tables(traffic, id_column="customer_id", label_column="churned",
                                      timestamp_column="event_time")
        with ServerThread(monitor.app, http=monitor.http_protocol()) as receiver:
            with ServerThread(Gateway(registry, logger_url=receiver.url + "/events").app) as gateway:
                assert replay(plan, gateway.url, "churn", rate=500, monitor_url=receiver.url, label_delay=0).ok == 300
                wait_for(lambda: (asyncio.run(monitor.tick()) or fake.calls("POST", "runs")), what="a KFP run")
        key = fake.calls("POST", "runs")[0].json["runtime_config"]["parameters"]["triggered_by"].removeprefix("drift:")
        # What the cluster run did: registered v2 for this trigger and rolled it out as a canary …
        _register_for_trigger(registry, tmp_path, key)
        deployment = LocalDeployment(registry, "ct-pipeline")
        deployment.roll_out("churn", 2, 10)
        if ending == "rolled-back":  # … and its analysis aborted it
            deployment.abort("churn", "canary error rate 12% is above the limit 1%")
        fake.run_states = ["SUCCEEDED"]
        asyncio.run(monitor.tick())
    retrain = [r for r in monitor.coordinator.retrains("churn") if r.key == key][0]
    finished = [e for e in registry.history("churn") if e.action == "retrain-finished"][-1]
    policy = monitor.coordinator.policy("churn")
    if ending == "canary":
        assert retrain.state == RetrainState.CANARY and registry.aliases("churn") == {PRODUCTION: 1, CANARY: 2}
        assert policy.consecutive_failures == 0 and not policy.stopped
    else:
        assert retrain.state == RetrainState.ROLLED_BACK and registry.aliases("churn") == {PRODUCTION: 1}
        assert policy.consecutive_failures == 1 and policy.stopped  # max_failures 1
    assert finished.evidence["state"] == retrain.state.value and finished.to_version == 2 and retrain.version == 2
    shown = generate_latest(monitor.metrics.registry).decode()
    assert f'driftloop_rollouts_total{{model="churn",outcome="{ending.replace("-", "_")}"}} 1.0' in shown


def _register_for_trigger(registry, tmp_path, key: str) -> None:
    """Registers v2 the way the CT pipeline does for a drift retrain: lineage says which trigger started it."""
    import io

    from driftloop.data import infer_spec
    from driftloop.training import save_model, train_model
    from driftloop.validation import validate_table

    frame = synthetic.generate(1200, seed=3)
    spec = infer_spec(frame, synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN)
    clean, _, spec = validate_table(frame, spec)
    save_model(train_model(clean, spec, "logistic_regression", seed=3).model, tmp_path / "triggered")
    sample = io.BytesIO()
    clean.head(200).to_parquet(sample, index=False)
    registry.register("churn", tmp_path / "triggered", model_format="sklearn",
                      lineage={"triggered_by": f"drift:{key}"}, metrics={},
                      attachments={"spec.json": spec.to_json().encode(), "reference_sample.parquet": sample.getvalue()},
                      actor="ct-pipeline")
