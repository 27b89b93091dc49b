"""The drift monitor on live traffic: windows, drift, delayed labels, reports, triggers and their limits.

A real gateway and a real monitor run on loopback; traffic comes from ``driftloop replay`` and labels
from ``driftloop feedback``, run as a user would run them.
"""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from driftloop import synthetic
from driftloop.monitor.app import Monitor
from driftloop.monitor.config import MonitorConfig
from driftloop.registry import LocalRegistry
from driftloop.serving.gateway import Gateway

from ..conftest import ServerThread, register_trained, run_cli

WINDOW = 500


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitor-loop")
    registry = LocalRegistry(root / "registry")
    register_trained(registry, root, synthetic.generate(3000, seed=1))
    registry.promote("churn", 1, actor="test")
    return root, registry


def start(registry, store, **sections) -> Monitor:
    config = MonitorConfig.from_dict({"window": {"rows": WINDOW, "seconds": 3600, "min_rows": 100},
                                      "retrain": {"runner": "none"}, **sections})
    return Monitor(registry, store, config, tick_seconds=0.2)


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def windows(monitor_url: str) -> list[dict]:
    status = httpx.get(f"{monitor_url}/status", params={"limit": 50}).json()
    return (status["models"].get("churn") or {}).get("windows", [])


def test_replay_with_a_shift_halfway_flags_drift_in_the_shifted_half_only(trained, tmp_path) -> None:
    root, registry = trained
    start_time = pd.Timestamp("2026-03-01", tz="UTC").to_pydatetime()
    clean = synthetic.generate(2 * WINDOW, seed=11, start=start_time, id_offset=10_000)
    shifted = synthetic.generate(2 * WINDOW, seed=12, covariate_shift=0.8, id_offset=20_000,
                                 start=start_time + pd.Timedelta(minutes=2 * WINDOW))
    data_path = tmp_path / "history.csv"
    # Shuffled on disk: replay must put the rows back in time order for the shift to land halfway.
    pd.concat([clean, shifted]).sample(frac=1, random_state=0).to_csv(data_path, index=False)
    monitor = start(registry, tmp_path / "store", trigger={"m": 2, "n": 2, "cooldown_seconds": 3600})
    with ServerThread(monitor.app, http=monitor.http_protocol()) as receiver:
        with ServerThread(Gateway(registry, logger_url=receiver.url + "/events").app) as gateway:
            result = run_cli("replay", "--data", str(data_path), "--id-column", "customer_id", "--label-column",
                             "churned", "--timestamp-column", "event_time", "--rate", "400", "--label-delay", "0.2",
                             "--gateway", gateway.url, "--monitor", receiver.url, "--json", timeout=180)
            assert result.returncode == 0, result.stderr
            sent = json.loads(result.stdout)
            found = wait_for(lambda: len(w := windows(receiver.url)) >= 4 and all(x["report"] for x in w) and w,
                             what="four analysed windows with reports")
            status = run_cli("monitor", "status", "--url", receiver.url)
            metrics = httpx.get(receiver.url + "/metrics").text
            report = httpx.get(f"{receiver.url}/reports/churn/{found[3]['report']}")
            sneaky = httpx.get(f"{receiver.url}/reports/churn/..%2F..%2Fregistry")
    assert sent["ok"] == 4 * WINDOW and sent["labels_posted"] == 4 * WINDOW
    assert [w["dataset_drift"] for w in found[:4]] == [False, False, True, True]
    assert {"age", "support_calls"} <= set(found[2]["drifted_features"])
    assert all(w["reference_version"] == 1 and w["quality"]["labelled"] > 0 for w in found[:4])
    # Two drifted windows in a row meet m=2 of n=2: one trigger, recorded with its evidence.
    assert [w["decision"]["action"] for w in found[:4]] == ["quiet", "quiet", "quiet", "trigger"]
    triggered = [e for e in registry.history("churn") if e.action == "retrain-triggered"]
    assert len(triggered) == 1 and [w["id"] for w in triggered[0].evidence["windows"]] == [found[2]["id"], found[3]["id"]]
    assert triggered[0].evidence["recent_rows"] > 0 and triggered[0].evidence["key"].startswith("churn-v1-")
    assert status.returncode == 0 and "drift share" in status.stdout and "trigger" in status.stdout
    assert f'driftloop_monitor_drift_share{{model="churn"}} {found[3]["drift_share"]}' in metrics
    assert 'driftloop_monitor_feature_drift_score{feature="age",model="churn"}' in metrics
    assert report.status_code == 200 and "<html" in report.text.lower() and "prediction" in report.text
    assert sneaky.status_code == 404


