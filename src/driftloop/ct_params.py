"""The CT pipeline's parameters, defined once.

:class:`CTParams` is the definition: every parameter's name, type, default, help text and check lives in
its field. Everything else derives from it — the compiled pipeline's signature
(``pipelines/ct_pipeline.py``), the CLI flags of ``driftloop run | submit | schedule create``
(:func:`add_ct_arguments`), the checks the deploy step and the monitor apply (:func:`check_value`,
:func:`check_overrides`) — and a test ties the component signatures to it. This module imports nothing
heavy: the CLI builds its parser from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

from driftloop.errors import ConfigError
from driftloop.logger_storage import BATCH_INTERVAL
from driftloop.logger_storage import FORMATS as LOG_FORMATS
from driftloop.logger_storage import check_uri as check_store_uri
from driftloop.tasks import ALL_GATE_METRICS, INFER, TASKS

# Choices, named once; training.ESTIMATORS is tested to match them, and every task's gate metrics to be
# ones its evaluation computes.
ESTIMATOR_NAMES = ("logistic_regression", "ridge", "random_forest", "gradient_boosting", "xgboost")
AUTO = "auto"  # fit a few candidates, keep the best on a validation split (training.AUTO_CANDIDATES)
GATE_METRIC_NAMES = (INFER, *ALL_GATE_METRICS)  # auto: the task's own (tasks.GATE_METRICS)
SERVE_TARGETS = ("local", "kserve")
DEPLOYMENT_MODES = ("Serverless", "Standard")
DEFAULT_CLUSTER_REGISTRY = "s3://driftloop/registry"


def _between(low: float, high: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not low <= value <= high:  # NaN fails here too: it compares false with everything
            return f"must be within {low:g}..{high:g}, got {value}"
        return None

    return check


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}, got '{value}'"


def _positive(value: Any) -> str | None:
    return None if value > 0 and math.isfinite(value) else f"must be > 0, got {value}"


def _url_or_empty(value: Any) -> str | None:
    if value and not str(value).startswith(("http://", "https://")):
        return f"must be an http:// or https:// URL, got '{value}'"
    return None


def _store_uri_or_empty(value: Any) -> str | None:
    return check_store_uri(value) if value else None


def _at_least_one(value: Any) -> str | None:
    return None if value >= 1 else f"must be >= 1, got {value}"


# The payload logger's settings, which ServingConfig and the deploy step take under the same names.
_STORE_ONLY = ("logger_storage_format", "logger_storage_account", "logger_batch_size")  # mean nothing without a store
LOGGER_SETTINGS = ("logger_url", "logger_storage", *_STORE_ONLY)


def logger_sink_problem(settings: Any) -> str | None:
    """What is wrong with the payload logger's settings taken together (``settings`` has the attributes of
    :data:`LOGGER_SETTINGS`): KServe's agent takes one ``logger.url``, an HTTP receiver or a blob store, and the
    storage settings mean nothing without the store."""
    if settings.logger_url and settings.logger_storage:
        return ("logger_url and logger_storage exclude each other: KServe's agent sends to one logger url, the "
                "monitor's /events or an object store the monitor reads (kserve_store)")
    if not settings.logger_storage:
        ignored = [name for name in _STORE_ONLY if getattr(settings, name) != default_of(name)]
        if ignored:
            verb = "applies" if len(ignored) == 1 else "apply"
            return f"{', '.join(ignored)} {verb} only with logger_storage (an object store for the payload log)"
    elif not settings.logger_storage_account:
        return "logger_storage needs logger_storage_account: the ServiceAccount whose Secret holds the store's keys"
    return None


def _model_name(value: Any) -> str | None:
    from driftloop.registry.base import check_model_name

    if value == "":
        return None  # filled from the data file's name when the parameters are made
    try:
        check_model_name(value)
    except ConfigError as exc:
        return f"'{value}' is invalid: {str(exc).split(': ', 1)[-1]}"
    return None


def _rollout_policy(value: Any) -> str | None:
    from driftloop.rollout.policy import RolloutPolicy

    try:
        RolloutPolicy.from_dict(value)
    except ConfigError as exc:
        return str(exc)
    return None


def _spec_json(value: Any) -> str | None:
    if not value:
        return None
    from driftloop.data import DatasetSpec

    try:
        DatasetSpec.from_json(value)
    except (ConfigError, ValueError, TypeError, KeyError) as exc:
        return f"is not a dataset spec: {exc}"
    return None


def _param(default: Any = dataclasses.MISSING, help: str = "", *, check: Callable[[Any], str | None] | None = None,
           choices: tuple[str, ...] | None = None, cli: bool = True, flag: str | None = None) -> Any:
    """A CT parameter: its default, what it means, its check, and how the CLI offers it."""
    if choices and check is None:
        check = _one_of(choices)
    metadata = {"help": help, "check": check, "choices": choices, "cli": cli, "flag": flag}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class CTParams:
    """The CT pipeline's parameters (the same names as the compiled pipeline's inputs)."""

    data_uri: str = _param(help="training data: a CSV or Parquet path, or s3:// URI", cli=False)
    target: str = _param(help="the label column", cli=False)
    model_name: str = _param("", "registered model name (lowercase, digits, '-'); empty: from the data file's name",
                             check=_model_name)
    registry_uri: str = _param(DEFAULT_CLUSTER_REGISTRY, "the model registry: a directory or s3://bucket/prefix",
                               cli=False)
    spec_json: str = _param("", "dataset spec as JSON (from 'driftloop spec --json'); inferred if empty",
                            check=_spec_json, cli=False)
    recent_uri: str = _param("", "drift retrains: the newest labelled rows, held back from training; how much the new "
                             "world weighs is chosen on them, and the gate compares with the champion there", cli=False)
    task: str = _param(INFER, "binary, multiclass or regression; auto: from the target (a few labels: "
                       "classification, many numbers: regression)", choices=(INFER, *TASKS))
    id_column: str = _param("", "row id column, kept out of the features")
    timestamp_column: str = _param("", "event time column, kept out of the features")
    estimator: str = _param(AUTO, "the model to fit (logistic_regression: classification, ridge: regression); auto: "
                            "the best of a linear model, gradient boosting and XGBoost on a validation split",
                            choices=(AUTO, *ESTIMATOR_NAMES))
    estimator_params: dict = _param({}, "estimator parameters", cli=False)
    calibration: str = _param("none", "calibrate the final model's probabilities (sigmoid or isotonic; 4x the fit "
                              "time); the evaluation report shows reliability either way",
                              choices=("none", "sigmoid", "isotonic"))
    test_size: float = _param(0.25, "share of rows held out for the gate", check=_between(0.05, 0.5))
    seed: int = _param(42, "random seed of the split and the estimator")
    gate_metric: str = _param(INFER, "the metric the gate judges; auto: the task's (roc_auc, f1_macro, rmse)",
                              choices=GATE_METRIC_NAMES)
    min_gate_value: float = _param(0.6, "a score gate metric must reach this (an error metric — rmse, mae, "
                                   "log_loss — must beat a model that ignores the features)",
                                   check=_between(0.0, 1.0))
    max_regression: float = _param(0.01, "largest allowed drop of the gate metric against the champion (error "
                                   "metrics: a fraction of the champion's)",
                                   check=_between(0.0, 1.0))
    canary_percent: int = _param(10, "traffic share of a new version at its first rollout step (100: no canary)",
                                 check=_between(0, 100))
    serve_target: str = _param("local", "where versions serve: 'local' (registry aliases the local gateway "
                               "follows) or 'kserve' (an InferenceService)", choices=SERVE_TARGETS)
    serving_namespace: str = _param("", "the InferenceService's namespace (kserve); empty: the namespace the "
                                    "step's pod runs in")
    deployment_mode: str = _param("Serverless", "KServe deployment mode: Serverless (Knative, "
                                  "canaryTrafficPercent) or Standard (spec.canary, KServe >= 0.20)",
                                  choices=DEPLOYMENT_MODES)
    serving_account: str = _param("driftloop-serving", "ServiceAccount of the predictor pods (holds the S3 "
                                  "read credentials)")
    logger_url: str = _param("", "payload log receiver for the InferenceService (the drift monitor's /events "
                             "URL); empty: no payload logging over HTTP", check=_url_or_empty)
    logger_storage: str = _param("", "payload logs written by KServe's agent to object storage instead "
                                 "(logger.storage): s3://bucket/prefix, the monitor's kserve_store uri; empty: "
                                 "off. Excludes logger_url", check=_store_uri_or_empty)
    logger_storage_format: str = _param(LOG_FORMATS[0], "logger_storage object format (parquet and csv: KServe "
                                        ">= 0.17)", choices=LOG_FORMATS)
    logger_storage_account: str = _param("driftloop-logger", "logger_storage: the ServiceAccount whose Secret "
                                         "holds the agent's S3 write credentials")
    logger_batch_size: int = _param(1, "logger_storage: records per object (> 1: KServe >= 0.17; a partial batch "
                                    f"is written within {BATCH_INTERVAL})", check=_at_least_one)
    ready_timeout: float = _param(600.0, "seconds a new revision may take to become Ready (kserve)",
                                  check=_positive)
    rollout_gateway: str = _param("", "local: the gateway whose /metrics the canary analysis reads; empty: "
                                  "no analysis, the canary keeps its share", check=_url_or_empty)
    rollout_prometheus: str = _param("", "kserve: the Prometheus the canary analysis queries; empty: no "
                                     "analysis, the canary keeps its share", check=_url_or_empty)
    rollout_interval: float = _param(30.0, "seconds each rollout step is observed", check=_positive)
    rollout_monitor: str = _param("", "the drift monitor's URL: the analysis also compares realised quality",
                                  check=_url_or_empty)
    rollout_policy: dict = _param({}, "overrides of the rollout policy (steps, min_requests, …)",
                                  check=_rollout_policy, cli=False)
    triggered_by: str = _param("manual", "what started the run (the monitor writes drift:<key>)", cli=False)
    intended_use: str = _param("", "the model card's intended use: what the model is for, for whom, and what it must "
                               "not be used for")
    limitations: str = _param("", "the model card's known limitations and caveats (where it fails, what it was not "
                              "tested on)")

    def __post_init__(self) -> None:
        if not self.model_name and self.data_uri:
            self.model_name = model_name_from(self.data_uri)
        problems = self.problems()
        if problems:
            raise ConfigError(problems[0])

    def _task_for_checks(self) -> str:
        """The declared task, else one the estimator fits (ridge: regression), for checks made before the data."""
        if self.task != INFER:
            return self.task
        from driftloop.tasks import TASK_ONLY_ESTIMATORS

        return TASK_ONLY_ESTIMATORS.get(self.estimator, TASKS)[0]

    def _task_problems(self) -> list[str]:
        """A gate metric or estimator that cannot fit the declared task (the data decides when it is auto)."""
        from driftloop.tasks import GATE_METRICS, estimator_mismatch, is_classification

        if self.task == INFER:
            return []
        found = []
        if self.gate_metric != INFER and self.gate_metric not in GATE_METRICS[self.task]:
            found.append(f"gate_metric '{self.gate_metric}' does not fit a {self.task} target; use one of "
                         f"{', '.join(GATE_METRICS[self.task])}")
        mismatch = estimator_mismatch(self.estimator, self.task) if self.estimator != AUTO else None
        if mismatch:
            found.append(mismatch)
        if self.calibration != "none" and not is_classification(self.task):
            found.append("calibration is for classifiers' probabilities; a regression takes 'none'")
        return found

    def problems(self) -> list[str]:
        """Every parameter that fails its check, as ``name: what is wrong`` lines."""
        found = [f"{f.name} is required" for f in dataclasses.fields(self)
                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                 and not getattr(self, f.name)]
        for f in dataclasses.fields(self):
            problem = _check_field(f, getattr(self, f.name))
            if problem:
                found.append(problem)
        if self.estimator_params and self.estimator == AUTO:
            found.append("estimator_params need a pinned estimator, not 'auto'")
        elif self.estimator_params and not found:
            from driftloop.training import (
                make_estimator,  # scikit-learn: only when there is something to check
            )

            try:
                make_estimator(self.estimator, self.estimator_params, self.seed, self._task_for_checks())
            except ConfigError as exc:
                found.append(f"estimator_params: {exc}")
        found.extend(self._task_problems())
        sinks = logger_sink_problem(self)
        if sinks:
            found.append(sinks)
        if self.serve_target == "local" and self.rollout_prometheus:
            found.append("rollout_prometheus is for serve_target 'kserve'; locally the analysis reads the gateway "
                         "(rollout_gateway)")
        if self.serve_target == "kserve" and self.rollout_gateway:
            found.append("rollout_gateway is for serve_target 'local'; on KServe the analysis reads Prometheus "
                         "(rollout_prometheus)")
        return found

    def arguments(self) -> dict:
        """The pipeline's run arguments."""
        return asdict(self)

    def with_values(self, **values: Any) -> CTParams:
        """A checked copy with some parameters replaced."""
        return dataclasses.replace(self, **values)


