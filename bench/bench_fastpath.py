"""Fast path vs Pipeline: scoring latency per row and agreement, per estimator, side by side in one run.

For each estimator of the task (``--task``: binary — logistic regression, random forest, histogram gradient
boosting, XGBoost, and what ``auto`` chooses; multiclass the same; regression with ridge for logistic regression)
a Pipeline is trained on the synthetic table of that task and compiled as registration does it
(:func:`driftloop.fastpath.agreement.compile_fast_path`: holdout + reference sample + edge cases). Then:

- agreement: the registration's figures, and on fresh rows with 5 % of every feature missing and some categories
  never seen, max |Δp| over every class and label disagreements (classification) or the max relative difference
  of the predictions (regression);
- single row: one row from a dict of columns (how a decoded request arrives). The Pipeline gets it the way
  serving gives it, as a one-row DataFrame (its construction included); the fast path takes the dict;
- 32-row batches: per row, the Pipeline from a DataFrame, the fast path from a dict of columns;
- a one-row V1 request body, decoded and scored as the serving worker does it (``scoring.score_request``) by
  a version that serves the Pipeline and by one that serves the fast path.

Every timing is the median of 5 runs of a loop, in CPU time of this process (``time.process_time``: other load
on a shared machine inflates it far less than wall time), with one thread everywhere (onnxruntime's session has
one; the Pipelines' native pools are limited to one), so the ratio compares the code, not the cores.

    .venv/bin/python bench/bench_fastpath.py [--task binary] [--rows 5000] [--estimators logistic_regression,xgboost]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from driftloop.tasks import BINARY, TASKS

BATCH = 32
REPEATS = 5


def _per_call(work, budget: float = 0.3) -> float:
    """Median CPU seconds per call of ``work()``, each of the runs looping for about ``budget`` CPU seconds."""
    started, calls = time.process_time(), 0
    while time.process_time() - started < budget / 4:
        work()
        calls += 1
    loops = max(1, calls * 4)
    runs = []
    for _ in range(REPEATS):
        started = time.process_time()
        for _ in range(loops):
            work()
        runs.append((time.process_time() - started) / loops)
    return statistics.median(runs)


def _served_rows(frame: pd.DataFrame, spec, seed: int) -> pd.DataFrame:
    """Rows typed as the request decoder types them, with missing values and unseen categories."""
    rows = frame[spec.feature_names].astype(object).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    for name in spec.feature_names:
        rows.loc[rng.random(len(rows)) < 0.05, name] = None
    for name in spec.names_of("categorical"):
        rows.loc[rng.random(len(rows)) < 0.02, name] = "never seen"
    numeric = spec.names_of("numeric")
    rows[numeric] = rows[numeric].astype(np.float64)
    return rows


def _case(estimator: str, clean: pd.DataFrame, spec, fresh: pd.DataFrame) -> dict:
    from driftloop.fastpath.agreement import compare, compile_fast_path
    from driftloop.fastpath.scorer import OnnxScorer
    from driftloop.serving.scoring import score_request as _score
    from driftloop.serving.versions import ServedVersion
    from driftloop.steps import reference_sample
    from driftloop.training import train_model

    result = train_model(clean, spec, estimator, seed=1)
    pipeline = result.model
    graph, record = compile_fast_path(pipeline, spec, {"holdout": result.holdout_frame,
                                                       "reference_sample": reference_sample(result.train_frame)})
    row = {"estimator": estimator if estimator != "auto" else f"auto: {result.estimator}",
           "status": record.status, "checked": record.rows, "compile": record.compile_seconds,
           "max_diff": record.max_rel_diff if record.max_rel_diff is not None else record.max_abs_diff,
           "labels": record.label_disagreements if spec.is_classification else "—"}
    if graph is None:
        return {**row, "reason": record.reason}
    scorer = OnnxScorer(graph, spec)
    on_fresh = compare(pipeline, scorer, fresh, spec)
    names = spec.feature_names
    one = {name: [fresh.at[0, name]] for name in names}
    batch = fresh.head(BATCH)
    batch_columns = {name: batch[name].tolist() for name in names}
    row.update({
        "fresh_diff": on_fresh.max_rel_diff if on_fresh.regression else on_fresh.max_abs_diff,
        "fresh_labels": on_fresh.label_disagreements, "fresh_rows": on_fresh.rows,
        "pipeline_1": _per_call(lambda: pipeline.predict(pd.DataFrame(one, columns=names))),
        "onnx_1": _per_call(lambda: scorer.predict(one)),
        "pipeline_32": _per_call(lambda: pipeline.predict(batch[names])) / BATCH,
        "onnx_32": _per_call(lambda: scorer.predict(batch_columns)) / BATCH,
    })
    body = {"instances": [{name: _json_value(fresh.at[0, name]) for name in names}]}
    for path, version in (("pipeline", ServedVersion("bench", 1, spec, pipeline)),
                          ("onnx", ServedVersion("bench", 1, spec, pipeline, scorer))):
        row[f"request_{path}"] = _per_call(lambda version=version: _score(version, body))
    return row


def _json_value(value):
    """A cell as JSON carries it (NaN as null, numpy scalars as Python's)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _machine() -> str:
    """The CPU, its cores and the load average (1/5/15 min): figures from a shared machine need them."""
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor() or platform.machine())
    return f"{model}, {os.cpu_count()} cores, load {'/'.join(f'{v:.1f}' for v in os.getloadavg())}"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f}" if seconds >= 1e-5 else f"{seconds * 1e6:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=TASKS, default=BINARY, help="the synthetic table's task (default binary)")
    parser.add_argument("--rows", type=int, default=5000, help="training rows (default 5000)")
    parser.add_argument("--estimators", help="comma-separated (default: every estimator of the task, and auto)")
    args = parser.parse_args()
    from threadpoolctl import threadpool_info, threadpool_limits

    from driftloop import synthetic
    from driftloop.data import coerce_to_spec, infer_spec
    from driftloop.training import AUTO, estimators_for
    from driftloop.validation import validate_table

    estimators = args.estimators.split(",") if args.estimators else [*estimators_for(args.task), AUTO]
    frame = synthetic.generate(args.rows, seed=1, task=args.task)
    spec = infer_spec(frame, synthetic.TARGETS[args.task], synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN,
                      task=args.task)
    clean, _, spec = validate_table(frame, spec)
    fresh = _served_rows(coerce_to_spec(synthetic.generate(2000, seed=2, task=args.task), spec), spec, seed=3)
    started = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {_machine()}"
    # threadpoolctl limits the native pools loaded when the limit is set: load them all first (histogram gradient
    # boosting's OpenMP comes with its Cython modules; left at 2 threads it spins and costs 10x the CPU time).
    import xgboost  # noqa: F401

    import driftloop.fastpath.convert  # noqa: F401
    import driftloop.serving.routed_model  # noqa: F401
    import driftloop.training  # noqa: F401

    rows = []
    with threadpool_limits(limits=1):
        for estimator in estimators:
            rows.append(_case(estimator, clean, spec, fresh))
        unlimited = [pool["filepath"] for pool in threadpool_info() if pool["num_threads"] != 1]
    if unlimited:  # loaded during the run, after the limit: the figures would not compare one thread with one
        raise SystemExit(f"native thread pools were not limited to one thread: {', '.join(unlimited)}")
    difference = "max |Δp|" if spec.is_classification else "max rel. |Δy|"
    table = Table(title=f"Fast path (ONNX, onnxruntime 1 thread) vs Pipeline — synthetic {args.task} "
                        f"({synthetic.TARGETS[args.task]}), {len(spec.features)} features, trained on {args.rows:,} "
                        "rows; CPU µs per row",
                  caption=f"started {started}; ended with load {_machine().rsplit('load ', 1)[1]}")
    for column in ("estimator", "fast path", "rows checked", difference, "labels ≠", f"fresh {difference}",
                   "1 row: Pipeline", "1 row: ONNX", "ratio", "32 rows: Pipeline", "32 rows: ONNX", "ratio",
                   "V1 request, 1 row: Pipeline → ONNX"):
        table.add_column(column, justify="left" if column in ("estimator", "fast path") else "right",
                         no_wrap=column == "estimator")
    for r in rows:
        if "onnx_1" not in r:
            table.add_row(r["estimator"], f"{r['status']}: {r['reason']}", str(r["checked"]), "", "", "", "", "", "",
                          "", "", "", "")
            continue
        table.add_row(
            r["estimator"], f"{r['status']} ({r['compile']:.1f} s)", f"{r['checked']:,}", f"{r['max_diff']:.1e}",
            str(r["labels"]), f"{r['fresh_diff']:.1e}" + (f" ({r['fresh_labels']} ≠ / {r['fresh_rows']:,})"
                                                           if spec.is_classification else f" / {r['fresh_rows']:,}"),
            _us(r["pipeline_1"]), _us(r["onnx_1"]), f"{r['pipeline_1'] / r['onnx_1']:.0f}×",
            _us(r["pipeline_32"]), _us(r["onnx_32"]), f"{r['pipeline_32'] / r['onnx_32']:.0f}×",
            f"{_us(r['request_pipeline'])} → {_us(r['request_onnx'])}",
        )
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