def test_labels_from_a_file_joined_late_update_realised_quality(trained, tmp_path) -> None:
    root, registry = trained
    traffic = synthetic.generate(WINDOW, seed=21, id_offset=30_000)
    data_path, labels_path = tmp_path / "traffic.parquet", tmp_path / "labels.csv"
    traffic.drop(columns=["churned"]).to_parquet(data_path)
    traffic[["customer_id", "churned"]].to_csv(labels_path, index=False)
    monitor = start(registry, tmp_path / "store")
    with ServerThread(monitor.app, http=monitor.http_protocol()) as receiver:
        with ServerThread(Gateway(registry, logger_url=receiver.url + "/events").app) as gateway:
            result = run_cli("replay", "--data", str(data_path), "--id-column", "customer_id", "--timestamp-column",
                             "event_time", "--rate", "500", "--gateway", gateway.url, "--json", timeout=120)
            assert result.returncode == 0, result.stderr
            before = wait_for(lambda: windows(receiver.url), what="a closed window")[0]
            posted = run_cli("feedback", "--labels", str(labels_path), "--id-column", "customer_id",
                             "--label-column", "churned", "--monitor", receiver.url)
            after = windows(receiver.url)[0]
            bad = httpx.post(receiver.url + "/feedback", json=[{"id": "x"}])
            since = httpx.get(receiver.url + "/quality/churn", params={"since": "2020-01-01T00:00:00+00:00"}).json()
    assert before["quality"] == {"metric": "accuracy", "labelled": 0, "accuracy": None, "by_version": {}}
    assert posted.returncode == 0 and f"posted {WINDOW} labels" in posted.stdout
    stored = monitor.store.read("churn")
    truth = traffic.set_index("customer_id")["churned"]
    expected = float(np.mean(stored["prediction"].to_numpy() == truth[stored["event_id"]].to_numpy()))
    assert after["quality"]["labelled"] == WINDOW and after["quality"]["accuracy"] == round(expected, 4)
    assert since["versions"]["1"]["labelled"] == WINDOW
    assert bad.status_code == 400 and "'id' and 'label'" in bad.json()["error"]


def test_poisoned_traffic_blocks_the_retrain_and_repeated_failures_stop_it(trained, tmp_path) -> None:
    root, registry = trained
    traffic = synthetic.generate(3 * WINDOW, seed=31, covariate_shift=0.8, id_offset=40_000)
    traffic.loc[traffic.index % 10 == 0, "age"] = 4000.0  # a broken upstream: 10% impossible ages
    data_path = tmp_path / "poisoned.csv"
    traffic.to_csv(data_path, index=False)
    monitor = start(registry, tmp_path / "store",
                    trigger={"m": 1, "n": 1, "cooldown_seconds": 0, "max_failures": 2})
    before = len(registry.history("churn"))
    with ServerThread(monitor.app, http=monitor.http_protocol()) as receiver:
        with ServerThread(Gateway(registry, logger_url=receiver.url + "/events").app) as gateway:
            result = run_cli("replay", "--data", str(data_path), "--id-column", "customer_id", "--label-column",
                             "churned", "--timestamp-column", "event_time", "--rate", "500", "--label-delay", "0",
                             "--gateway", gateway.url, "--monitor", receiver.url, timeout=120)
            assert result.returncode == 0, result.stderr
            found = wait_for(lambda: len(w := windows(receiver.url)) >= 3 and w, what="three windows")
    entries = [e for e in registry.history("churn")[before:] if e.action.startswith("retrain-")]
    assert [e.action for e in entries] == ["retrain-blocked", "retrain-blocked", "retrain-stopped"]
    assert "age" in entries[0].reason and "outside the reference range" in entries[0].reason
    assert [w["decision"]["action"] for w in found[:3]] == ["trigger", "trigger", "stopped"]
    assert "stopped after 2 consecutive" in entries[2].reason


def test_monitor_mistakes_are_one_line_errors(tmp_path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("trigger: {m: 2, every: 5}\n")
    bad_config = run_cli("monitor", "--config", str(config), "--home", str(tmp_path))
    no_monitor = run_cli("monitor", "status", "--url", "http://127.0.0.1:9")
    no_gateway = run_cli("replay", "--data", str(tmp_path / "missing.csv"))
    for result, message, code in ((bad_config, "unknown monitor setting(s) in 'trigger': every", 2),
                                  (no_monitor, "cannot reach the monitor", 1),  # ran, and failed
                                  (no_gateway, "file not found", 2)):
        assert result.returncode == code and message in result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