def model_name_from(data_uri: str) -> str:
    """A model name from the data file's name (``s3://b/Census Income.parquet`` → ``census-income``)."""
    stem = PurePosixPath(data_uri.split("?")[0].rstrip("/")).stem.lower()
    name = re.sub(r"[^a-z0-9]+", "-", stem).strip("-")[:45].strip("-")
    return name if name and name[0].isalnum() else "model"


# Inputs a pipeline run must be given: a pipeline cannot derive one input's default from another's.
REQUIRED_IN_PIPELINE = ("data_uri", "target", "model_name")


def fields() -> tuple[dataclasses.Field, ...]:
    """The parameters in pipeline order."""
    return dataclasses.fields(CTParams)


def python_type(f: dataclasses.Field) -> type:
    """The parameter's Python type (the dataclass holds it as a string annotation)."""
    return {"str": str, "int": int, "float": float, "bool": bool, "dict": dict}[str(f.type)]


def default_of(name: str) -> Any:
    """A parameter's default (a fresh copy for dicts)."""
    f = _field(name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _field(name: str) -> dataclasses.Field:
    for f in fields():
        if f.name == name:
            return f
    raise ConfigError(f"unknown CT parameter '{name}'")


def _check_field(f: dataclasses.Field, value: Any) -> str | None:
    kind = python_type(f)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)  # KFP hands JSON numbers over as floats
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        return f"{f.name} must be {kind.__name__}, got {type(value).__name__} {value!r}"
    check = f.metadata["check"]
    problem = check(value) if check else None
    return f"{f.name} {problem}" if problem else None


