"""The notebooks run top to bottom, as a user runs them, in a Jupyter kernel of this interpreter.

Each notebook's one parameters cell is replaced with small values (what papermill does, without it):
01 runs the loop locally in a temporary home (two CT runs; once per task), 03 inspects the registry that
produced, and 02 submits to the recording fake of the Kubeflow Pipelines API on 127.0.0.1. The assertions read the
outputs a user would see, and for 02 the requests the API received. With NOTEBOOK_OUTPUT_DIR set, the
executed notebooks are saved there.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO_ROOT, ServerThread
from tests.kfp_fake import FakeKfp

NOTEBOOKS = REPO_ROOT / "notebooks"
KERNEL = "driftloop-test-python"
TOKEN = "kfp-token-never-shown-4be1"


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory) -> Path:
    """A kernelspec that starts ipykernel with this very interpreter (not whatever "python3" resolves to)."""
    from ipykernel.kernelspec import write_kernel_spec

    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(kernels / KERNEL, overrides={"argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
                                                            "{connection_file}"], "display_name": KERNEL})
    return kernels


def _execute(name: str, parameters: dict, kernel_specs: Path, workdir: Path, env: dict | None = None,
             timeout: int = 300) -> nbformat.NotebookNode:
    """Runs a notebook with its parameters cell replaced; raises (with the cell's traceback) if a cell fails."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    committed = (NOTEBOOKS / name).read_bytes()
    notebook = nbformat.reads(committed.decode(), as_version=4)
    (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    manager = AsyncKernelManager(kernel_name=KERNEL,
                                 kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_specs)]))
    # A clean environment: no driftloop settings and no ~/.config/kfp of the developer's.
    kernel_env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "KF_PIPELINES_"))}
    kernel_env |= {"HOME": str(workdir), **(env or {})}
    client = NotebookClient(notebook, km=manager, timeout=timeout, resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute(env=kernel_env)
    finally:
        if os.environ.get("NOTEBOOK_OUTPUT_DIR"):  # keep the executed notebook to look at
            nbformat.write(notebook, Path(os.environ["NOTEBOOK_OUTPUT_DIR"]) / name)
    assert (NOTEBOOKS / name).read_bytes() == committed, f"running {name} rewrote the tracked notebook"
    stderr = [o.text for c in notebook.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not stderr, f"{name} showed warnings or errors: {stderr}"
    return notebook


def _text(cell) -> str:
    """What the user sees under a code cell: streams, plain text, HTML tables and Markdown."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            data = output.get("data", {})
            parts.extend(str(data[kind]) for kind in ("text/plain", "text/html", "text/markdown") if kind in data)
    return "\n".join(parts)


def _outputs(notebook) -> list[str]:
    return [_text(c) for c in notebook.cells if c.cell_type == "code"]


def _outputs_of_type(notebook, mime: str) -> list[str]:
    return [o.data[mime] for c in notebook.cells for o in c.get("outputs", []) if mime in o.get("data", {})]


def _embedded_pages(notebook) -> list[str]:
    """The pages shown inline, as the iframe's browser gets them (``srcdoc`` unescaped)."""
    return [html.unescape(m) for out in _outputs_of_type(notebook, "text/html")
            for m in re.findall(r'<iframe srcdoc="([^"]*)"', out)]


def _cell_showing(notebook, pattern: str) -> str:
    """The output of the first code cell whose output matches ``pattern``."""
    for text in _outputs(notebook):
        if re.search(pattern, text):
            return text
    raise AssertionError(f"no cell output matches {pattern!r}")


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory, kernel_specs):
    """Notebook 01 on a small table in a temporary home: v1 in production, v2 as canary."""
    workdir = tmp_path_factory.mktemp("nb01")
    home = workdir / "home"
    started = time.monotonic()
    notebook = _execute("01_local_quickstart.ipynb", {
        "home": str(home), "task": "binary", "rows": 800, "seed": 7, "model_name": "churn",
        "estimator": "logistic_regression", "canary_percent": 10, "embed_drift_report": True,
        "run_closed_loop": False,
    }, kernel_specs, workdir)
    return {"notebook": notebook, "home": home, "seconds": time.monotonic() - started}


# --- the notebooks as committed ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["01_local_quickstart.ipynb", "02_submit_to_kubeflow.ipynb",
                                  "03_inspect_a_model.ipynb"])
