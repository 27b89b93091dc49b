"""Fixes for ``dsl.If`` / ``dsl.Else`` under ``kfp.local`` (kfp 2.16).

kfp.local's ConditionEvaluator substitutes channel names inside the compiled CEL expression but
leaves ``inputs.parameter_values[...]`` and lowercase ``true`` in place, and it resolves
``task-output`` channels only when the output is named ``Output``. Every condition therefore
evaluates to False with a logged warning, and the body of every ``dsl.If`` is silently skipped.

:func:`install` replaces the evaluator's one method with :func:`evaluate_condition`, which resolves
each ``inputs.parameter_values['pipelinechannel--…']`` from the DAG's IOStore, translates the CEL
operators KFP emits (``==``, ``!=``, ``<``…, ``&&``, ``||``, ``!``, ``true``/``false``, ``int()``,
``double()``) and evaluates the result with no builtins. Nothing else in kfp.local changes; the
compiled IR a cluster runs is untouched.

kfp.local also decides whether a pipeline has control flow from the root's tasks only; an ``If``/``Else`` pair
compiles to a ``condition-branches`` group without a condition at the root, so such a pipeline ran on the plain
orchestrator, which ignores every nested condition and runs both branches. :func:`install` routes every
pipeline to the orchestrator that evaluates conditions (it runs plain DAGs the same way).

:func:`install` also starts each task in a pre-warmed process (:mod:`driftloop.runners.warm_tasks`).
"""

from __future__ import annotations

import ast
import logging
import re
from typing import Any

_CHANNEL = re.compile(r"inputs\.parameter_values\['(pipelinechannel--[^']+)'\]")
_ALLOWED_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare, ast.Eq, ast.NotEq,
    ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Constant, ast.Call, ast.Name, ast.Load, ast.In, ast.NotIn,
)
_FUNCTIONS = {"int": int, "double": float, "string": str, "bool": bool}


class ConditionError(ValueError):
    """A condition could not be resolved or is outside the supported CEL subset."""


def resolve_channel(channel: str, io_store) -> Any:
    """Looks a ``pipelinechannel--…`` name up as a parent input or as ``<task>-<output>``."""
    name = channel.removeprefix("pipelinechannel--")
    for candidate in (channel, name):
        try:
            return io_store.get_parent_input(candidate)
        except (KeyError, ValueError):
            pass
    # Task names contain dashes too, so try every split of "<task>-<output key>".
    for i in [m.start() for m in re.finditer("-", name)]:
        try:
            return io_store.get_task_output(name[:i], name[i + 1 :])
        except (KeyError, ValueError):
            continue
    raise ConditionError(f"cannot resolve {channel}")


_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def to_python(condition: str, io_store) -> tuple[str, dict[str, Any]]:
    """Rewrites the CEL condition KFP compiles into a Python expression.

    Channel values become variables (``_v0``, ``_v1`` …) rather than text, so a string value such as
    ``"true"`` is never mistaken for an operator. Operators are translated outside string literals only.

    Returns:
        The expression and its variables.
    """
    values: dict[str, Any] = {}

    def channel(match: re.Match) -> str:
        name = f"_v{len(values)}"
        values[name] = resolve_channel(match.group(1), io_store)
        return name

    expr = _CHANNEL.sub(channel, condition)
    pieces, last = [], 0
    for literal in _STRING.finditer(expr):
        pieces.append(_translate_operators(expr[last:literal.start()]))
        pieces.append(literal.group(0))
        last = literal.end()
    pieces.append(_translate_operators(expr[last:]))
    return "".join(pieces).strip(), values


def _translate_operators(code: str) -> str:
    code = re.sub(r"\btrue\b", "True", code)
    code = re.sub(r"\bfalse\b", "False", code)
    code = re.sub(r"\bnull\b", "None", code)
    code = code.replace("&&", " and ").replace("||", " or ")
    return re.sub(r"!(?!=)", " not ", code)


def evaluate_condition(condition: str, io_store) -> bool:
    """Evaluates one ``trigger_policy.condition`` against the DAG's IOStore."""
    if not condition or not condition.strip():
        return True
    expr, values = to_python(condition, io_store)
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        raise ConditionError(f"unsupported CEL in condition {condition!r}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ConditionError(f"unsupported construct {type(node).__name__} in condition {condition!r}")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS):
            raise ConditionError(f"unsupported function in condition {condition!r}")
        if isinstance(node, ast.Name) and node.id not in _FUNCTIONS and node.id not in values:
            raise ConditionError(f"unknown name {node.id!r} in condition {condition!r}")
    scope = {**_FUNCTIONS, **values}
    result = bool(eval(compile(tree, "<condition>", "eval"), {"__builtins__": {}}, scope))  # noqa: S307
    logging.getLogger(__name__).info("condition %s -> %s", expr, result)
    return result


def install(warm_tasks: bool = True) -> None:
    """Makes kfp.local evaluate ``dsl.If`` conditions with :func:`evaluate_condition` and, with ``warm_tasks``,
    start each task in a pre-warmed process (:mod:`driftloop.runners.warm_tasks`). Idempotent."""
    from kfp.local import subprocess_task_handler
    from kfp.local.orchestrator import dag_orchestrator, enhanced_dag_orchestrator

    from driftloop.runners import warm_tasks as warm

    enhanced_dag_orchestrator.ConditionEvaluator.evaluate_condition = staticmethod(evaluate_condition)
    dag_orchestrator.run_dag = enhanced_dag_orchestrator.run_enhanced_dag
    original = getattr(subprocess_task_handler, "_driftloop_original_launcher", None)
    if original is None:
        original = subprocess_task_handler.run_local_subprocess
        subprocess_task_handler._driftloop_original_launcher = original
    if warm_tasks:
        subprocess_task_handler.run_local_subprocess = lambda full_command: warm.run(full_command, original)
    else:
        subprocess_task_handler.run_local_subprocess = original
