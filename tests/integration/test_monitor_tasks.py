"""The drift monitor per task: a multi-class and a regression model served by the real gateway, their windows,
delayed labels and realised quality in the task's terms, prediction drift of a numeric prediction, a quality drop
in RMSE terms that triggers a retrain, and the labels the monitor keeps (a class never learned) or refuses (text for
an amount)."""

from __future__ import annotations

import json
import math
import time

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from driftloop.monitor.app import Monitor
from driftloop.monitor.config import MonitorConfig
from driftloop.registry import LocalRegistry
from driftloop.reports.html import amount
from driftloop.serving.gateway import Gateway
from driftloop.serving.versions import ServedVersion

from ..conftest import ServerThread, register_trained, run_cli
from ..report_pages import ReportPage
from ..unit.test_tasks import multiclass_frame, regression_frame

WINDOW, LABELLED = 200, 150  # rows per window; rows labelled before the window closes (its quality is judged then)
UNSEEN = "escalations"  # a ticket queue opened after the model was trained


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> LocalRegistry:
    """v1 of ``tickets`` (four queues) and of ``demand`` (an amount) in production."""
    root = tmp_path_factory.mktemp("monitor-tasks")
    registry = LocalRegistry(root / "registry")
    register_trained(registry, root, multiclass_frame(1200, seed=0), name="tickets", target="queue")
    register_trained(registry, root, regression_frame(1200, seed=0), name="demand", target="spend", estimator="ridge")
    for model in ("tickets", "demand"):
        registry.promote(model, 1, actor="test")
    return registry


@pytest.fixture
def served(registry, tmp_path):
    """A monitor (windows of 200 rows; a retrain at the first signalling window, recorded, not run) and the
    gateway logging to it."""
    config = MonitorConfig.from_dict({"model": "tickets", "window": {"rows": WINDOW, "seconds": 3600, "min_rows": 50},
                                      "trigger": {"m": 1, "n": 1, "min_labels": 100}, "retrain": {"runner": "none"}})
    monitor = Monitor(registry, tmp_path / "store", config, tick_seconds=0.2)
    with ServerThread(monitor.app, http=monitor.http_protocol()) as receiver, \
            ServerThread(Gateway(registry, logger_url=receiver.url + "/events").app) as gateway:
        yield monitor, receiver.url, gateway.url


def predict(gateway: str, model: str, frame: pd.DataFrame, ids: list[str], rows_per_request: int) -> None:
    """Sends ``frame``'s rows as requests of ``rows_per_request`` rows, each with its request id."""
    records = json.loads(frame.to_json(orient="records"))
    with httpx.Client(base_url=gateway, timeout=30) as client:
        for start, request_id in zip(range(0, len(records), rows_per_request), ids, strict=True):
            answer = client.post(f"/v1/models/{model}:predict", headers={"x-request-id": request_id},
                                 json={"instances": records[start:start + rows_per_request]})
            assert answer.status_code == 200, answer.text


def closed_windows(monitor_url: str, model: str, count: int, with_pages: bool = False) -> list[dict]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = httpx.get(f"{monitor_url}/windows/{model}")
        if answer.status_code == 200 and len(answer.json()) >= count \
                and (not with_pages or all(w["report"] for w in answer.json())):
            return answer.json()
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {count} windows of {model}")


def model_output(registry: LocalRegistry, model: str, frame: pd.DataFrame) -> np.ndarray:
    """What v1's Pipeline predicts, in the target's terms: the standard the monitor's numbers are checked against."""
    served = ServedVersion.load(registry, model, 1)
    output = served.pipeline.predict(frame[served.spec.feature_names])
    return np.array(served.spec.target_classes)[output] if served.spec.is_classification else output


def test_a_multiclass_window_reports_accuracy_and_macro_f1_and_keeps_labels_of_a_class_never_learned(
        registry, served, tmp_path) -> None:
    monitor, monitor_url, gateway = served
    traffic = multiclass_frame(WINDOW, seed=5)
    ids = [f"t{i:04d}" for i in range(WINDOW)]
    truth = traffic["queue"].to_numpy(dtype=object).copy()
    truth[:10] = UNSEEN
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"ticket": ids, "queue": truth})[:LABELLED].to_csv(labels, index=False)
    features = traffic.drop(columns="queue")
    predict(gateway, "tickets", features[:LABELLED], ids[:LABELLED], rows_per_request=1)
    posted = run_cli("feedback", "--labels", str(labels), "--id-column", "ticket", "--label-column", "queue",
                     "--monitor", monitor_url, "--model", "tickets")
    predict(gateway, "tickets", features[LABELLED:], ids[LABELLED:], rows_per_request=1)
    window = closed_windows(monitor_url, "tickets", 1)[0]
    status = run_cli("monitor", "status", "--url", monitor_url, "--model", "tickets")
    metrics = httpx.get(monitor_url + "/metrics").text

    predicted = model_output(registry, "tickets", traffic)[:LABELLED]
    seen = sorted({*truth[:LABELLED], *predicted})
    assert posted.returncode == 0 and f"posted {LABELLED} labels" in posted.stdout
    assert f"10 labels name classes tickets v1 never learned ({UNSEEN} 10): kept, counted as wrong" in posted.stderr
    quality = window["quality"]
    assert window["task"] == "multiclass" and window["prediction_drift"]["method"] == "jensenshannon"
    assert quality["metric"] == "accuracy" and quality["labelled"] == LABELLED
    assert quality["accuracy"] == round(float(np.mean(predicted == truth[:LABELLED])), 4)
    assert quality["f1_macro"] == round(f1_score(truth[:LABELLED], predicted, labels=seen, average="macro"), 4)
    assert quality["unseen_classes"] == {UNSEEN: 10}
    assert status.returncode == 0 and "f1 macro" in status.stdout and f"{UNSEEN} 10" in status.stdout
    assert f'driftloop_monitor_realised_f1_macro{{model="tickets",version="1"}} {quality["f1_macro"]}' in metrics
    assert 'driftloop_monitor_unseen_class_labels_total{model="tickets"} 10.0' in metrics


