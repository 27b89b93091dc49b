"""The CLI as a user meets it: bad input gives one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from driftloop import synthetic
from tests.table_text import squash, table_columns

from ..conftest import run_cli


def _assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("driftloop: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic.generate(300, seed=5)


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "data.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def test_missing_file(tmp_path) -> None:
    result = run_cli("run", "--home", str(tmp_path), "--data", str(tmp_path / "absent.csv"), "--target", "y")
    _assert_one_line_error(result, "file not found", "absent.csv")


def test_unreadable_file(tmp_path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"\x00\x01 definitely not parquet")
    result = run_cli("run", "--home", str(tmp_path), "--data", str(path), "--target", "churned")
    _assert_one_line_error(result, "cannot parse", "broken.parquet")


def test_missing_target_column(tmp_path, table) -> None:
    result = run_cli("run", "--home", str(tmp_path), "--data", _write(tmp_path, table), "--target", "label")
    _assert_one_line_error(result, "column 'label'", "target column not found")


def test_all_null_column(tmp_path, table) -> None:
    frame = table.assign(credit_score=None)
    spec = tmp_path / "spec.json"
    # Declare the spec: inference alone cannot tell what an all-null column was meant to be.
    result = run_cli("spec", "--data", _write(tmp_path, table), "--target", "churned", "--id-column", "customer_id",
                     "--timestamp-column", "event_time", "--json")
    assert result.returncode == 0, result.stderr
    spec.write_text(result.stdout)
    result = run_cli("run", "--home", str(tmp_path), "--data", _write(tmp_path, frame, "nulls.csv"),
                     "--target", "churned", "--spec", str(spec))
    _assert_one_line_error(result, "column 'credit_score'", "entirely null")


def test_text_in_numeric_column(tmp_path, table) -> None:
    frame = table.astype({"age": object})
    frame.loc[7, "age"] = "forty"
    result = run_cli("run", "--home", str(tmp_path), "--data", _write(tmp_path, frame), "--target", "churned",
                     "--id-column", "customer_id", "--timestamp-column", "event_time")
    _assert_one_line_error(result, "column 'age'", "text in a numeric column", "'forty'")


def test_target_with_one_class(tmp_path, table) -> None:
    frame = table.assign(churned=0)
    result = run_cli("run", "--home", str(tmp_path), "--data", _write(tmp_path, frame), "--target", "churned",
                     env={"COLUMNS": "80"})
    _assert_one_line_error(result, "column 'churned'", "single class")
    assert result.returncode == 1  # the run failed; the command line was fine
    # Said once (not again under a table of dashes), and what the failed run wrote is listed to look at.
    assert (result.stdout + result.stderr).count("single class") == 1
    assert "data validation failed: data validation failed" not in result.stderr
    assert "FAILED" in result.stdout and "–" not in result.stdout
    artifacts = table_columns(result.stdout, "CT run #1")
    assert squash(artifacts["artifact"]).startswith("validation_report")
    assert Path(re.match(r"/.*?/load-and-validate/report", squash(artifacts["path"])).group(0)).exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--estimator", "xgboost", "--param", "n_trees=5"], "has no parameter(s) n_trees"),
        (["--canary-percent", "150"], "canary_percent must be within 0..100, got 150"),
        (["--model-name", "Bad Name"], "model_name 'Bad Name' is invalid"),
        (["--min-gate-value", "2"], "min_gate_value must be within 0..1, got 2.0"),
        (["--target", "churned"], "--target needs --data"),
    ],
)
def test_bad_options_fail_before_any_work(tmp_path, args, fragment) -> None:
    result = run_cli("run", "--home", str(tmp_path), *args)
    _assert_one_line_error(result, fragment)
    assert not (tmp_path / "runs").exists()


def test_spec_shows_inferred_types_and_json_round_trips(tmp_path, table) -> None:
    data = _write(tmp_path, table)
    shown = run_cli("spec", "--data", data, "--target", "churned", "--id-column", "customer_id",
                    "--timestamp-column", "event_time")
    assert shown.returncode == 0
    for fragment in ("age", "numeric", "region", "categorical", "has_autopay", "boolean"):
        assert fragment in shown.stdout
    as_json = json.loads(run_cli("spec", "--data", data, "--target", "churned", "--json").stdout)
    assert as_json["target"] == "churned"
    kinds = {f["name"]: f["kind"] for f in as_json["features"]}
    assert kinds["plan"] == "categorical" and kinds["is_promo"] == "boolean" and kinds["income"] == "numeric"


def test_run_on_a_users_csv_prints_summary_and_json(tmp_path, table) -> None:
    frame = table.assign(has_autopay=table["has_autopay"].map({True: "yes", False: "no"}))
    data = _write(tmp_path, frame)
    result = run_cli("run", "--home", str(tmp_path), "--data", data, "--target", "churned", "--id-column",
                     "customer_id", "--timestamp-column", "event_time", "--model-name", "users-model", "--json")
    assert result.returncode == 0, result.stderr
    [summary] = json.loads(result.stdout)
    assert summary["state"] == "SUCCEEDED" and summary["version"] == 1 and summary["deploy_action"] == "promoted"
    assert "load-and-validate" in result.stderr  # progress went to stderr, JSON alone to stdout
    assert {"model_card", "evaluation_report", "validation_report"} <= set(summary["artifacts"])
    assert all(Path(path).exists() for path in summary["artifacts"].values())  # kfp.local's Metrics have no file
