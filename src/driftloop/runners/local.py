"""Run the CT pipeline on this machine through ``kfp.local`` (the embedded default).

The pipeline runs with :class:`kfp.local.SubprocessRunner` (``use_venv=False``): every component is a
subprocess of the current Python environment, exactly the code the cluster image runs. kfp.local's
chatty output goes to ``<run>/pipeline.log``; callers get task events for progress and a
:class:`RunSummary` at the end.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from driftloop import steps
from driftloop.ct_params import CTParams
from driftloop.runners import kfp_local_compat

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TASK_START = re.compile(r"Executing task '([^']+)'")
_TASK_END = re.compile(r"Task '([^']+)' finished with status (\w+)")
_SKIPPED = re.compile(r"Skipping conditional task (\S+)")
_USER_ERROR = re.compile(r"^driftloop\.errors\.\w+: (.+)$")
_ANY_ERROR = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$")
# kfp.local reads these from the component interface; they are our task names.
TASKS = ("load-and-validate", "train-model", "evaluate-model", "register-model", "deploy-model")


@dataclass
class TaskEvent:
    """A task started, finished or was skipped."""

    task: str
    state: str  # "running" | "succeeded" | "failed" | "skipped"
    seconds: float = 0.0


@dataclass
class RunSummary:
    """What a person wants to know after a run."""

    run_name: str
    state: str  # "SUCCEEDED" | "FAILED"
    model_name: str
    seconds: float
    run_dir: str
    log_path: str
    version: int | None = None
    deploy_action: str | None = None
    gate_passed: bool | None = None
    gate_reasons: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    champion_metrics: dict | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    tasks: list[TaskEvent] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class _LogTee(io.TextIOBase):
    """Writes kfp.local's output to the log file and turns task lines into events."""

    def __init__(self, handle, on_event: Callable[[TaskEvent], None]) -> None:
        self._handle = handle
        self._on_event = on_event
        self._buffer = ""
        self._started: dict[str, float] = {}
        self.events: list[TaskEvent] = []
        self._lock = threading.RLock()

    def write(self, text: str) -> int:
        lines = []
        with self._lock:
            self._handle.write(text)
            self._buffer += text
            while "\n" in self._buffer:
                line, self._buffer = self._buffer.split("\n", 1)
                lines.append(_ANSI.sub("", line))
        for line in lines:  # outside the lock: a progress callback may print
            self._scan(line)
        return len(text)

    def flush(self) -> None:
        self._handle.flush()

    def _scan(self, line: str) -> None:
        if m := _TASK_START.search(line):
            self._started[m.group(1)] = time.monotonic()
            self._emit(TaskEvent(m.group(1), "running"))
        elif m := _TASK_END.search(line):
            task, status = m.group(1), m.group(2)
            seconds = time.monotonic() - self._started.get(task, time.monotonic())
            self._emit(TaskEvent(task, "succeeded" if status == "SUCCESS" else "failed", round(seconds, 2)))
        elif m := _SKIPPED.search(line):
            self._emit(TaskEvent(m.group(1), "skipped"))

    def _emit(self, event: TaskEvent) -> None:
        if event.state != "running":
            self.events.append(event)
        self._on_event(event)


