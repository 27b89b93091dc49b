"""Wall time of a local CT run (kfp.local) with and without pre-warmed task processes.

Each case is a first run (no champion) in a fresh process and a fresh home, as `driftloop run` starts it:
generated churn data of the given size, the estimator pinned or `auto`. The anchor is kfp.local's own
launcher (a fresh interpreter per task, every task importing pandas, scikit-learn, XGBoost and kfp);
"warm" forks each task from a server that imported them once (driftloop.runners.warm_tasks).

    .venv/bin/python bench/bench_ct_run.py [--rows 5000 100000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

TASKS = ("load-and-validate", "train-model", "evaluate-model", "register-model", "deploy-model")


def _case(rows: int, estimator: str, warm: bool, queue) -> None:
    from driftloop import synthetic
    from driftloop.ct_params import CTParams
    from driftloop.runners.local import run_ct_pipeline

    with tempfile.TemporaryDirectory(prefix="bench-ct-") as tmp:
        home = Path(tmp)
        data = home / "churn.csv"
        synthetic.generate(rows, seed=1).to_csv(data, index=False)
        params = CTParams(data_uri=str(data), target=synthetic.TARGET, model_name="churn",
                          id_column=synthetic.ID_COLUMN, timestamp_column=synthetic.TIMESTAMP_COLUMN,
                          estimator=estimator)
        started = time.perf_counter()
        summary = run_ct_pipeline(params, home, warm_tasks=warm)
        seconds = time.perf_counter() - started
        tasks = {e.task: e.seconds for e in summary.tasks if e.state != "running"}
        queue.put({"state": summary.state, "seconds": seconds, "tasks": tasks})


def measure(rows: int, estimator: str, warm: bool, repeats: int) -> dict:
    """The fastest of ``repeats`` runs, each in a fresh process."""
    best = None
    for _ in range(repeats):
        queue = mp.get_context("spawn").Queue()
        process = mp.get_context("spawn").Process(target=_case, args=(rows, estimator, warm, queue))
        process.start()
        result = queue.get(timeout=900)
        process.join()
        if result["state"] != "SUCCEEDED":
            raise SystemExit(f"bench: the CT run failed ({rows} rows, {estimator}, warm={warm})")
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[5000, 100000])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    console = Console(width=140)  # a table, not a terminal: never cut a column
    table = Table(title=f"local CT run wall time (fastest of {args.repeats}; load average "
                        f"{os.getloadavg()[0]:.1f} at start)")
    for column in ("rows", "estimator", "task processes", "run s", *(t.split("-")[0] for t in TASKS), "vs anchor"):
        table.add_column(column, justify="right")
    for rows in args.rows:
        for estimator in ("logistic_regression", "auto"):
            anchor = None
            for warm in (False, True):
                result = measure(rows, estimator, warm, args.repeats)
                anchor = anchor or result["seconds"]
                table.add_row(f"{rows:,}", estimator, "warm (forked)" if warm else "kfp.local (anchor)",
                              f"{result['seconds']:.1f}", *(f"{result['tasks'].get(t, 0):.1f}" for t in TASKS),
                              f"{result['seconds'] / anchor:.2f}×")
                console.print(f"[dim]{rows} rows, {estimator}, warm={warm}: {result['seconds']:.1f} s[/]")
    console.print(table)


if __name__ == "__main__":
    main()
