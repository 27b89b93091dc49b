"""Batch scoring as its users meet it: a registered version scores a table offline — the library, the CLI, the KFP
pipeline under kfp.local — and the scored table feeds the drift monitor. Real parts throughout: a signed local
registry, the gateway on 127.0.0.1 for comparison, moto's S3 on loopback, the monitor's own server."""

from __future__ import annotations

import json
import shutil
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from driftloop import synthetic
from driftloop.batch.monitor_feed import BATCH_ENDPOINT, feed_monitor
from driftloop.batch.score import PREDICTION_COLUMN, VERSION_COLUMN, score_table
from driftloop.data import coerce_to_spec
from driftloop.errors import DataError, IntegrityError
from driftloop.monitor.app import Monitor
from driftloop.monitor.config import MonitorConfig
from driftloop.registry import LocalRegistry
from driftloop.serving.gateway import Gateway
from driftloop.serving.versions import ServedVersion
from driftloop.tasks import MULTICLASS, REGRESSION

from ..conftest import ServerThread, register_trained, run_cli
from ..table_text import squash, table_columns
from ..task_tables import CLASSES, register, task_frame, trained

UNSEEN_PLAN = "platinum"  # a category the model never saw in training


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A registry whose production v1 was trained on clean churn data, and a 3 000-row table to score (its first
    rows on a plan that did not exist at training time) as CSV and as Parquet of small row groups."""
    tmp = tmp_path_factory.mktemp("batch")
    registry = LocalRegistry(tmp / "registry")
    register_trained(registry, tmp, synthetic.generate(1500, seed=1))
    registry.promote("churn", 1, actor="test")
    table = synthetic.generate(3000, seed=7).drop(columns=[synthetic.TARGET])
    table.loc[:19, "plan"] = UNSEEN_PLAN
    table.to_csv(tmp / "table.csv", index=False)
    table.to_parquet(tmp / "table.parquet", index=False, row_group_size=400)
    return {"tmp": tmp, "registry": registry, "table": table, "spec": ServedVersion.load(registry, "churn", 1).spec}


def test_the_scored_table_holds_the_gateways_answers_for_the_same_rows(world) -> None:
    out = world["tmp"] / "scored.parquet"
    summary = score_table(str(world["tmp"] / "table.parquet"), str(out), world["registry"], "churn", chunk_rows=700)
    scored = pd.read_parquet(out)
    spec, table = world["spec"], world["table"]
    rows = json.loads(table[spec.feature_names].to_json(orient="records"))
    with ServerThread(Gateway(world["registry"]).app) as server, httpx.Client(base_url=server.url) as client:
        answers = [client.post("/v1/models/churn:predict", json={"instances": rows[i:i + 1000]})
                   for i in range(0, len(rows), 1000)]
    assert [a.status_code for a in answers] == [200] * 3  # the unseen plan scores there too
    served = [p for a in answers for p in a.json()["predictions"]]  # the labels, 0 and 1
    assert summary.rows == len(table) == len(scored) and summary.version == 1
    assert scored[PREDICTION_COLUMN].tolist() == served
    assert scored[spec.id_column].tolist() == table[spec.id_column].tolist()  # in input order, with its id
    probabilities = scored[[f"probability_{c}" for c in spec.target_classes]]
    assert ((probabilities.sum(axis=1) - 1).abs() < 1e-9).all()
    assert (scored[VERSION_COLUMN] == 1).all()


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_chunked_output_equals_unchunked(world, kind: str) -> None:
    source = str(world["tmp"] / f"table.{kind}")
    whole, chunked = world["tmp"] / f"whole-{kind}.parquet", world["tmp"] / f"chunked-{kind}.parquet"
    score_table(source, str(whole), world["registry"], "churn", chunk_rows=1_000_000, with_features=True)
    score_table(source, str(chunked), world["registry"], "churn", version=1, chunk_rows=97, with_features=True)
    pd.testing.assert_frame_equal(pd.read_parquet(whole), pd.read_parquet(chunked))
    assert pd.read_parquet(chunked)["plan"].head(20).eq(UNSEEN_PLAN).all()


def test_text_in_a_numeric_column_is_named_with_its_row_in_the_whole_table(world, tmp_path) -> None:
    table = world["table"].astype({"age": object})
    table.loc[1500, "age"] = "old"
    table.to_csv(tmp_path / "table.csv", index=False)
    with pytest.raises(DataError, match=r"column 'age': text in a numeric column .*'old' in row 1501\)$"):
        score_table(str(tmp_path / "table.csv"), str(tmp_path / "scored.csv"), world["registry"], "churn",
                    chunk_rows=1000)
    assert not (tmp_path / "scored.csv").exists()


def test_a_tampered_model_file_is_refused_and_nothing_is_written(world, tmp_path) -> None:
    copy = tmp_path / "registry"
    shutil.copytree(world["registry"].root, copy)
    model_file = next(copy.glob("models/churn/versions/1/model/model.joblib"))
    data = bytearray(model_file.read_bytes())
    data[-20] ^= 0xFF
    model_file.write_bytes(bytes(data))
    out = tmp_path / "scored.csv"
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        score_table(str(world["tmp"] / "table.csv"), str(out), LocalRegistry(copy), "churn")
    assert list(tmp_path.glob("scored*")) == [] and list(tmp_path.glob(".scored*")) == []


def test_s3_in_and_out_gives_the_same_table_as_local_files(world, s3_server) -> None:
    settings = s3_server.settings()
    client = settings.client()
    if not client.bucket_exists("batch"):
        client.make_bucket("batch")
    client.fput_object("batch", "in/table.csv", str(world["tmp"] / "table.csv"))
    local = world["tmp"] / "local.csv"
    score_table(str(world["tmp"] / "table.csv"), str(local), world["registry"], "churn", chunk_rows=1000)
    summary = score_table("s3://batch/in/table.csv", "s3://batch/out/scored.csv", world["registry"], "churn",
                          chunk_rows=1000, s3=settings)
    remote = client.get_object("batch", "out/scored.csv")
    try:
        assert remote.read() == local.read_bytes()
    finally:
        remote.close()
        remote.release_conn()
    assert summary.output == "s3://batch/out/scored.csv"


def test_cli_scores_by_alias_and_names_every_missing_feature_column_in_one_line(world, tmp_path, capsys) -> None:
    from driftloop.cli import main

    registry = str(world["registry"].root)
    out = tmp_path / "scored.parquet"
    assert main(["score", "--data", str(world["tmp"] / "table.csv"), "--model", "churn", "--alias", "production",
                 "--output", str(out), "--registry", registry, "--chunk-rows", "1000"]) == 0
    columns = table_columns(capsys.readouterr().out, "batch scoring")
    assert squash(columns["rows"]) == "3,000" and squash(columns["output"]) == str(out)  # wrapped, never cut
    assert len(pd.read_parquet(out)) == 3000

    partial = tmp_path / "partial.csv"
    world["table"].drop(columns=["age", "plan"]).to_csv(partial, index=False)
    refused = run_cli("score", "--data", str(partial), "--model", "churn", "--output", str(tmp_path / "x.csv"),
                      "--registry", registry)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"driftloop: error: {partial} lacks 2 feature column(s) churn v1 needs: age, plan"]
    assert not (tmp_path / "x.csv").exists()


# Locally the "image" is this environment, which is exactly what the project image contains.
@pytest.mark.filterwarnings("ignore:.*non-Python base image")
def test_the_batch_pipeline_runs_under_kfp_local_and_writes_the_table(world, tmp_path) -> None:
    from kfp import local

    from driftloop.pipelines.batch_score_pipeline import build_batch_score_pipeline

    local.init(local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "runs"), raise_on_error=True)
    run = build_batch_score_pipeline()(data_uri=str(world["tmp"] / "table.parquet"), model_name="churn",
                                       registry_uri=str(world["registry"].root), chunk_rows=1000)
    scored = run.outputs["Output"]
    table = pd.read_parquet(scored.path)
    assert len(table) == 3000 and scored.metadata["rows"] == 3000 and scored.metadata["version"] == 1
    direct = world["tmp"] / "direct.parquet"
    score_table(str(world["tmp"] / "table.parquet"), str(direct), world["registry"], "churn")
    pd.testing.assert_frame_equal(table, pd.read_parquet(direct))


def test_a_scored_table_fed_to_the_monitor_becomes_windows_with_drift(world, tmp_path) -> None:
    drifted = synthetic.generate(1200, seed=8, covariate_shift=0.8).drop(columns=[synthetic.TARGET])
    drifted.to_parquet(tmp_path / "drifted.parquet", index=False)
    scored = tmp_path / "scored.parquet"
    score_table(str(tmp_path / "drifted.parquet"), str(scored), world["registry"], "churn", with_features=True)
    config = MonitorConfig.from_dict({"retrain": {"runner": "none"}, "window": {"rows": 500, "seconds": 3600}})
    monitor = Monitor(world["registry"], tmp_path / "store", config, tick_seconds=0.2)
    with ServerThread(monitor.app, http=monitor.http_protocol()) as server:
        fed = feed_monitor(str(scored), "churn", world["registry"], server.url, event_rows=300)
        deadline = time.monotonic() + 60
        while len(monitor.windows.get("churn", ())) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        windows = httpx.get(f"{server.url}/windows/churn").json()
    assert fed.rows == 1200 and fed.events == 4 and fed.versions == [1]
    assert len(windows) == 2
    for window in windows:
        assert window["error"] is None and window["n_rows"] == 500 and window["rows_by_version"] == {"1": 500}
        assert window["drift_share"] > 0 and window["drifted_features"]
    stored = monitor.store.read("churn")  # the server's shutdown wrote its last checkpoint
    assert len(stored) == 1200 and set(stored["endpoint"]) == {BATCH_ENDPOINT}


@pytest.fixture(scope="module")
def task_world(tmp_path_factory) -> dict:
    """``tickets`` (multi-class, its fast path accepted) and ``bills`` (regression, its fast path accepted) in
    production, and a 900-row table of each to score."""
    tmp = tmp_path_factory.mktemp("batch-tasks")
    registry = LocalRegistry(tmp / "registry")
    models = {MULTICLASS: trained(MULTICLASS, "random_forest"), REGRESSION: trained(REGRESSION, "ridge")}
    names = {MULTICLASS: "tickets", REGRESSION: "bills"}
    for task, model in models.items():
        registry.promote(names[task], register(registry, tmp, names[task], model), actor="test")
        task_frame(task, 900, seed=41).drop(columns=[synthetic.TARGETS[task]]).to_csv(tmp / f"{task}.csv", index=False)
    return {"tmp": tmp, "registry": registry, "models": models, "names": names}


@pytest.mark.parametrize("task", [MULTICLASS, REGRESSION])
def test_a_multiclass_table_gets_labels_and_class_probabilities_a_regression_table_numbers(task_world, task) -> None:
    model, name, tmp = task_world["models"][task], task_world["names"][task], task_world["tmp"]
    out = tmp / f"scored-{task}.parquet"
    score_table(str(tmp / f"{task}.csv"), str(out), task_world["registry"], name, chunk_rows=250)
    scored = pd.read_parquet(out)
    table = pd.read_csv(tmp / f"{task}.csv")
    assert scored[synthetic.ID_COLUMN].tolist() == table[synthetic.ID_COLUMN].tolist()
    frame = coerce_to_spec(table, model.spec)[model.spec.feature_names]
    if task == REGRESSION:
        assert list(scored.columns) == [synthetic.ID_COLUMN, PREDICTION_COLUMN, VERSION_COLUMN]
        assert scored[PREDICTION_COLUMN].dtype == np.float64
        np.testing.assert_allclose(scored[PREDICTION_COLUMN], model.model.predict(frame), rtol=1e-5)
        return
    probabilities = [f"probability_{label}" for label in CLASSES]  # one column per class, in the classes' order
    assert list(scored.columns) == [synthetic.ID_COLUMN, PREDICTION_COLUMN, *probabilities, VERSION_COLUMN]
    assert scored[PREDICTION_COLUMN].tolist() == [CLASSES[i] for i in model.model.predict(frame)]
    np.testing.assert_allclose(scored[probabilities].to_numpy(), model.model.predict_proba(frame), atol=1e-5)
    np.testing.assert_allclose(scored[probabilities].sum(axis=1), 1.0, atol=1e-6)  # the forest's float32 leaves


def test_a_regression_table_missing_feature_columns_is_refused_in_one_line(task_world, tmp_path) -> None:
    partial = tmp_path / "partial.csv"
    pd.read_csv(task_world["tmp"] / f"{REGRESSION}.csv").drop(columns=["monthly_spend"]).to_csv(partial, index=False)
    refused = run_cli("score", "--data", str(partial), "--model", "bills", "--output", str(tmp_path / "x.csv"),
                      "--registry", str(task_world["registry"].root))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"driftloop: error: {partial} lacks 1 feature column(s) bills v1 needs: monthly_spend"]


@pytest.mark.parametrize("task", [MULTICLASS, REGRESSION])
def test_a_scored_multiclass_or_regression_table_reaches_the_monitor_as_the_gateway_answers(task_world, task,
                                                                                            tmp_path) -> None:
    """The feed posts what the gateway would have answered for the rows (labels, numbers); the monitor stores
    them as the predictions of its rows."""
    name, tmp = task_world["names"][task], task_world["tmp"]
    scored = tmp_path / "scored.csv"  # CSV: the labels come back as text, the numbers as numbers
    score_table(str(tmp / f"{task}.csv"), str(scored), task_world["registry"], name, with_features=True)
    config = MonitorConfig.from_dict({"retrain": {"runner": "none"}, "window": {"rows": 10_000, "seconds": 3600}})
    monitor = Monitor(task_world["registry"], tmp_path / "store", config, tick_seconds=0.2)
    with ServerThread(monitor.app, http=monitor.http_protocol()) as server:
        fed = feed_monitor(str(scored), name, task_world["registry"], server.url, event_rows=400)
    stored = monitor.store.read(name)
    written = pd.read_csv(scored)[PREDICTION_COLUMN]
    assert fed.rows == len(stored) == 900 and fed.events == 3
    if task == MULTICLASS:
        assert stored["prediction"].tolist() == written.tolist() and set(written) <= set(CLASSES)
    else:
        np.testing.assert_allclose(stored["prediction"].astype(float), written)