def run_ct_pipeline(
    params: CTParams,
    home: str | Path,
    registry_uri: str | None = None,
    on_event: Callable[[TaskEvent], None] | None = None,
    warm_tasks: bool = True,
) -> RunSummary:
    """Runs the CT pipeline locally and summarises it.

    Args:
        params: Pipeline parameters.
        home: driftloop's working directory; runs go to ``<home>/runs``.
        registry_uri: The registry (replaces ``params.registry_uri``); defaults to ``<home>/registry``.
        on_event: Called for each task event (progress display).
        warm_tasks: Start each task in a pre-warmed process (:mod:`driftloop.runners.warm_tasks`); False runs
            kfp.local's own launcher, a fresh interpreter per task (the benchmark's anchor).
    """
    from driftloop.runners import warm_tasks as warm

    if warm_tasks:
        warm.prestart()  # its imports overlap with kfp's and the pipeline's compilation
    from kfp import local

    from driftloop.pipelines.ct_pipeline import build_ct_pipeline

    home = Path(home).resolve()
    params = params.with_values(registry_uri=registry_uri or str(home / "registry"))
    pipeline_root = home / "runs"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    kfp_local_compat.install(warm_tasks=warm_tasks)
    pipeline = build_ct_pipeline(with_exit_handler=False)
    before = {p.name for p in pipeline_root.iterdir()}
    log_path = pipeline_root / f".pipeline-{time.time_ns()}.log"
    started = time.monotonic()
    with open(log_path, "w") as handle:
        # Progress goes to the terminal as it was before kfp.local's output is redirected.
        tee = _LogTee(handle, on_event or (lambda event: None))
        local.init(local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=False)
        with warnings.catch_warnings(), contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee):
            # The project image's name holds no "python"; kfp.local warns about that. Locally the
            # "image" is this environment, which is exactly what the image contains.
            warnings.filterwarnings("ignore", message=".*non-Python base image.*")
            pipeline(**params.arguments())
    run_dirs = sorted(p for p in pipeline_root.iterdir() if p.is_dir() and p.name not in before)
    run_dir = run_dirs[-1] if run_dirs else pipeline_root
    final_log = run_dir / "pipeline.log"
    log_path.replace(final_log)
    summary = _summarise(params, run_dir, final_log, tee.events, time.monotonic() - started)
    version = summary.version
    steps.record_outcome(params.registry_uri, params.model_name, run_dir.name, summary.state, summary.error or "",
                         version=version)
    return summary


def _summarise(params: CTParams, run_dir: Path, log_path: Path, events: list[TaskEvent], seconds: float) -> RunSummary:
    outputs = {task: _executor_output(run_dir, task) for task in TASKS}
    failed = [e.task for e in events if e.state == "failed"]
    ran_all_needed = outputs["evaluate-model"] is not None
    summary = RunSummary(
        run_name=run_dir.name,
        state="FAILED" if failed or not ran_all_needed else "SUCCEEDED",
        model_name=params.model_name,
        seconds=round(seconds, 1),
        run_dir=str(run_dir),
        log_path=str(log_path),
        tasks=events,
    )
    evaluated = outputs["evaluate-model"]
    if evaluated:
        outcome = json.loads(evaluated["parameters"]["outcome_json"])
        decision = outcome["decision"]
        summary.gate_passed = decision["passed"]
        summary.gate_reasons = decision["reasons"]
        summary.metrics = outcome["evaluation"]["metrics"]
        summary.champion_metrics = decision["champion"]
    if outputs["register-model"]:
        summary.version = int(outputs["register-model"]["parameters"]["Output"])
    if outputs["deploy-model"]:
        summary.deploy_action = outputs["deploy-model"]["parameters"]["Output"]
    for task, names in {
        "load-and-validate": {"report": "validation_report", "dataset": "dataset"},
        "train-model": {"model": "model"},
        "evaluate-model": {"report": "evaluation_report", "metrics": "metrics"},
        "register-model": {"model_card": "model_card"},
    }.items():
        for key, label in names.items():
            uri = ((outputs[task] or {}).get("artifacts") or {}).get(key)
            if uri:
                summary.artifacts[label] = uri
    if summary.state == "FAILED":
        summary.error = _error_from_log(log_path) or f"task {', '.join(failed) or 'evaluate-model'} failed"
    return summary


def _executor_output(run_dir: Path, task: str) -> dict | None:
    """Output parameters and artifact URIs a finished task wrote, or None if it did not run.

    Tasks inside a ``dsl.If`` live one level down, in the condition's directory.
    """
    path = next(iter(sorted(run_dir.rglob(f"{task}/executor_output.json"))), None)
    if path is None:
        return None
    data = json.loads(path.read_text())
    artifacts = {
        name: entry["artifacts"][0]["uri"]
        for name, entry in (data.get("artifacts") or {}).items()
        if entry.get("artifacts")
    }
    return {"parameters": data.get("parameterValues") or {}, "artifacts": artifacts}


def _error_from_log(log_path: Path) -> str | None:
    """The user-facing error a failed component raised: the last DriftloopError, else the last error."""
    user, other = None, None
    for raw in log_path.read_text(errors="replace").splitlines():
        line = _ANSI.sub("", raw).strip()
        if m := _USER_ERROR.match(line):
            user = m.group(1)
        elif m := _ANY_ERROR.match(line):
            if "kfp" not in line and "RuntimeError: Task" not in line:
                other = f"{m.group(1)}: {m.group(2)}"
    return user or other
