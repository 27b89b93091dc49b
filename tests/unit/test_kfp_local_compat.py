"""``dsl.If`` conditions under kfp.local, resolved from a real kfp IOStore."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml
from kfp.local.io import IOStore

from driftloop.runners import kfp_local_compat
from driftloop.runners.kfp_local_compat import ConditionError, evaluate_condition


def channel(name: str) -> str:
    """A channel reference exactly as the KFP compiler writes it into a trigger condition."""
    return f"inputs.parameter_values['pipelinechannel--{name}']"


# The condition KFP 2.16 compiles for `dsl.If(evaluate.outputs["passed"] == True)`.
GATE = f"{channel('evaluate-model-passed')} == true"


def store(passed: bool = True, canary_percent: int = 10, drift_share: float = 0.4, valid: bool = True) -> IOStore:
    io_store = IOStore()
    io_store.put_task_output("load-and-validate", "valid", valid)
    io_store.put_task_output("evaluate-model", "passed", passed)
    io_store.put_task_output("evaluate-model", "Output", "unused")
    io_store.put_task_output("check-drift", "drift-share", drift_share)
    io_store.put_parent_input("canary_percent", canary_percent)
    io_store.put_parent_input("mode", "retrain")
    return io_store


@pytest.mark.parametrize("passed", [True, False])
def test_gate_condition_follows_the_task_output(passed: bool) -> None:
    assert evaluate_condition(GATE, store(passed=passed)) is passed
    assert evaluate_condition(f"{channel('evaluate-model-passed')} == false", store(passed=passed)) is not passed
    assert evaluate_condition(f"{channel('evaluate-model-passed')} != true", store(passed=passed)) is not passed


@pytest.mark.parametrize(("percent", "expected"), [(10, True), (5, False), (0, False), (100, True)])
def test_parent_input_int_comparison(percent: int, expected: bool) -> None:
    condition = f"int({channel('canary_percent')}) > 5"

    assert evaluate_condition(condition, store(canary_percent=percent)) is expected


def test_parent_input_given_as_text_is_converted_by_int() -> None:
    condition = f"int({channel('canary_percent')}) >= 50"

    assert evaluate_condition(condition, store(canary_percent="50")) is True  # type: ignore[arg-type]
    assert evaluate_condition(condition, store(canary_percent="49")) is False  # type: ignore[arg-type]


def test_string_and_float_comparisons() -> None:
    assert evaluate_condition(f"{channel('mode')} == 'retrain'", store()) is True
    assert evaluate_condition(f"{channel('mode')} == 'skip'", store()) is False
    # Task and output names both contain dashes: "check-drift" / "drift-share".
    assert evaluate_condition(f"double({channel('check-drift-drift-share')}) > 0.3", store()) is True
    assert evaluate_condition(f"{channel('check-drift-drift-share')} > 0.5", store()) is False


@pytest.mark.parametrize(
    ("passed", "percent", "and_expected", "or_expected"),
    [(True, 80, True, True), (True, 10, False, True), (False, 80, False, True), (False, 10, False, False)],
)
def test_and_or(passed: bool, percent: int, and_expected: bool, or_expected: bool) -> None:
    io_store = store(passed=passed, canary_percent=percent)
    big = f"int({channel('canary_percent')}) > 50"

    assert evaluate_condition(f"{GATE} && {big}", io_store) is and_expected
    assert evaluate_condition(f"{GATE} || {big}", io_store) is or_expected


@pytest.mark.parametrize("passed", [True, False])
def test_not_inside_a_condition(passed: bool) -> None:
    condition = f"int({channel('canary_percent')}) > 5 && !({GATE})"

    assert evaluate_condition(condition, store(passed=passed)) is (not passed)


@pytest.mark.parametrize("passed", [True, False])
def test_leading_not_as_dsl_else_compiles_it(passed: bool) -> None:
    assert evaluate_condition(f"!({GATE})", store(passed=passed)) is (not passed)


def test_string_values_are_not_rewritten() -> None:
    io_store = store()
    io_store.put_task_output("check-flag", "Output", "True")

    assert evaluate_condition(f"{channel('check-flag-Output')} == 'true'", io_store) is False


def test_empty_condition_is_true() -> None:
    assert evaluate_condition("", IOStore()) is True
    assert evaluate_condition("   ", IOStore()) is True


def test_unknown_channel_raises_condition_error() -> None:
    with pytest.raises(ConditionError, match="cannot resolve pipelinechannel--train-model-passed"):
        evaluate_condition(f"{channel('train-model-passed')} == true", store())


@pytest.mark.parametrize(
    "condition",
    [
        "__import__('os').system('touch {marker}') == 0",
        "__import__('os')",
        "open('{marker}', 'w')",
        "().__class__.__bases__[0] == 1",
        "[1, 2][0] == 1",
        "1 + 1 == 2",
        "lambda: 1",
        "size('abc') == 3",
    ],
)
def test_unsupported_constructs_raise_condition_error_and_do_nothing(condition: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    with pytest.raises(ConditionError, match="unsupported|unknown name"):
        evaluate_condition(condition.format(marker=marker), store())

    assert not marker.exists()


def test_unparsable_condition_raises_condition_error() -> None:
    with pytest.raises(ConditionError):
        evaluate_condition(f"{GATE} ? true : false", store())


def _compiled_conditions() -> list[str]:
    """Every trigger condition in the shipped IR, in document order: gate-passed, data-valid, data-invalid."""
    ir = next(yaml.safe_load_all((resources.files("driftloop.pipelines") / "ct_pipeline.yaml").read_text()))
    found = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if "triggerPolicy" in node and "condition" in node["triggerPolicy"]:
                found.append(node["triggerPolicy"]["condition"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(ir)
    return found


@pytest.mark.parametrize("passed", [True, False])
def test_the_shipped_pipelines_gate_condition_resolves(passed: bool) -> None:
    gates = [c for c in _compiled_conditions() if "evaluate-model-passed" in c]
    assert len(gates) == 1
    assert evaluate_condition(gates[0], store(passed=passed)) is passed


@pytest.mark.parametrize("valid", [True, False])
def test_exactly_one_validation_branch_runs(valid: bool) -> None:
    branches = [c for c in _compiled_conditions() if "load-and-validate-valid" in c]
    assert len(branches) == 2  # dsl.If and its dsl.Else
    taken = [evaluate_condition(c, store(valid=valid)) for c in branches]
    assert taken == [valid, not valid]


def test_install_makes_kfp_local_use_this_evaluator() -> None:
    from kfp.local.orchestrator.enhanced_dag_orchestrator import ConditionEvaluator

    kfp_local_compat.install()
    kfp_local_compat.install()  # idempotent

    assert ConditionEvaluator.evaluate_condition(GATE, store(passed=True)) is True
    assert ConditionEvaluator.evaluate_condition(GATE, store(passed=False)) is False