def test_committed_notebooks_have_one_parameters_cell_and_no_outputs(name) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] <= 2, tagged  # exactly one, near the top
    assert notebook.cells[tagged[0]].cell_type == "code"
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "clear the outputs before committing"
    assert sum(c.cell_type == "markdown" for c in notebook.cells) >= len(code) // 2  # steps are explained
    assert "driftloop" in "".join(c.source for c in code)


# --- 01: the loop on the embedded default --------------------------------------------------------------

def test_quickstart_trains_v1_detects_drift_and_deploys_v2_as_canary(quickstart) -> None:
    notebook, home = quickstart["notebook"], quickstart["home"]

    first = _cell_showing(notebook, r"load-and-validate")
    assert "promoted" in first and "no champion in production" in first
    assert "roc_auc" in first
    drift = _cell_showing(notebook, r"dataset drift: ")
    assert "dataset drift: True" in drift and "wasserstein" in drift and "jensenshannon" in drift
    report = home / "reports" / "drift-reference-vs-drifted.html"
    assert f"drift report: {report}" in "\n".join(_outputs(notebook))
    assert report.stat().st_size > 10_000
    # Shown inline although the file lies outside the notebook's directory: the pages are embedded whole.
    pages = _embedded_pages(notebook)
    assert report.read_text() in pages
    evaluation = (home / "registry" / "models" / "churn" / "versions" / "2" / "evaluation.html").read_text()
    assert evaluation in pages and "Evaluation of churn v2" in evaluation  # the registry's copy, named by version
    (roc,) = _outputs_of_type(notebook, "image/png")  # the ROC comparison of v2 against v1
    assert len(base64.b64decode(roc)) > 10_000
    (card,) = _outputs_of_type(notebook, "text/markdown")
    assert card.startswith("# Model card: churn v2") and "champion v1" in card
    second = _cell_showing(notebook, r"vs champion v1")
    assert "canary" in second and "champion (production)" in second
    aliases = _cell_showing(notebook, r"aliases: ")
    assert "aliases: {'production': 1, 'canary': 2} (canary traffic: 10%)" in aliases
    assert "skipped: set run_closed_loop = True" in _outputs(notebook)[-1]
    assert (home / "registry" / "models" / "churn").is_dir()


# --- 01 for the other tasks: the same notebook, another target ----------------------------------------

@pytest.mark.parametrize(("task", "metric", "model", "linear"), [
    ("multiclass", "f1_macro", "retention-offer", "logistic_regression"),
    ("regression", "rmse", "spend-forecast", "ridge")])
def test_quickstart_runs_the_loop_on_a_multiclass_and_a_regression_target(task, metric, model, linear,
                                                                          kernel_specs, tmp_path) -> None:
    from driftloop import synthetic

    home = tmp_path / "home"
    notebook = _execute("01_local_quickstart.ipynb", {
        "home": str(home), "task": task, "rows": 800, "seed": 7, "model_name": "", "estimator": "",
        "canary_percent": 10, "embed_drift_report": False, "run_closed_loop": False,
    }, kernel_specs, tmp_path)

    target = synthetic.TARGETS[task]
    assert f"task:     {task} (target {target}), model {model}, estimator {linear}" in _cell_showing(notebook, "task: ")
    data = _cell_showing(notebook, r"reference +800 rows: ")
    assert (f"{target} mean" in data) if task == "regression" else all(o in data for o in synthetic.OFFERS)
    first = _cell_showing(notebook, r"load-and-validate")
    assert "promoted" in first and metric in first and "roc_auc" not in first
    aliases = _cell_showing(notebook, r"aliases: ")
    assert "aliases: {'production': 1, 'canary': 2}" in aliases and f"<th>{metric}</th>" in aliases
    (chart,) = _outputs_of_type(notebook, "image/png")  # v2 against v1, in the task's terms
    assert len(base64.b64decode(chart)) > 10_000
    (page,) = _embedded_pages(notebook)  # the evaluation page; the drift report is named by its path only
    assert f"Evaluation of {model} v2" in page
    assert f"drift report: {home / 'reports' / 'drift-reference-vs-drifted.html'}" in "\n".join(_outputs(notebook))
    (card,) = _outputs_of_type(notebook, "text/markdown")
    assert card.startswith(f"# Model card: {model} v2")


# --- 03: inspecting what 01 registered ------------------------------------------------------------------

