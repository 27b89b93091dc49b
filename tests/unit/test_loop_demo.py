"""The demo's parts per task: its options and flags, its traffic, and what it prints in the task's terms.

The whole loop runs in tests/integration/test_closed_loop.py; these check what differs between the tasks.
"""

from __future__ import annotations

import pytest

from driftloop import synthetic
from driftloop.cli import build_parser
from driftloop.console import print_demo_summary
from driftloop.errors import ConfigError
from driftloop.loop_demo import DemoSummary, _traffic, describe_window, monitor_config, version_metrics
from driftloop.loop_demo_options import DemoOptions
from driftloop.tasks import BINARY, MULTICLASS, REGRESSION, TASKS
from tests.table_text import squash


def test_the_demo_flags_default_to_the_demo_options_and_take_a_task() -> None:
    parser = build_parser()
    defaults = parser.parse_args(["demo"])
    options = DemoOptions()
    assert (defaults.rows, defaults.clean_rows, defaults.rate, defaults.window_rows, defaults.timeout,
            defaults.after_windows, defaults.task) == (options.train_rows, options.clean_rows, options.rate,
                                                       options.window_rows, options.timeout, options.after_windows,
                                                       BINARY)
    assert parser.parse_args(["demo", "--task", "regression"]).task == REGRESSION
    with pytest.raises(ConfigError, match="task must be one of binary, multiclass, regression, got 'ranking'"):
        DemoOptions(task="ranking")


@pytest.mark.parametrize("task", TASKS)
def test_the_demo_serves_and_monitors_the_tasks_model_on_the_tasks_table(task) -> None:
    options = DemoOptions(task=task, clean_rows=500, rate=10, timeout=20, after_windows=0)
    config = monitor_config("http://127.0.0.1:1", "http://127.0.0.1:2", options)
    assert config["model"] == synthetic.MODEL_NAMES[task]

    traffic = _traffic(options)
    target = synthetic.TARGETS[task]
    assert target in traffic.columns and set(synthetic.TARGETS.values()) & set(traffic.columns) == {target}
    clean, drifted = traffic.iloc[:500], traffic.iloc[500:]
    assert drifted["support_calls"].mean() > clean["support_calls"].mean() + 1  # the world drifts after 500 rows
    assert traffic[synthetic.ID_COLUMN].is_unique


def test_a_window_line_speaks_the_tasks_realised_quality() -> None:
    window = {"id": 4, "n_rows": 500, "reference_version": 1, "drift_share": 0.62,
              "drifted_features": ["age", "income", "plan", "support_calls"],
              "prediction_drift": {"score": 0.31}, "decision": {"action": "signal"},
              "quality": {"labelled": 250, "accuracy": 0.42, "f1_macro": 0.37, "rmse": 12.04, "mae": 9.5}}

    assert describe_window(window, REGRESSION) == (
        "window 4 (500 rows vs v1): drift share 0.62 (age, income, plan …), prediction drift 0.31, rmse 12.04, "
        "mae 9.50 on 250 labels → signal")
    assert "accuracy 0.42, f1_macro 0.37 on 250 labels" in describe_window(window, MULTICLASS)
    assert "accuracy 0.42 on 250 labels →" in describe_window(window, BINARY)
    assert "rmse" not in describe_window({**window, "quality": {"labelled": 0}}, REGRESSION)


@pytest.mark.parametrize(("task", "columns"), [(BINARY, ("roc_auc", "accuracy")),
                                               (MULTICLASS, ("f1_macro", "accuracy")),
                                               (REGRESSION, ("rmse", "mae"))])
def test_the_demo_summary_shows_each_version_by_the_tasks_metrics(task, columns, capsys) -> None:
    assert version_metrics(task) == columns
    model = synthetic.MODEL_NAMES[task]
    values = {"roc_auc": 0.8123, "accuracy": 0.7012, "f1_macro": 0.6034, "rmse": 7.0456, "mae": 5.5012}
    summary = DemoSummary("promoted", model=model, task=task, metrics=list(columns), registry="/tmp/registry",
                          summary_path="/tmp/summary.json", onset_to_promotion_seconds=41.5, versions=[
                              {"version": 1, "aliases": [], "triggered_by": "manual", "parent_version": None,
                               **{name: values[name] for name in columns}}],
                          after_promotion=[{"drift_share": 0.07, "dataset_drift": False}])
    print_demo_summary(summary)
    printed = capsys.readouterr().err

    assert f"versions of {model} ({task})" in printed
    for name in columns:
        assert name in printed and f"{values[name]:.4f}" in printed
    others = {"roc_auc", "f1_macro", "rmse"} - set(columns)
    assert not any(name in printed for name in others), printed
    assert f"driftloop models history {model} --registry /tmp/registry" in printed
    assert squash("drift share 0.07; alarm cleared, no further retrain") in squash(printed) and "[green]" not in printed
