"""Batching on or off: driftloop's runtime twice on the same model directory, A/B in alternating rounds under wrk.

Both servers run throughout; each round measures one, then the other, single-row V1 requests, on 1 and 8
connections, so a change in the machine's load hits both alike. Once with the verified fast path, once with the
same Pipeline registered without one (``--pipeline``). Uses bench_serving's set-up and wrk helpers.

    .venv/bin/python bench/bench_batching.py [--rounds 3] [--seconds 3] [--pipeline]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import bench_serving as serving  # bench/ is on sys.path: the scripts run as `python bench/<script>.py`
from rich.console import Console
from rich.table import Table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--pipeline", action="store_true", help="serve the Pipeline (no fast path)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-batching-") as tmp:
        root = Path(tmp)
        os.environ.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                           "DRIFTLOOP_SIGNING_KEY_FILE": str(root / "signing-key"),
                           "DRIFTLOOP_HOME": str(root / "home")})
        registry, rows = serving._register(root)
        from driftloop.registry import LocalRegistry

        name = serving.PIPELINE_ONLY if args.pipeline else serving.MODEL
        model_dir = LocalRegistry(registry).fetch_model(name, 1, root / "model")
        spec = json.loads((model_dir / "driftloop-model.json").read_text())["spec"]
        body = root / "body.json"
        body.write_text(json.dumps(serving._bodies(rows, {f["name"]: f["kind"] for f in spec["features"]})["V1", 1]))
        base = [sys.executable, "-m", "driftloop.serving.runtime", f"--model_name={serving.MODEL}",
                f"--model_dir={model_dir}", "--http_port={port}"]
        variants = {"off (--batch_max_rows 1)": base + ["--batch_max_rows", "1"],
                    "on (--batch_max_rows 64)": base + ["--batch_max_rows", "64"]}
        ports, processes = {}, []
        try:
            for label, command in variants.items():
                ports[label] = serving._port()
                processes.append(serving._start(serving.Server(label, command), ports[label], dict(os.environ),
                                                root / f"{len(ports)}.log"))
                serving._wrk(serving._url(ports[label], "V1"), body, root / "warm.lua", 8, 1)
            rates: dict[tuple[str, int], list[float]] = {}
            p99s: dict[tuple[str, int], list[float]] = {}
            for connections in (1, 8):
                for _ in range(args.rounds):
                    for label in variants:
                        n, duration_us, _, p99, _ = serving._wrk(serving._url(ports[label], "V1"), body,
                                                                 root / "load.lua", connections, args.seconds)
                        rates.setdefault((label, connections), []).append(n / duration_us * 1e6)
                        p99s.setdefault((label, connections), []).append(p99 / 1000)
        finally:
            for process in processes:
                serving._stop(process)
    table = Table(title=f"batching A/B, runtime on the {'Pipeline' if args.pipeline else 'fast path'}, single-row V1, "
                        f"{args.rounds} alternating rounds of {args.seconds:g} s; load average "
                        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} after")
    for column in ("batching", "conns", "req/s per round", "median req/s", "median p99 ms"):
        table.add_column(column)
    for (label, connections), values in rates.items():
        table.add_row(label, str(connections), " / ".join(f"{v:,.0f}" for v in values),
                      f"{statistics.median(values):,.0f}", f"{statistics.median(p99s[label, connections]):.1f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