def test_inspect_shows_versions_lineage_audit_trail_card_and_drift_reports(quickstart, kernel_specs,
                                                                           tmp_path) -> None:
    from driftloop.monitor.windows import WindowRecord

    store = tmp_path / "monitor"
    window = WindowRecord(id=3, model="churn", opened_at=1.7e9, closed_at=1.7e9 + 60, n_rows=500,
                          reference_version=1, rows_by_version={"1": 450, "2": 50}, drift_share=0.58,
                          dataset_drift=True, drifted_features=["age", "income", "support_calls"],
                          prediction_drift={"score": 0.21, "drifted": True},
                          decision={"action": "trigger", "reason": "2 of the last 3 windows signalled"})
    (store / "windows").mkdir(parents=True)
    (store / "windows" / "churn.jsonl").write_text(json.dumps(window.summary()) + "\n")
    (store / "reports" / "churn").mkdir(parents=True)
    (store / "reports" / "churn" / "window-000003.html").write_text("<html>report</html>")

    notebook = _execute("03_inspect_a_model.ipynb", {
        "home": str(quickstart["home"]), "registry_uri": "", "model_name": "churn", "version": 0,
        "monitor_store": str(store),
    }, kernel_specs, tmp_path)

    versions = _cell_showing(notebook, r"triggered_by")
    assert re.search(r"<th>1</th>\s*<td>production</td>", versions)
    assert re.search(r"<th>2</th>\s*<td>canary</td>", versions)
    assert "manual" in versions and "drifted.csv" in versions
    lineage = _cell_showing(notebook, r"data_sha256")
    assert "churn v1 (production)" in lineage and "code_version.git_commit" in lineage
    audit = _cell_showing(notebook, r"from → to")
    for action in ("register", "promote", "deploy-canary", "run-finished"):
        assert f"<td>{action}</td>" in audit, action
    assert "– → v1" in audit and "canary at 10% beside production v1" in audit
    outputs = "\n".join(_outputs(notebook))
    assert re.search(r"intact: 6 audit entries chain up, and all \d+ files of 2 versions match", outputs)
    card = [o.data["text/markdown"] for c in notebook.cells for o in c.get("outputs", [])
            if "text/markdown" in o.get("data", {})]
    assert len(card) == 1 and card[0].startswith("# Model card: churn") and "## Gate decision" in card[0]
    windows = _cell_showing(notebook, r"drift share")
    assert "age, income, support_calls" in windows and "trigger" in windows and "0.58" in windows
    assert "window-000003.html" in outputs
    assert "<html>report</html>" in _embedded_pages(notebook)  # the newest report, inline
    assert "<h1>Evaluation of churn v1" in "".join(_embedded_pages(notebook))  # production's evaluation page
    assert len(_outputs_of_type(notebook, "image/png")) == 2  # v1's ROC curves and the drift trend
    assert "policy: promotions need no approval" in outputs and "nothing waits for approval" in outputs


def test_inspect_says_so_when_no_monitor_has_run_and_shows_what_waits_for_approval(quickstart, kernel_specs,
                                                                                   tmp_path) -> None:
    import shutil

    from driftloop.deploy.local import LocalDeployment
    from driftloop.registry import LocalRegistry
    from driftloop.registry.approvals import ApprovalPolicy
    from driftloop.signing import Trust, load_signing_key

    # A copy of 01's registry where the model requires approval and its canary v2 passed: it waits. Written
    # with the key notebook 01's kernel created (in its HOME), as a later session of that user would.
    kernel_env = {"HOME": str(quickstart["home"].parent)}
    registry = LocalRegistry(shutil.copytree(quickstart["home"] / "registry", tmp_path / "registry"),
                             trust=Trust.from_env(kernel_env), signing_key=load_signing_key(kernel_env))
    registry.set_approval_policy("churn", ApprovalPolicy(approvers=("alice",)), actor="erin")
    assert LocalDeployment(registry, "rollout").conclude("churn", "canary passed", {"steps": []}) == "pending-approval"
    notebook = _execute("03_inspect_a_model.ipynb", {
        "home": str(quickstart["home"]), "registry_uri": str(registry.root),
        "model_name": "churn", "version": 2, "monitor_store": "",
    }, kernel_specs, tmp_path, env=kernel_env)
    outputs = "\n".join(_outputs(notebook))
    assert "churn v2 -" in outputs and "parent_version" in outputs
    assert "No drift monitor windows or reports for 'churn' yet" in outputs
    assert "<h1>Evaluation of churn v2" in "".join(_embedded_pages(notebook))
    assert len(_outputs_of_type(notebook, "image/png")) == 1  # v2's ROC curves against v1's, and no trend
    assert "policy: approval required: by alice; timeout 1d" in outputs
    waiting = _cell_showing(notebook, r"registered by")
    assert re.search(r"<th>2</th>\s*<td>1</td>\s*<td>0.0 h</td>", waiting), waiting
    assert "<td>ct-pipeline</td>" in waiting and "<td>manual</td>" in waiting and "<td>local</td>" in waiting


