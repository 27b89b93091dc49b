"""Gateway throughput and latency against the floor of a bare FastAPI endpoint calling the same model.

Cases: single-row and 32-row batches; 1 and 8 concurrent connections; V1 and V2 (pd); for
(a) the gateway serving one version, (b) the gateway during a 10 % canary with payload logging on
(to a receiver that accepts and discards), and (c) the floor: FastAPI + the same Pipeline's predict.
Servers run in their own processes on 127.0.0.1; the load generator is an asyncio httpx client.

    .venv/bin/python bench/bench_gateway.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from _net import wait_for_port  # bench/ is on sys.path: the scripts run as `python bench/<script>.py`
from fastapi import FastAPI, Request  # at module level: the endpoints' annotations name Request
from rich.console import Console
from rich.table import Table


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prepare(root: Path) -> tuple[str, list[dict]]:
    from driftloop import synthetic
    from driftloop.data import infer_spec
    from driftloop.registry import CANARY, LocalRegistry
    from driftloop.training import save_model, train_model
    from driftloop.validation import validate_table

    registry = LocalRegistry(root / "registry")
    rows = None
    for seed, shift in ((1, 0.0), (2, 0.6)):
        frame = synthetic.generate(3000, seed=seed, covariate_shift=shift)
        spec = infer_spec(frame, synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN)
        clean, _, spec = validate_table(frame, spec)
        save_model(train_model(clean, spec, "logistic_regression", seed=1).model, root / f"m{seed}")
        registry.register("churn", root / f"m{seed}", model_format="sklearn", lineage={}, metrics={},
                          attachments={"spec.json": spec.to_json().encode()}, actor="bench")
        if rows is None:
            # Complete rows: the floor passes JSON straight to pandas, which cannot type an all-null column.
            rows = json.loads(clean[spec.feature_names].dropna().head(32).to_json(orient="records"))
    registry.promote("churn", 1, actor="bench")
    registry.set_alias("churn", CANARY, 2, actor="bench", evidence={"canary_traffic_percent": 10})
    return str(registry.root), rows


def _serve_gateway(registry: str, port: int, canary: bool, logger_port: int | None) -> None:
    import logging

    logging.disable(logging.INFO)
    from driftloop.registry import CANARY, open_registry
    from driftloop.serving.gateway import Gateway

    reg = open_registry(registry)
    if not canary and CANARY in reg.aliases("churn"):
        reg.remove_alias("churn", CANARY, actor="bench")
    logger = f"http://127.0.0.1:{logger_port}/" if logger_port else None
    Gateway(reg, logger_url=logger, poll_interval=3600).run("127.0.0.1", port)


def _serve_floor(registry: str, port: int) -> None:
    import pandas as pd
    import uvicorn

    from driftloop.registry import open_registry
    from driftloop.serving.versions import ServedVersion

    model = ServedVersion.load(open_registry(registry), "churn", 1)
    app = FastAPI()

    @app.post("/v1/models/churn:predict")
    async def predict(request: Request) -> dict:
        body = await request.json()
        return {"predictions": model.predict(pd.DataFrame(body["instances"])).tolist()}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _serve_sink(port: int) -> None:
    import uvicorn

    app = FastAPI()

    @app.post("/")
    async def sink(request: Request) -> dict:
        await request.body()
        return {}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _v2_body(rows: list[dict]) -> dict:
    inputs = []
    for name in rows[0]:
        values = [r[name] for r in rows]
        sample = next((v for v in values if v is not None), 0.0)
        datatype = "BOOL" if isinstance(sample, bool) else "BYTES" if isinstance(sample, str) else "FP64"
        if datatype == "FP64":
            values = [0.0 if v is None else v for v in values]
        if datatype == "BYTES":
            values = ["" if v is None else v for v in values]
        inputs.append({"name": name, "shape": [len(rows)], "datatype": datatype, "data": values})
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


async def _load(url: str, body: dict, concurrency: int, seconds: float) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    payload = json.dumps(body).encode()

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await client.post(url, content=payload, headers={"content-type": "application/json"})
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await client.post(url, content=payload, headers={"content-type": "application/json"})  # warm up
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, p99 * 1000, errors



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load duration per case")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        registry, rows = _prepare(Path(tmp))
        sink_port = _port()
        servers = {"floor (FastAPI + predict)": (_serve_floor, (registry, _port())),
                   "gateway, one version": (_serve_gateway, (registry, _port(), False, None)),
                   "gateway, 10% canary + logging": (_serve_gateway, (registry, _port(), True, sink_port))}
        sink = ctx.Process(target=_serve_sink, args=(sink_port,), daemon=True)
        sink.start()
        results = []
        for label, (target, target_args) in servers.items():
            process = ctx.Process(target=target, args=target_args, daemon=True)
            process.start()
            port = target_args[1]
            wait_for_port(port)
            for protocol in ("V1", "V2"):
                if protocol == "V2" and label.startswith("floor"):
                    continue
                for batch in (1, 32):
                    for concurrency in (1, 8):
                        instances = rows[:batch]
                        if protocol == "V1":
                            url, body = f"http://127.0.0.1:{port}/v1/models/churn:predict", {"instances": instances}
                        else:
                            url, body = f"http://127.0.0.1:{port}/v2/models/churn/infer", _v2_body(instances)
                        rps, p50, p99, errors = asyncio.run(_load(url, body, concurrency, args.seconds))
                        results.append((label, protocol, batch, concurrency, rps, p50, p99, errors))
            process.terminate()
            process.join()
        sink.terminate()
    table = Table(title="gateway benchmark (2 cores; server and load generator share them)")
    for column in ("server", "protocol", "batch", "conns", "req/s", "p50 ms", "p99 ms", "errors", "vs floor"):
        table.add_column(column, justify="left" if column in ("server", "protocol") else "right")
    floor = {(b, c): (rps, p99) for label, proto, b, c, rps, _, p99, _ in results if label.startswith("floor")}
    for label, protocol, batch, concurrency, rps, p50, p99, errors in results:
        base_rps, base_p99 = floor[(batch, concurrency)]
        versus = f"{rps / base_rps:.2f}× thr, {p99 / base_p99:.2f}× p99"
        table.add_row(label, protocol, str(batch), str(concurrency), f"{rps:.0f}", f"{p50:.2f}", f"{p99:.2f}",
                      str(errors), versus)
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
