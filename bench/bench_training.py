"""Training and prediction cost per estimator on the synthetic churn table.

Prints a table: rows, estimator, fit seconds, single-row and 1k-row batch predict latency, peak
memory of the fit (each case runs in a fresh process so peaks do not mix), and holdout ROC AUC.

    .venv/bin/python bench/bench_training.py [--rows 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

from rich.console import Console
from rich.table import Table


def _case(rows: int, estimator: str, queue) -> None:
    import pandas as pd

    from driftloop import synthetic
    from driftloop.data import infer_spec
    from driftloop.evaluation import evaluate_model
    from driftloop.training import train_model
    from driftloop.validation import validate_table

    frame = synthetic.generate(rows, seed=1)
    spec = infer_spec(frame, synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN)
    clean, _, spec = validate_table(frame, spec)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = train_model(clean, spec, estimator, seed=1)
    fit_seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    one = pd.DataFrame(result.holdout_frame[spec.feature_names].head(1).to_dict(orient="records"))
    batch = result.holdout_frame[spec.feature_names].head(1000)
    started = time.perf_counter()
    for _ in range(50):
        result.model.predict_proba(one)
    single_ms = (time.perf_counter() - started) / 50 * 1000
    started = time.perf_counter()
    result.model.predict_proba(batch)
    batch_ms = (time.perf_counter() - started) * 1000
    auc = evaluate_model(result.model, result.holdout_frame, spec).metrics["roc_auc"]
    queue.put(json.dumps({"rows": rows, "estimator": estimator, "fit_s": fit_seconds, "single_ms": single_ms,
                          "batch_ms": batch_ms, "peak_mb": peak_mb, "rss_before_mb": before / 1024, "roc_auc": auc}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--estimators", nargs="+",
                        default=["logistic_regression", "random_forest", "gradient_boosting", "xgboost"])
    args = parser.parse_args()
    table = Table(title="driftloop training benchmark (synthetic churn, 14 features)")
    for column in ("rows", "estimator", "fit s", "predict 1 row ms", "predict 1k rows ms", "peak RSS MB", "ROC AUC"):
        table.add_column(column, justify="right")
    ctx = mp.get_context("spawn")
    for rows in args.rows:
        for estimator in args.estimators:
            queue = ctx.Queue()
            process = ctx.Process(target=_case, args=(rows, estimator, queue))
            process.start()
            r = json.loads(queue.get())
            process.join()
            table.add_row(f"{rows:,}", estimator, f"{r['fit_s']:.2f}", f"{r['single_ms']:.2f}", f"{r['batch_ms']:.1f}",
                          f"{r['peak_mb']:.0f}", f"{r['roc_auc']:.4f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