def check_value(name: str, value: Any) -> Any:
    """Checks one parameter's value (a pipeline step re-checks what reached it); returns it, typed."""
    f = _field(name)
    problem = _check_field(f, value)
    if problem:
        raise ConfigError(problem)
    kind = python_type(f)
    return kind(value) if kind in (int, float) else value


# What the drift monitor sets for every retrain itself; its ``pipeline_params`` may set the rest.
SET_PER_RETRAIN = ("data_uri", "target", "model_name", "registry_uri", "spec_json", "id_column", "timestamp_column",
                   "recent_uri", "triggered_by")


def check_overrides(values: dict, reserved: tuple[str, ...] = ()) -> dict:
    """Checks parameter overrides (the monitor's ``pipeline_params``): known names, right types, valid values.

    Args:
        reserved: Names the caller sets itself and the overrides may not.
    """
    if not isinstance(values, dict):
        raise ConfigError("pipeline parameters must be a mapping of name: value")
    known = {f.name for f in fields()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown CT parameter(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    taken = sorted(set(values) & set(reserved))
    if taken:
        raise ConfigError(f"CT parameter(s) {', '.join(taken)} are set by the monitor for each retrain")
    return {name: check_value(name, value) for name, value in values.items()}


# -- the CLI ----------------------------------------------------------------------------------------

def flag_of(f: dataclasses.Field) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def add_ct_arguments(parser: argparse.ArgumentParser, *, serving: bool = True) -> None:
    """Adds a flag for every CLI-facing CT parameter, with its type, default and help.

    Args:
        serving: Also offer the cluster serving parameters (``submit`` and ``schedule``; a local
            ``driftloop run`` serves through the local gateway).
    """
    group = parser.add_argument_group("CT parameters")
    for f in fields():
        if not f.metadata["cli"] or (not serving and f.name in _CLUSTER_ONLY):
            continue
        # The CLI's help formatter shows the default (driftloop.cli_style.HelpFormatter).
        group.add_argument(flag_of(f), dest=f.name, type=python_type(f), default=default_of(f.name),
                           choices=f.metadata["choices"], help=f.metadata["help"].replace("%", "%%"))
    group.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", dest="estimator_param_items",
                       help="estimator parameter, repeatable (values parsed as JSON when they can be)")
    group.add_argument("--rollout-policy", dest="rollout_policy_json", default="", metavar="JSON",
                       help='rollout policy overrides as JSON, e.g. \'{"steps": [10, 50, 100]}\'')


# Parameters that only mean something on a cluster: `driftloop run` does not offer them.
_CLUSTER_ONLY = ("serve_target", "serving_namespace", "deployment_mode", "serving_account", "logger_url",
                 "logger_storage", "logger_storage_format", "logger_storage_account", "logger_batch_size",
                 "ready_timeout", "rollout_prometheus")


def ct_values_from_args(args: argparse.Namespace) -> dict:
    """The CT parameter values an argparse namespace holds (those :func:`add_ct_arguments` added)."""
    values = {f.name: getattr(args, f.name) for f in fields() if hasattr(args, f.name) and f.metadata["cli"]}
    values["estimator_params"] = dict(_parse_param(item) for item in getattr(args, "estimator_param_items", []))
    if getattr(args, "rollout_policy_json", ""):
        try:
            values["rollout_policy"] = json.loads(args.rollout_policy_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--rollout-policy is not JSON: {exc.msg}") from None
    return values


def _parse_param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise ConfigError(f"--param expects KEY=VALUE, got '{text}'")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw
