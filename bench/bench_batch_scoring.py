"""Batch scoring against its floor: rows/s and peak memory scoring a 1 M-row table with a registered version.

The floor is the model alone: the whole table typed in memory and one ``predict_proba`` call on all of it — no
reading, no checks, no writing, and no bound on memory. Batch scoring (``driftloop score``) reads, types, scores
(labels and probabilities) and writes the table in chunks. Each case runs in a fresh process, so its peak RSS
(reset just before the measured part: the peak RSS, and how much it rose above the RSS the process held before
the table was touched) is its own.

    nice -n 10 .venv/bin/python bench/bench_batch_scoring.py [--rows 1000000] [--estimators logistic_regression]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

MODEL = "churn"


def _start_measuring() -> float:
    """Resets the process's peak RSS to its current RSS (Linux: ``clear_refs`` 5) and returns the current RSS, MB.
    Where the reset is not allowed the peak keeps what the imports reached, and the figures are upper bounds."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    return _status_mb("VmHWM") if Path("/proc/self/status").exists() else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _floor(work: str, version: int, threads: int, queue) -> None:
    """The whole table in memory, then one predict_proba call: the model's own speed."""
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from driftloop.data import coerce_to_spec
    from driftloop.registry import LocalRegistry
    from driftloop.serving.versions import ServedVersion

    served = ServedVersion.load(LocalRegistry(Path(work) / "registry"), MODEL, version)
    before = _start_measuring()
    frame = coerce_to_spec(pd.read_parquet(Path(work) / "table.parquet", columns=served.spec.feature_names),
                           served.spec)
    with threadpool_limits(limits=threads):
        started = time.perf_counter()
        served.pipeline.predict_proba(frame)
        seconds = time.perf_counter() - started
    queue.put(json.dumps({"rows": len(frame), "seconds": seconds, "peak_mb": _peak_mb(), "added_mb": _peak_mb() - before}))


def _batch(work: str, version: int, source: str, output: str, chunk_rows: int, threads: int, queue) -> None:
    """``driftloop score`` as a library call: read, check, type, score and write in chunks."""
    from threadpoolctl import threadpool_limits

    from driftloop.batch.score import score_table
    from driftloop.registry import LocalRegistry
    from driftloop.serving.versions import ServedVersion

    registry = LocalRegistry(Path(work) / "registry")
    ServedVersion.load(registry, MODEL, version)  # imports and first load outside the measured part
    before = _start_measuring()
    with threadpool_limits(limits=threads):
        summary = score_table(str(Path(work) / source), str(Path(work) / output), registry, MODEL,
                              version=version, chunk_rows=chunk_rows)
    queue.put(json.dumps({"rows": summary.rows, "seconds": summary.seconds, "peak_mb": _peak_mb(),
                          "added_mb": _peak_mb() - before}))


def _run(target, *args) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = json.loads(queue.get())
    process.join()
    return result


def _prepare(work: Path, rows: int, estimators: list[str]) -> dict[str, int]:
    """A signed local registry with one version per estimator, and the table as Parquet and CSV."""
    from driftloop import synthetic
    from driftloop.data import infer_spec
    from driftloop.registry import LocalRegistry
    from driftloop.signing import SigningKey
    from driftloop.training import save_model, train_model
    from driftloop.validation import validate_table

    key = work / "signing-key"
    key.write_bytes(SigningKey.generate().private_pem())
    key.chmod(0o600)
    os.environ["DRIFTLOOP_SIGNING_KEY_FILE"] = str(key)  # the children inherit it; never the user's own key
    registry = LocalRegistry(work / "registry")
    train = synthetic.generate(20_000, seed=1)
    spec = infer_spec(train, synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN)
    clean, _, spec = validate_table(train, spec)
    versions = {}
    for estimator in estimators:
        trained = train_model(clean, spec, estimator, seed=1)
        save_model(trained.model, work / estimator)
        versions[estimator] = registry.register(MODEL, work / estimator, model_format="sklearn", lineage={},
                                                metrics={}, attachments={"spec.json": spec.to_json().encode()},
                                                actor="bench").version
    table = synthetic.generate(rows, seed=2).drop(columns=[synthetic.TARGET])
    table.to_parquet(work / "table.parquet", index=False, row_group_size=100_000)
    table.to_csv(work / "table.csv", index=False)
    return versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--estimators", nargs="+", default=["logistic_regression", "gradient_boosting"])
    parser.add_argument("--chunk-rows", type=int, nargs="+", default=[50_000, 10_000])
    parser.add_argument("--threads", type=int, default=1, help="native (OpenMP/BLAS) threads in every case; "
                        "on a shared machine more threads spin-wait on each other (default 1)")
    args = parser.parse_args()
    console = Console(width=170)
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-batch-") as tmp:
        work = Path(tmp)
        console.print(f"preparing {args.rows:,} rows and {len(args.estimators)} versions …")
        versions = _prepare(work, args.rows, args.estimators)
        table = Table(title=f"batch scoring, {args.rows:,} rows (synthetic churn, 14 features), "
                            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
                            f"{args.threads} native thread(s)")
        for column in ("model", "case", "chunk rows", "seconds", "rows/s", "× floor time", "peak RSS MB",
                       "MB added", "× floor added"):
            table.add_column(column, justify="left" if column in ("model", "case") else "right")
        for estimator, version in versions.items():
            floor = _run(_floor, str(work), version, args.threads)
            table.add_row(estimator, "floor: predict_proba on the whole table", "–", f"{floor['seconds']:.2f}",
                          f"{floor['rows'] / floor['seconds']:,.0f}", "1.00", f"{floor['peak_mb']:,.0f}",
                          f"{floor['added_mb']:,.0f}", "1.00")
            cases = [(f"score {src} → {out}", src, out, chunk)
                     for chunk in args.chunk_rows for src, out in (("table.parquet", "scored.parquet"),)]
            cases.append(("score table.csv → scored.csv", "table.csv", "scored.csv", args.chunk_rows[0]))
            for label, source, output, chunk in cases:
                result = _run(_batch, str(work), version, source, output, chunk, args.threads)
                table.add_row(estimator, label, f"{chunk:,}", f"{result['seconds']:.2f}",
                              f"{result['rows'] / result['seconds']:,.0f}",
                              f"{result['seconds'] / floor['seconds']:.2f}", f"{result['peak_mb']:,.0f}",
                              f"{result['added_mb']:,.0f}", f"{result['added_mb'] / max(floor['added_mb'], 1):.2f}")
        console.print(table)


if __name__ == "__main__":
    main()
