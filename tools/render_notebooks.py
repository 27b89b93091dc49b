"""Executes the notebooks and writes copies with their outputs to docs/notebooks/ (``make notebooks``).

Each notebook runs from a temporary copy, in a temporary working directory, with a kernel of this interpreter;
the tracked notebooks are only read. Their parameters are given papermill's way: a cell tagged
``injected-parameters`` after the ``parameters`` cell, so a reader sees the defaults and what this run changed.

01 runs the whole local story, the unattended closed loop included (a few minutes); 03 then inspects the
registry and the drift monitor of that closed loop. 01 runs again for the multi-class and the regression task
(``01_local_quickstart_<task>``), without Evidently's report inline (it is the same kind of page, and 5 MB).
02 needs a Kubeflow Pipelines API and is not rendered.
The executed notebooks are written as .ipynb (GitHub renders them) and as HTML (nbconvert's page, which also
shows the embedded reports, as Jupyter does).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO_ROOT / "notebooks"
OUTPUT = REPO_ROOT / "docs" / "notebooks"
KERNEL = "driftloop-docs-python"


def inject(notebook: nbformat.NotebookNode, parameters: dict) -> None:
    """Adds papermill's ``injected-parameters`` cell after the ``parameters`` cell."""
    (index,) = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    source = "# Parameters injected by `make notebooks`\n" + "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(index + 1, cell)


def execute(name: str, parameters: dict, workdir: Path, kernels: Path, timeout: int) -> nbformat.NotebookNode:
    """Runs a copy of ``notebooks/<name>`` top to bottom in ``workdir``; raises with the failing cell's error."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    inject(notebook, parameters)
    manager = AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    # No driftloop settings of the developer's leak into the published outputs.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "KF_PIPELINES_"))}
    client = NotebookClient(notebook, km=manager, timeout=timeout, record_timing=False,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute(env=env)
    return notebook


def write(notebook: nbformat.NotebookNode, name: str, output: Path) -> list[Path]:
    """The executed notebook as .ipynb and as nbconvert's HTML page, named ``name`` (and its .html)."""
    from nbconvert import HTMLExporter

    notebook.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                       "name": "python3"}
    ipynb = output / name
    nbformat.write(notebook, ipynb)
    page, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook, resources={"metadata": {
        "name": Path(name).stem}})
    html = output / f"{Path(name).stem}.html"
    html.write_text(page)
    return [ipynb, html]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where to write them (default: {OUTPUT})")
    parser.add_argument("--rows", type=int, default=2000, help="rows of notebook 01's tables (default: 2000)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds one cell may take (default: 900)")
    args = parser.parse_args(argv)
    from ipykernel.kernelspec import write_kernel_spec

    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="driftloop-notebooks-") as scratch:
        scratch = Path(scratch)
        kernels = scratch / "kernels"
        write_kernel_spec(kernels / KERNEL, overrides={
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": KERNEL})
        home = scratch / "home"
        runs = [  # the notebook, its parameters, the copy's name
            ("01_local_quickstart.ipynb", {"home": str(home), "rows": args.rows, "run_closed_loop": True}, ""),
            # 03 inspects what the closed loop of 01 left: its registry and its drift monitor's store.
            ("03_inspect_a_model.ipynb", {"home": str(home / "closed-loop")}, ""),
            *(("01_local_quickstart.ipynb", {"home": str(scratch / task), "task": task, "rows": args.rows,
                                             "embed_drift_report": False, "run_closed_loop": True},
               f"01_local_quickstart_{task}.ipynb") for task in ("multiclass", "regression")),
        ]
        for name, parameters, copy in runs:
            started = time.monotonic()
            workdir = scratch / Path(copy or name).stem
            workdir.mkdir()
            notebook = execute(name, parameters, workdir, kernels, args.timeout)
            written = write(notebook, copy or name, args.output)
            print(f"{copy or name}: {time.monotonic() - started:.0f} s -> "
                  + ", ".join(f"{p.relative_to(REPO_ROOT) if p.is_relative_to(REPO_ROOT) else p} "
                              f"({p.stat().st_size // 1024} KiB)" for p in written), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
