"""`driftloop drift` for a cron job or a pipeline step, and the drift component under kfp.local."""

from __future__ import annotations

import json

import pytest

from driftloop import synthetic
from tests.html_checks import PAYLOAD, assert_payload_is_inert_data

from ..conftest import run_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("drift")
    paths = {"reference": root / "reference.csv", "same": root / "same.parquet", "shifted": root / "shifted.csv",
             "hostile": root / "hostile.parquet", "partly": root / "partly.parquet"}
    reference = synthetic.generate(2000, seed=1)
    reference.to_csv(paths["reference"], index=False)
    partly = synthetic.generate(2000, seed=2)  # five of the fourteen features moved far, the rest as they were
    for column in ("age", "income", "tenure_months", "monthly_spend", "credit_score"):
        partly[column] = partly[column] * 3 + partly[column].std() * 4
    partly.to_parquet(paths["partly"], index=False)
    synthetic.generate(2000, seed=2).to_parquet(paths["same"], index=False)
    shifted = synthetic.generate(2000, seed=3, covariate_shift=0.8)
    shifted.to_csv(paths["shifted"], index=False)
    shifted.loc[shifted.index[:40], "region"] = PAYLOAD  # a category value that is markup
    shifted.to_parquet(paths["hostile"], index=False)
    return {k: str(v) for k, v in paths.items()} | {"root": root}


def _drift(files, current: str, *extra: str):
    return run_cli("drift", "--reference", files["reference"], "--current", files[current], "--target", "churned",
                   "--id-column", "customer_id", "--timestamp-column", "event_time",
                   "--report", str(files["root"] / f"{current}.html"), *extra)


def test_exit_codes_table_and_report(files) -> None:
    calm = _drift(files, "same")
    assert calm.returncode == 0, calm.stderr
    assert "no dataset drift" in calm.stdout and "support_calls" in calm.stdout
    shifted = _drift(files, "shifted")
    assert shifted.returncode == 1 and "DATASET DRIFT" in shifted.stdout
    assert (files["root"] / "shifted.html").stat().st_size > 10_000


def test_the_report_keeps_a_hostile_category_as_data(files) -> None:
    result = _drift(files, "hostile")
    assert result.returncode == 1, result.stderr
    assert_payload_is_inert_data((files["root"] / "hostile.html").read_text())


def test_json_output(files) -> None:
    result = _drift(files, "shifted", "--json")
    payload = json.loads(result.stdout)
    assert payload["dataset_drift"] and "support_calls" in payload["drifted_features"]
    assert {f["column"] for f in payload["features"]} >= {"age", "region", "has_autopay"}


def test_unknown_method_is_one_line(files) -> None:
    result = _drift(files, "same", "--num-method", "bogus")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("driftloop: error: unknown drift method") and "wasserstein" in result.stderr


def test_missing_file_is_one_line(files) -> None:
    result = run_cli("drift", "--reference", files["reference"], "--current", "/nope.csv")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "driftloop: error: file not found: /nope.csv"


def test_one_default_drift_share_for_the_cli_the_monitor_and_the_component(files) -> None:
    from driftloop import drift_defaults
    from driftloop.cli import build_parser
    from driftloop.components.check_drift import check_drift
    from driftloop.drift import DriftConfig
    from driftloop.monitor.config import MonitorConfig

    args = build_parser().parse_args(["drift", "--reference", "r.csv", "--current", "c.csv"])
    inputs = check_drift.component_spec.inputs
    assert args.drift_share == MonitorConfig().drift.drift_share == DriftConfig().drift_share == 0.3
    assert inputs["drift_share"].default == drift_defaults.DRIFT_SHARE
    assert (inputs["num_method"].default, inputs["cat_method"].default) == (args.num_method, args.cat_method)


def test_drift_between_the_default_share_and_a_half_exits_1(files) -> None:
    """A third of the features drifting is drift by default (the share the monitor retrains at), not at 0.5."""
    result = _drift(files, "partly", "--json")
    share = json.loads(result.stdout)["drift_share"]
    assert 0.3 <= share < 0.5 and result.returncode == 1, (share, result.stderr)
    assert _drift(files, "partly", "--drift-share", "0.5").returncode == 0


def test_drift_component_runs_under_kfp_local(files, tmp_path) -> None:
    import warnings

    from kfp import local

    from driftloop.components.check_drift import check_drift
    from driftloop.data import infer_spec, load_table

    reference, _ = load_table(files["reference"])
    spec = infer_spec(reference, "churned", "customer_id", "event_time")
    local.init(local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = check_drift(reference_uri=files["reference"], current_uri=files["hostile"], spec_json=spec.to_json())
    assert task.outputs["drifted"] is True
    with open(task.outputs["report"].path) as report:  # the HTML artifact the Kubeflow dashboard shows
        assert_payload_is_inert_data(report.read())
    assert json.loads(task.outputs["result_json"])["drift_share"] == task.outputs["drift_share"]
    assert task.outputs["metrics"].metadata["drift_share"] == task.outputs["drift_share"]
