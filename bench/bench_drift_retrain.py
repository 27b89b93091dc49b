"""Retraining after drift: how much of what a drift took away each retrain strategy wins back.

Replays driftloop's generated churn world through the demo's drift (covariate and concept shift, the
``DemoOptions`` defaults). Per seed:

  reference  ``--reference-rows`` rows of the old world (default 50,000, the size of issue #12's stream);
  drifted    the labelled rows the monitor holds at its first trigger: windows of ``--window-rows`` rows (the demo's
             500), the trigger firing when M of N windows drift (the trigger's default 3 of 5), each window drifted
             from the onset on and every row labelled in time, so M × window rows (1,500); the monitor takes only
             rows from the first signalled window on (``since_signal``), so all of them are post-drift;
  test       ``--test-rows`` later post-drift rows (20,000), never trained on;
  plenty     as many post-drift rows as the reference (the ceiling's training data).

Strategies — each through the CT pipeline's own training function with the default estimator (``auto``) and the
pipeline's seeded 25 % holdout, on a table typed by ``infer_spec`` and checked by ``validate_table`` (the drifted
rows against the reference's profile, as the monitor checks them):

  stale         the reference model, still serving;
  plain         reference + every drifted row, unweighted: what a retrain was before issue #12;
  drift-aware   ``recency.train_for_recent`` on reference + the older drifted rows, with the newest
                ``--recent-windows`` window(s) held back as the recent slice the new world's weight is chosen on;
  ceiling       trained on ``plenty``.

"Gap recovered" is (strategy − stale) / (ceiling − stale) of a score on the test rows, per seed; the tables show the
mean ± standard deviation over seeds and the range. Seeds run in ``--workers`` processes, one thread each.

    .venv/bin/python bench/bench_drift_retrain.py [--quick] [--seeds 0 1 2 3 4] [--reference-rows 50000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import time
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.table import Table

STRATEGIES = ("stale", "plain", "drift-aware", "ceiling")
DESCRIPTIONS = {
    "stale": "stale: trained on the reference world only",
    "plain": "plain retrain: reference + drifted rows, unweighted",
    "drift-aware": "drift-aware: recency.train_for_recent, newest window held back",
    "ceiling": "ceiling: trained on plenty of post-drift rows",
}
METRICS = ("accuracy", "roc_auc")
SHORT = {"logistic_regression": "LR", "gradient_boosting": "GB", "xgboost": "XGB", "random_forest": "RF"}


def run_seed(seed: int, options: dict) -> dict:
    """Every strategy for one seed; their scores on the test rows, what drift-aware chose, and seconds taken."""
    import pandas as pd
    from threadpoolctl import threadpool_limits

    # Imported before the limit: it loads scikit-learn's OpenMP and BLAS, which the limit then reaches.
    from driftloop import synthetic
    from driftloop.data import LIVE, REFERENCE, SOURCE_COLUMN, infer_spec
    from driftloop.evaluation import scores
    from driftloop.profile import build_profile
    from driftloop.recency import train_for_recent
    from driftloop.training import encode_target, predict_positive_proba, train_model
    from driftloop.validation import validate_table

    n_ref, n_drifted, n_recent = options["reference_rows"], options["drifted_rows"], options["recent_rows"]
    shift = {"covariate_shift": options["covariate_shift"], "concept_shift": options["concept_shift"]}
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def world(rows: int, part: int, offset: int, drifted: bool) -> pd.DataFrame:
        # One minute apart in event time, each part after the one before (the "recent" reference window is by time).
        return synthetic.generate(rows, seed=1000 * seed + part, start=start + timedelta(minutes=offset),
                                  id_offset=offset, **(shift if drifted else {}))

    reference = world(n_ref, 1, 0, drifted=False)
    spec = infer_spec(reference, synthetic.TARGET)
    reference, _, spec = validate_table(reference, spec)
    profile = build_profile(reference, spec)

    def checked(frame):
        return validate_table(frame, spec, profile)[0]

    drifted = checked(world(n_drifted, 2, n_ref, drifted=True))
    test = checked(world(options["test_rows"], 3, n_ref + n_drifted, drifted=True))
    plenty = checked(world(n_ref, 4, n_ref + n_drifted + options["test_rows"], drifted=True))
    y_test = encode_target(test, spec)

    def score(model) -> dict:
        found = scores(y_test, predict_positive_proba(model, test, spec))
        return {metric: found[metric] for metric in METRICS}

    out: dict = {"seed": seed, "scores": {}, "seconds": {}, "cpu_seconds": {}, "estimator": {}}
    with threadpool_limits(limits=1):
        tagged = [reference.assign(**{SOURCE_COLUMN: REFERENCE}), drifted.assign(**{SOURCE_COLUMN: LIVE})]
        mixed = pd.concat(tagged, ignore_index=True)
        for name in STRATEGIES:
            started, cpu_started = time.perf_counter(), time.process_time()
            if name == "stale":
                result = train_model(reference, spec)
            elif name == "plain":
                result = train_model(mixed.drop(columns=[SOURCE_COLUMN]), spec)
            elif name == "ceiling":
                result = train_model(plenty, spec)
            else:
                # The monitor's table: reference + drifted rows, the newest of them held back as the recent slice.
                training, recent = mixed.iloc[:-n_recent], mixed.iloc[-n_recent:].drop(columns=[SOURCE_COLUMN])
                result, tried = train_for_recent(training, spec, recent.reset_index(drop=True), "auto", None,
                                                 0.25, 42, "roc_auc")
                chosen = next(s for s in tried if s.chosen)
                out["chosen"] = f"x{chosen.live_weight:g} live, {chosen.reference_window} reference"
            out["seconds"][name] = time.perf_counter() - started
            out["cpu_seconds"][name] = time.process_time() - cpu_started
            out["scores"][name] = score(result.model)
            out["estimator"][name] = result.estimator
    return out


def _worker(seed: int, options: dict, queue) -> None:
    queue.put(json.dumps(run_seed(seed, options)))


def gap_recovered(found: dict, metric: str, strategy: str) -> float:
    stale, ceiling = found["stale"][metric], found["ceiling"][metric]
    return (found[strategy][metric] - stale) / (ceiling - stale)


def mean_sd(values: list[float], digits: int = 4, percent: bool = False) -> str:
    scale, unit = (100.0, " %") if percent else (1.0, "")
    mean = statistics.mean(values) * scale
    sd = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {sd:.{digits}f}{unit}"


def value_range(values: list[float], digits: int = 4, percent: bool = False) -> str:
    scale = 100.0 if percent else 1.0
    return f"{min(values) * scale:.{digits}f} – {max(values) * scale:.{digits}f}"


def main() -> None:
    from driftloop.loop_demo import DemoOptions
    from driftloop.monitor.config import TriggerConfig

    demo, trigger = DemoOptions(), TriggerConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: 10k reference rows, 2 seeds, 5k test rows")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--reference-rows", type=int, default=50_000)
    parser.add_argument("--window-rows", type=int, default=demo.window_rows)
    parser.add_argument("--windows", type=int, default=trigger.m, help="drifted windows at the first trigger (M)")
    parser.add_argument("--recent-windows", type=int, default=1, help="newest windows held back as the recent slice")
    parser.add_argument("--test-rows", type=int, default=20_000)
    parser.add_argument("--covariate-shift", type=float, default=demo.covariate_shift)
    parser.add_argument("--concept-shift", type=float, default=demo.concept_shift)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.reference_rows, args.test_rows = args.seeds[:2], 10_000, 5_000
    if not 1 <= args.recent_windows < args.windows:
        parser.error("--recent-windows must be at least 1 and fewer than --windows")
    options = {"reference_rows": args.reference_rows, "drifted_rows": args.windows * args.window_rows,
               "recent_rows": args.recent_windows * args.window_rows, "test_rows": args.test_rows,
               "covariate_shift": args.covariate_shift, "concept_shift": args.concept_shift}

    started = time.perf_counter()
    ctx = mp.get_context("spawn")
    results, pending = [], list(args.seeds)
    running: list[tuple[object, object]] = []
    while pending or running:
        while pending and len(running) < args.workers:
            queue = ctx.Queue()
            process = ctx.Process(target=_worker, args=(pending.pop(0), options, queue))
            process.start()
            running.append((process, queue))
        process, queue = running.pop(0)
        results.append(json.loads(queue.get()))
        process.join()
        print(f"done: seed {results[-1]['seed']} ({time.perf_counter() - started:.0f} s)", flush=True)
    results.sort(key=lambda r: r["seed"])

    n_drifted, n_recent = options["drifted_rows"], options["recent_rows"]
    title = (f"post-drift test rows ({args.test_rows:,} per seed), {len(results)} seeds: mean ± sd \\[range]. Reference "
             f"{args.reference_rows:,} rows; at the first trigger {n_drifted:,} labelled drifted rows ({args.windows} "
             f"windows of {args.window_rows}), drift-aware holding back the newest {n_recent:,}")
    table = Table(title=title)
    for column in ("strategy", "accuracy", "ROC AUC", "gap recovered (accuracy)", "gap recovered (ROC AUC)",
                   "fit s wall / CPU"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for name in STRATEGIES:
        found = {metric: [r["scores"][name][metric] for r in results] for metric in METRICS}
        cells = [f"{mean_sd(found[m])}\n[{value_range(found[m])}]" for m in METRICS]
        gaps = []
        for metric in METRICS:
            values = [gap_recovered(r["scores"], metric, name) for r in results]
            gaps.append(f"{mean_sd(values, 0, percent=True)}\n[{value_range(values, 0, percent=True)}]")
        wall, cpu = (statistics.mean(r[key][name] for r in results) for key in ("seconds", "cpu_seconds"))
        table.add_row(DESCRIPTIONS[name], *cells, *gaps, f"{wall:.1f} / {cpu:.1f}")
        table.add_section()

    per_seed = Table(title="per seed: accuracy on the post-drift test rows, auto's estimator, what drift-aware chose")
    for column in ("seed", "stale", "plain", "drift-aware", "ceiling", "gap recovered (drift-aware)",
                   "drift-aware chose", "auto chose (stale / plain / drift-aware / ceiling)"):
        per_seed.add_column(column, justify="left" if "chose" in column or "estimator" in column else "right")
    for r in results:
        per_seed.add_row(str(r["seed"]), *(f"{r['scores'][n]['accuracy']:.4f}" for n in STRATEGIES),
                         f"{gap_recovered(r['scores'], 'accuracy', 'drift-aware'):.0%}", r["chosen"],
                         " / ".join(SHORT[r["estimator"][n]] for n in STRATEGIES))
    console = Console(width=150)
    console.print(table)
    console.print(per_seed)
    origin = " (the demo's)" if (args.covariate_shift, args.concept_shift) == (demo.covariate_shift,
                                                                              demo.concept_shift) else ""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers', joined above
    console.print(f"covariate shift {args.covariate_shift}, concept shift {args.concept_shift}{origin}; total "
                  f"{time.perf_counter() - started:.0f} s wall, {cpu.ru_utime + cpu.ru_stime:.0f} s CPU in "
                  f"{args.workers} worker(s) of one thread each")


if __name__ == "__main__":
    main()