def test_notebooks_find_the_checkouts_home_from_any_working_directory(tmp_path, monkeypatch) -> None:
    from driftloop.notebook import default_home

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DRIFTLOOP_HOME", raising=False)
    assert default_home() == REPO_ROOT / ".driftloop"  # where `make demo` keeps its state
    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "elsewhere"))
    assert default_home() == tmp_path / "elsewhere"
    assert default_home("mine") == tmp_path / "mine"


# --- 02: Kubeflow Pipelines (a recording fake of its API) -----------------------------------------------

@pytest.fixture
def kfp_api():
    fake = FakeKfp(token=TOKEN)  # anything without the token gets 401
    with ServerThread(fake.app()) as server:
        fake.url = server.url
        yield fake


def test_submit_notebook_compiles_submits_and_manages_a_schedule(kfp_api, kernel_specs, tmp_path) -> None:
    notebook = _execute("02_submit_to_kubeflow.ipynb", {
        "kfp_host": "", "namespace": "", "experiment": "notebook-test",
        "data_uri": "s3://datasets/churn.parquet", "registry_uri": "s3://driftloop/registry",
        "target": "churned", "id_column": "customer_id", "timestamp_column": "event_time", "model_name": "churn",
        "estimator": "random_forest", "wait": True, "wait_timeout": 60, "schedule_name": "churn-nightly",
        "schedule_cron": "0 3 * * *", "cleanup": True,
    }, kernel_specs, tmp_path, env={"DRIFTLOOP_KFP_TOKEN": TOKEN, "DRIFTLOOP_KFP_HOST": kfp_api.url})

    # What the API received: one upload, one run with the notebook's parameters, a schedule paused and deleted.
    assert {r.headers.get("authorization") for r in kfp_api.requests} == {f"Bearer {TOKEN}"}
    assert len(kfp_api.calls("POST", "pipelines/upload_version")) == 1
    (run,) = kfp_api.calls("POST", "runs")
    parameters = run.json["runtime_config"]["parameters"]
    assert (parameters["data_uri"], parameters["registry_uri"], parameters["estimator"]) == \
        ("s3://datasets/churn.parquet", "s3://driftloop/registry", "random_forest")
    run_id = next(iter(kfp_api.runs))
    assert kfp_api.calls("GET", f"runs/{run_id}")  # waited for it
    (schedule,) = kfp_api.calls("POST", "recurringruns")
    assert schedule.json["display_name"] == "churn-nightly"
    assert schedule.json["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert schedule.json["runtime_config"]["parameters"]["triggered_by"] == "schedule:churn-nightly"
    assert [e["display_name"] for e in kfp_api.experiments.values()] == ["notebook-test"]
    (deleted,) = kfp_api.calls("DELETE")
    sid = deleted.path.removeprefix("recurringruns/")
    assert kfp_api.calls("POST", rf"recurringruns/{sid}:disable") and not kfp_api.recurring

    # What the user saw.
    outputs = "\n".join(_outputs(notebook))
    assert f"KFP API:    {kfp_api.url}" in outputs  # from DRIFTLOOP_KFP_HOST: the notebook does not override it
    assert "token:      DRIFTLOOP_KFP_TOKEN" in outputs and TOKEN not in json.dumps(notebook)
    assert "driftloop-ct:" in outputs and "min_gate_value" in outputs
    assert run_id in outputs and f"{kfp_api.url}/#/runs/details/{run_id}" in outputs
    assert f"run {run_id} ended SUCCEEDED" in outputs
    assert "paused churn-nightly: enabled = False" in outputs
    assert f"deleted schedule churn-nightly ({sid})" in outputs
    assert "no schedules in experiment 'notebook-test'" in _outputs(notebook)[-1]
