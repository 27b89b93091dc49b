"""The CT parameters are defined once (CTParams): components, CLI and monitor agree with that definition."""

from __future__ import annotations

import argparse
import inspect

import pytest

from driftloop import ct_params
from driftloop.ct_params import CTParams, check_overrides
from driftloop.errors import ConfigError


def _components():
    from driftloop.components import (
        deploy_model,
        evaluate_model,
        load_and_validate,
        record_outcome,
        register_model,
        train_model,
    )
    from driftloop.pipelines import ct_pipeline  # noqa: F401 - importing builds every component

    modules = (deploy_model, evaluate_model, load_and_validate, record_outcome, register_model, train_model)
    return [getattr(module, module.__name__.rsplit(".", 1)[1]) for module in modules]


def test_every_component_input_named_like_a_ct_parameter_has_its_type_and_default() -> None:
    by_name = {f.name: f for f in ct_params.fields()}
    checked = 0
    for component in _components():
        signature = inspect.signature(component.python_func)
        for name, parameter in signature.parameters.items():
            if name not in by_name:
                continue
            checked += 1
            assert parameter.annotation in (ct_params.python_type(by_name[name]), by_name[name].type), (
                f"{component.name}.{name}")
            if parameter.default is not inspect.Parameter.empty:
                assert parameter.default == ct_params.default_of(name), f"{component.name}.{name}"
    assert checked >= 25


def test_the_estimator_choices_are_the_ones_training_implements() -> None:
    from driftloop.training import ESTIMATORS

    assert tuple(ESTIMATORS) == ct_params.ESTIMATOR_NAMES


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_every_gate_metric_of_a_task_is_one_its_evaluation_computes(task) -> None:
    import numpy as np

    from driftloop.evaluation import task_scores
    from driftloop.tasks import GATE_METRICS as BY_TASK

    y = np.array([0, 1, 2, 0, 1, 2]) if task == "multiclass" else np.array([0, 1, 0, 1, 1, 0])
    output = (np.eye(3)[y] * 0.7 + 0.1 if task == "multiclass" else y.astype(float) * 0.8 + 0.1
              if task == "regression" else np.column_stack([1 - (y * 0.8 + 0.1), y * 0.8 + 0.1]))
    assert set(BY_TASK[task]) <= set(task_scores(task, y, output))


def test_every_cli_facing_parameter_is_a_flag_with_its_default() -> None:
    parser = argparse.ArgumentParser()
    ct_params.add_ct_arguments(parser)
    args = parser.parse_args([])
    values = ct_params.ct_values_from_args(args)
    for f in ct_params.fields():
        if f.metadata["cli"]:
            assert values[f.name] == ct_params.default_of(f.name), f.name
    parsed = ct_params.ct_values_from_args(parser.parse_args(
        ["--canary-percent", "25", "--serve-target", "kserve", "--estimator", "logistic_regression",
         "--param", "max_iter=50",
         "--rollout-policy", '{"steps": [20, 100]}']))
    params = CTParams(data_uri="s3://b/d.csv", target="y", **parsed)
    assert (params.canary_percent, params.serve_target) == (25, "kserve")
    assert params.estimator_params == {"max_iter": 50} and params.rollout_policy == {"steps": [20, 100]}


@pytest.mark.parametrize(("values", "message"), [
    ({"canary_percent": 101}, "canary_percent must be within 0..100, got 101"),
    ({"canary_percent": "10"}, "canary_percent must be int"),
    ({"serve_target": "docker"}, "serve_target must be one of local, kserve"),
    ({"rollout_policy": {"steps": [50]}}, "rollout steps must rise"),
    ({"rollout_policy": {"stepz": [50, 100]}}, "unknown rollout policy setting(s): stepz"),
    ({"logger_url": "monitor:8080/events"}, "logger_url must be an http:// or https:// URL"),
    ({"serve_target": "kserve", "rollout_gateway": "http://gw"}, "rollout_gateway is for serve_target 'local'"),
    ({"estimator": "xgboost", "estimator_params": {"n_trees": 3}}, "has no parameter(s) n_trees"),
    ({"estimator_params": {"max_iter": 3}}, "estimator_params need a pinned estimator, not 'auto'"),
])
def test_bad_values_are_refused_with_the_parameter_named(values, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CTParams(data_uri="d.csv", target="y", **values)


def test_data_and_target_are_required() -> None:
    with pytest.raises(ConfigError, match="data_uri is required"):
        CTParams(data_uri="", target="y")


def test_monitor_overrides_are_checked_and_typed_and_may_not_set_what_the_monitor_sets() -> None:
    assert check_overrides({"canary_percent": 20.0, "estimator": "xgboost"}) == {"canary_percent": 20,
                                                                               "estimator": "xgboost"}
    with pytest.raises(ConfigError, match="unknown CT parameter\\(s\\): estimater"):
        check_overrides({"estimater": "xgboost"})
    with pytest.raises(ConfigError, match="data_uri are set by the monitor"):
        check_overrides({"data_uri": "x"}, ct_params.SET_PER_RETRAIN)


def test_a_monitor_config_with_a_mistyped_pipeline_parameter_does_not_load() -> None:
    from driftloop.monitor.config import MonitorConfig

    with pytest.raises(ConfigError, match="retrain.pipeline_params: unknown CT parameter\\(s\\): canary_pct"):
        MonitorConfig.from_dict({"retrain": {"pipeline_params": {"canary_pct": 5}}})
