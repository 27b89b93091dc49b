"""The committed Kubeflow IR matches what the pipeline compiles to, and runs on the project image only."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from driftloop.image import PROJECT_IMAGE
from driftloop.pipelines import batch_score_pipeline
from driftloop.pipelines.ct_pipeline import (
    IR_PATH,
    S3_SECRET,
    SIGNING_SECRET,
    VERIFY_CONFIG_MAP,
    compile_ct_pipeline,
)

REGENERATE = "make compile   (or: .venv/bin/python pipelines/ct_pipeline.py)"
REGENERATE_BATCH = "make compile   (or: .venv/bin/python pipelines/batch_score_pipeline.py)"


def _normalise(text: str) -> str:
    """Blank out what legitimately varies: the SDK version and the image tag."""
    text = re.sub(r"sdkVersion: kfp-[\w.]+", "sdkVersion: kfp-X", text)
    return text.replace(PROJECT_IMAGE, "PROJECT_IMAGE")


def test_committed_ir_is_up_to_date(tmp_path: Path) -> None:
    fresh = compile_ct_pipeline(tmp_path / "ct_pipeline.yaml").read_text()
    committed = IR_PATH.read_text()
    assert _normalise(fresh) == _normalise(committed), f"pipelines/ct_pipeline.yaml is stale; regenerate: {REGENERATE}"


def test_every_executor_runs_the_project_image_without_installs() -> None:
    ir = next(yaml.safe_load_all(IR_PATH.read_text()))  # the 2nd document is the Kubernetes platform spec
    executors = ir["deploymentSpec"]["executors"]
    assert len(executors) == 7
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == PROJECT_IMAGE, name
        command = " ".join(container["command"])
        assert "pip install" not in command and "pip3 install" not in command, name


def test_gate_and_exit_handler_are_in_the_ir() -> None:
    text = IR_PATH.read_text()
    assert "triggerPolicy" in text and "pipelinechannel--evaluate-model-passed" in text
    assert "ALL_UPSTREAM_TASKS_COMPLETED" in text  # the exit handler runs whatever happened
    ir = next(yaml.safe_load_all(text))
    retried = [name for name, task in _all_tasks(ir) if "retryPolicy" in task]
    assert {"load-and-validate", "register-model", "deploy-model"} <= set(retried)


def _all_tasks(ir: dict):
    for component in [ir["root"], *ir["components"].values()]:
        yield from (component.get("dag") or {}).get("tasks", {}).items()


def test_caching_is_off_on_every_step() -> None:
    # Every step reads state that changes between runs (data at a URI, the champion, the cluster): a cached
    # result would skip a registration or a rollout.
    ir = next(yaml.safe_load_all(IR_PATH.read_text()))
    tasks = dict(_all_tasks(ir))
    assert len(tasks) >= 6
    cached = [name for name, task in tasks.items()
              if "componentRef" in task and task.get("cachingOptions", {}).get("enableCache")]
    assert cached == []


def test_the_pipeline_inputs_are_the_ct_parameters() -> None:
    from driftloop import ct_params

    ir = next(yaml.safe_load_all(IR_PATH.read_text()))
    inputs = ir["root"]["inputDefinitions"]["parameters"]
    kinds = {str: "STRING", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", dict: "STRUCT", bool: "BOOLEAN"}
    assert set(inputs) == {f.name for f in ct_params.fields()}
    for f in ct_params.fields():
        assert inputs[f.name]["parameterType"] == kinds[ct_params.python_type(f)], f.name
        if f.name in ct_params.REQUIRED_IN_PIPELINE:
            assert "defaultValue" not in inputs[f.name], f.name
        else:
            assert inputs[f.name]["defaultValue"] == ct_params.default_of(f.name), f.name


def test_compile_with_another_image_puts_it_on_every_step(tmp_path: Path) -> None:
    image = "registry.example.com/team/driftloop@sha256:" + "a" * 64
    ir = next(yaml.safe_load_all(compile_ct_pipeline(tmp_path / "ct.yaml", image).read_text()))
    assert {e["container"]["image"] for e in ir["deploymentSpec"]["executors"].values()} == {image}


# --- the batch-scoring pipeline ---------------------------------------------------------------------------------

def test_committed_batch_score_ir_is_up_to_date(tmp_path: Path) -> None:
    fresh = batch_score_pipeline.compile_batch_score_pipeline(tmp_path / "batch.yaml").read_text()
    committed = batch_score_pipeline.IR_PATH.read_text()
    assert _normalise(fresh) == _normalise(committed), \
        f"pipelines/batch_score_pipeline.yaml is stale; regenerate: {REGENERATE_BATCH}"


def test_the_batch_step_reads_with_the_s3_secret_and_the_verify_key_and_never_the_signing_key() -> None:
    ir, platform = yaml.safe_load_all(batch_score_pipeline.IR_PATH.read_text())
    (executor,) = ir["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"] == PROJECT_IMAGE
    assert "pip install" not in " ".join(executor["container"]["command"])
    (task,) = ir["root"]["dag"]["tasks"].values()
    assert "retryPolicy" in task and not task.get("cachingOptions", {}).get("enableCache")
    (config,) = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()
    assert [s["secretName"] for s in config["secretAsEnv"]] == [S3_SECRET]
    assert [c["configMapName"] for c in config["configMapAsEnv"]] == [VERIFY_CONFIG_MAP]
    assert SIGNING_SECRET not in str(config)


def test_the_batch_pipelines_defaults_are_the_components_and_the_librarys() -> None:
    from driftloop.batch import DEFAULT_CHUNK_ROWS
    from driftloop.components.score_table import score_table
    from driftloop.registry import PRODUCTION

    ir = next(yaml.safe_load_all(batch_score_pipeline.IR_PATH.read_text()))
    pipeline_inputs = ir["root"]["inputDefinitions"]["parameters"]
    component_inputs = score_table.component_spec.inputs
    for name, spec in pipeline_inputs.items():
        assert spec.get("defaultValue") == component_inputs[name].default, name
    assert pipeline_inputs["chunk_rows"]["defaultValue"] == DEFAULT_CHUNK_ROWS
    # KFP ships only the function's source, so its literals stand; these tie them to the library's definitions.
    assert pipeline_inputs["alias"]["defaultValue"] == PRODUCTION