def test_a_regression_model_is_judged_in_rmse_and_its_shifted_predictions_drift(registry, served) -> None:
    monitor, monitor_url, gateway = served
    holdout_rmse = registry.get_version("demand", 1).metrics["rmse"]
    # Window 1: familiar inputs, but the amounts came out 15 higher than the model says (the world changed).
    first = regression_frame(WINDOW, seed=7)
    ids = [f"d{i}" for i in range(WINDOW // 50)]
    actual = (first["spend"] + 15).to_numpy()
    # Half the labels as text ("117.230" is 117.23), half as numbers: they compare as the same amounts.
    labels = [{"id": ids[i // 50], "row": i % 50, "label": f"{v:.3f}" if i % 2 else float(v)}
              for i, v in enumerate(actual[:LABELLED])]
    predict(gateway, "demand", first.drop(columns="spend")[:LABELLED], ids[:3], rows_per_request=50)
    accepted = httpx.post(monitor_url + "/feedback", params={"model": "demand"}, json=labels)
    text = httpx.post(monitor_url + "/feedback", params={"model": "demand"},
                      json=[{"id": "d0", "row": 1, "label": 12.5}, {"id": "d0", "row": 2, "label": "twelve"}])
    predict(gateway, "demand", first.drop(columns="spend")[LABELLED:], ids[3:], rows_per_request=50)
    closed_windows(monitor_url, "demand", 1)
    # Window 2: the inputs moved (x1 up by 2.5 standard deviations), and so do the predicted amounts.
    second = regression_frame(WINDOW, seed=8).drop(columns="spend").assign(x1=lambda f: f.x1 + 2.5)
    predict(gateway, "demand", second, [f"s{i}" for i in range(WINDOW // 50)], rows_per_request=50)
    windows = closed_windows(monitor_url, "demand", 2, with_pages=True)
    since = httpx.get(monitor_url + "/quality/demand", params={"since": "2020-01-01T00:00:00+00:00"}).json()
    page = ReportPage(httpx.get(f"{monitor_url}/reports/demand/{windows[0]['report']}").text)
    index = ReportPage(httpx.get(f"{monitor_url}/reports/demand/index.html").text)
    unknown = httpx.post(monitor_url + "/feedback", params={"model": "nobody"}, json=[{"id": "d0", "label": 1}])
    metrics = httpx.get(monitor_url + "/metrics").text

    error = model_output(registry, "demand", first)[:LABELLED] - actual[:LABELLED]
    rmse, mae = math.sqrt(float(np.mean(error ** 2))), float(np.mean(np.abs(error)))
    assert accepted.json() == {"accepted": LABELLED, "model": "demand", "version": 1, "unseen_classes": {}}
    assert text.status_code == 400
    assert text.json()["error"] == "label 1 (id d0): demand is a regression model, so its labels are numbers; got 'twelve'"
    assert unknown.status_code == 400 and unknown.json()["error"] == "no model 'nobody' in the registry to label"
    assert monitor.status()["labels"] == LABELLED  # nothing of the refused batches was kept
    quality = windows[0]["quality"]
    assert windows[0]["task"] == "regression" and windows[0]["quality_metric"] == "rmse"
    assert windows[0]["reference_quality"] == holdout_rmse
    assert quality["labelled"] == LABELLED and "accuracy" not in quality
    assert quality["rmse"] == pytest.approx(rmse, rel=1e-5) and quality["mae"] == pytest.approx(mae, rel=1e-5)
    assert [w["prediction_drift"]["drifted"] for w in windows] == [False, True]
    assert windows[1]["prediction_drift"]["method"] == "wasserstein"
    # The quality drop is the signal, and the retrain's reason and evidence say so in RMSE's terms.
    rise = f"{(quality['rmse'] - holdout_rmse) / holdout_rmse:.0%} above the {holdout_rmse:.4g} v1 is held to"
    assert windows[0]["quality_dropped"] and rise in windows[0]["quality_reason"]
    assert windows[0]["decision"]["action"] == "trigger"
    triggered = [e for e in registry.history("demand") if e.action == "retrain-triggered"]
    assert len(triggered) == 1 and f"rmse {quality['rmse']:.4g} is {rise}" in triggered[0].reason
    assert triggered[0].evidence["recent_rows"] == LABELLED  # the labels joined the training table as amounts
    assert since["metric"] == "rmse" and since["versions"]["1"]["labelled"] == LABELLED
    assert since["versions"]["1"]["rmse_stderr"] > 0
    assert f'driftloop_monitor_realised_rmse{{model="demand",version="1"}} {quality["rmse"]}' in metrics
    # The window's page and the model's index speak RMSE too.
    assert page.errors == [] and page.facts["Realised RMSE"].startswith(
        f"{amount(quality['rmse'])} on {LABELLED} labelled rows (expected {amount(holdout_rmse)}, Δ +")
    assert "realised rmse rose" in page.banner.title.lower() and page.banner.kind == "fail"
    assert any("Realised RMSE per serving version" in (svg.get("aria-label") or "") for svg in index.svgs())
