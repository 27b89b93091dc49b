"""Pre-warmed task processes for ``kfp.local``: each CT task still runs in a process of its own, without paying
for importing pandas, scikit-learn, XGBoost and kfp every time.

``kfp.local``'s SubprocessRunner starts ``sh -ec '… python3 -m kfp.dsl.executor_main --component_module_path …'``
per task; the interpreter then spends seconds importing what every task imports (kfp pulls in the whole
kubernetes client). Here that command is recognised and run the same way — the component's source written to a
file, ``kfp.dsl.executor_main`` run as ``__main__`` with the same arguments, ``_KFP_RUNTIME=true``, the caller's
environment and working directory, its output relayed line by line — in a process forked from a server that has
imported those modules once (Python's ``multiprocessing`` forkserver with preloaded modules). Any other command
goes to kfp.local's own launcher. The compiled IR and what a cluster runs are untouched.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

EXECUTOR_MODULE = "kfp.dsl.executor_main"
# What every CT task imports; the forkserver imports them once, before it forks any task.
PRELOAD = ["pandas", "pyarrow.parquet", "sklearn.pipeline", "sklearn.compose", "sklearn.preprocessing",
           "sklearn.linear_model", "sklearn.ensemble", "sklearn.metrics", "xgboost", "joblib", EXECUTOR_MODULE,
           "driftloop.steps", "driftloop.training", "driftloop.evaluation", "driftloop.reports",
           # the register step compiles and checks the fast path: skl2onnx, onnxmltools, onnxruntime (~3 s)
           "driftloop.fastpath.convert", "driftloop.fastpath.agreement", "skl2onnx", "onnxruntime",
           "onnxmltools.convert.xgboost.operator_converters.XGBoost"]
_CONTEXT: multiprocessing.context.BaseContext | None = None
_LOCK = threading.Lock()


def parse_executor_command(full_command: list[str]) -> tuple[str, list[str]] | None:
    """The component source and executor arguments of kfp's Lightweight-component command, or None.

    The command is ``sh -ec <script> <source> <args…>`` (or ``sh -c <install> sh -ec <script> …``) whose script
    writes ``$0`` to ``ephemeral_component.py`` and runs ``python3 -m kfp.dsl.executor_main`` on it with ``"$@"``.
    """
    for i, part in enumerate(full_command[:-2]):
        if part == "-ec" and "ephemeral_component.py" in full_command[i + 1] and EXECUTOR_MODULE in full_command[i + 1]:
            if "pip install" in " ".join(full_command[:i]):
                return None  # a component that installs packages first: kfp.local's own launcher
            return full_command[i + 2], list(full_command[i + 3:])
    return None


def run(full_command: list[str], fallback) -> int:
    """Runs one task command; the executor command in a pre-warmed process, anything else with ``fallback``."""
    parsed = parse_executor_command(full_command)
    if parsed is None:
        return fallback(full_command)
    source, args = parsed
    with tempfile.TemporaryDirectory(prefix="driftloop-task-") as tmp:
        module_path = Path(tmp) / "ephemeral_component.py"
        module_path.write_text(source)
        log_path = Path(tmp) / "output.log"
        log_path.touch()
        process = _context().Process(target=_execute, args=(
            [EXECUTOR_MODULE, "--component_module_path", str(module_path), *args],
            {**os.environ, "_KFP_RUNTIME": "true"}, os.getcwd(), str(log_path)))
        process.start()
        _relay(process, log_path)
        print("\n")  # as kfp.local does after a task's output
        return process.exitcode if process.exitcode is not None else 1


def prestart() -> None:
    """Starts the forkserver now, in the background, so its imports overlap with compiling the pipeline."""
    def start() -> None:
        from multiprocessing import forkserver

        _context()
        forkserver.ensure_running()

    threading.Thread(target=start, name="driftloop-forkserver", daemon=True).start()


def _context() -> multiprocessing.context.BaseContext:
    global _CONTEXT
    with _LOCK:
        if _CONTEXT is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            _CONTEXT = context
    return _CONTEXT


def _relay(process, log_path: Path) -> None:
    """Prints the task's output as it appears (kfp.local's log tee turns some lines into progress events)."""
    with open(log_path) as log:
        pending = ""
        while True:
            chunk = log.read()
            if chunk:
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    print(line)
            elif not process.is_alive():
                rest = log.read()
                if rest or pending:
                    print(pending + rest, end="" if (pending + rest).endswith("\n") else "\n")
                process.join()
                return
            else:
                time.sleep(0.02)


def _execute(argv: list[str], environ: dict[str, str], cwd: str, log_path: str) -> None:
    """In the forked task process: the environment and output of a fresh process, then the executor."""
    import runpy

    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - the process's own stdout
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.argv = argv
    runpy.run_module(EXECUTOR_MODULE, run_name="__main__", alter_sys=True)
