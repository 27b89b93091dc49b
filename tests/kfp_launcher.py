"""Runs one task of the compiled pipeline the way KFP's v2 launcher runs it in a pod.

The executor's ``command`` and ``args`` come from the committed IR; ``{{$}}`` becomes the executor input JSON
the driver builds (``../shared/CLUSTER_FACTS.md`` §8: ``inputs.parameterValues``, ``outputs.parameters`` with an
``outputFile`` each, ``outputs.outputFile``); the container's ``python3`` is this environment's (the image is
this package installed). Output parameters are read back as the launcher collects them: the executor output
file first, else each parameter's output file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from driftloop.pipelines.ct_pipeline import IR_PATH


@dataclass
class TaskRun:
    returncode: int
    outputs: dict
    stdout: str
    stderr: str


def _ir() -> dict:
    return next(yaml.safe_load_all(IR_PATH.read_text()))


def _component(ir: dict, task: str) -> tuple[dict, dict]:
    """The task's component spec and its executor's container."""
    for component in [ir["root"], *ir["components"].values()]:
        spec = ((component.get("dag") or {}).get("tasks") or {}).get(task)
        if spec:
            name = spec["componentRef"]["name"]
            executor = ir["components"][name]["executorLabel"]
            return ir["components"][name], ir["deploymentSpec"]["executors"][executor]["container"]
    raise KeyError(f"no task {task} in the IR")


def run_task(task: str, parameters: dict, workdir: Path, env: dict | None = None, timeout: float = 600) -> TaskRun:
    """Runs ``task`` (e.g. ``deploy-model``) with these input parameter values; returns its outputs."""
    component, container = _component(_ir(), task)
    declared = component.get("inputDefinitions", {}).get("parameters", {})
    unknown = set(parameters) - set(declared)
    assert not unknown, f"{task} has no inputs {unknown}"
    values = {name: spec["defaultValue"] for name, spec in declared.items() if "defaultValue" in spec} | parameters
    outputs_dir = workdir / "outputs"
    outputs_dir.mkdir(parents=True, exist_ok=True)
    output_names = component.get("outputDefinitions", {}).get("parameters", {})
    executor_input = {
        "inputs": {"parameterValues": values},
        "outputs": {
            "parameters": {name: {"outputFile": str(outputs_dir / name)} for name in output_names},
            "outputFile": str(workdir / "output_metadata.json"),
        },
    }
    substitute = json.dumps(executor_input)
    command = [part.replace("{{$}}", substitute) for part in container["command"] + container["args"]]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=workdir,
                               env={**os.environ, **(env or {}), "PATH": path})
    outputs: dict = {}
    metadata = workdir / "output_metadata.json"
    if metadata.exists():
        outputs = json.loads(metadata.read_text()).get("parameterValues") or {}
    for name in output_names:
        if name not in outputs and (outputs_dir / name).exists():
            outputs[name] = (outputs_dir / name).read_text()
    return TaskRun(completed.returncode, outputs, completed.stdout, completed.stderr)
