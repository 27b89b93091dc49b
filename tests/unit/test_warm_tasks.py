"""kfp.local's task command is recognised and run the same way in a pre-warmed process; others are not touched."""

from __future__ import annotations

import yaml

from driftloop.pipelines.ct_pipeline import IR_PATH
from driftloop.runners import warm_tasks


def _executor_command(task: str = "exec-train-model") -> list[str]:
    container = next(yaml.safe_load_all(IR_PATH.read_text()))["deploymentSpec"]["executors"][task]["container"]
    return container["command"] + ["--executor_input", "{}", "--function_to_execute", "train_model"]


def test_the_lightweight_component_command_is_recognised_with_its_source_and_arguments() -> None:
    source, args = warm_tasks.parse_executor_command(_executor_command())
    assert "def train_model(" in source and "from driftloop import steps" in source
    assert args == ["--executor_input", "{}", "--function_to_execute", "train_model"]


def test_other_commands_go_to_kfp_locals_own_launcher() -> None:
    seen = []
    code = warm_tasks.run(["echo", "hello"], lambda command: seen.append(command) or 7)
    assert (code, seen) == (7, [["echo", "hello"]])
    installing = ["sh", "-c", "python3 -m pip install kfp==2.16 && \"$0\" \"$@\"", *_executor_command()]
    assert warm_tasks.parse_executor_command(installing) is None
