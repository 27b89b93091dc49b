"""Monitor ingest: payload events per second the drift monitor absorbs without losing a row.

(i) Before/after durable ingestion. Pre-built request/response CloudEvent pairs, with the headers the
    gateway's payload logger sends (single-row requests, and requests of ``--batch`` rows), posted by an
    aiohttp client over a few connections as fast as the monitor answers, to ``driftloop monitor`` of the
    baseline commit (``--baseline``; rows waited in memory for the next tick, nothing fsync'd) and of this
    checkout (each event half fsync'd to the ingest log before its 202, with group commit). Both with
    their defaults: windows of 1000 rows, a drift verdict and an HTML report per window. Events/s and
    rows/s while posting, and the rows in the Parquet parts once the monitor has shut down, which must
    equal the rows sent. Runs alternate between the two so they share the machine's conditions.
(ii) The real Gateway (this checkout), logger_url at the monitor, driven at full speed with single-row V1
    requests: gateway req/s, the events its payload logger dropped (driftloop_payload_log_dropped_total, by
    reason), the events still queued in its logger when the load stopped (the queue holds 10k, then
    drops) and how long they took to drain, and the rows in the monitor's Parquet parts against the
    requests served.

Retrains are off (a training run in the background is not ingest). The monitor and the gateway each run
in a process of their own (uvicorn on 127.0.0.1), so the load generator does not share an interpreter,
and its GIL, with them; on 2 cores they still share the CPU.

    .venv/bin/python bench/bench_monitor.py [--events 6000] [--batch 10] [--seconds 20] [--connections 4]
                                            [--baseline a65af6d] [--runs 3] [--skip-gateway]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx
import orjson
from _net import wait_for_port  # bench/ is on sys.path: the scripts run as `python bench/<script>.py`
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # tests.conftest: the same trained, registered version the tests use
MODEL = "churn"
BASELINE = "a65af6d"  # the last commit before durable ingestion (#11)


def _serve_monitor(registry_root: str, store: str, port: int) -> None:
    import uvicorn

    from driftloop.monitor.app import Monitor
    from driftloop.monitor.config import MonitorConfig
    from driftloop.registry import LocalRegistry

    config = MonitorConfig.from_dict({"retrain": {"runner": "none"}})
    monitor = Monitor(LocalRegistry(registry_root), store, config)
    uvicorn.run(monitor.app, host="127.0.0.1", port=port, log_level="warning")


def _serve_gateway(registry_root: str, logger_url: str, port: int) -> None:
    import logging

    logging.disable(logging.INFO)
    from driftloop.registry import LocalRegistry
    from driftloop.serving.gateway import Gateway

    Gateway(LocalRegistry(registry_root), logger_url=logger_url, poll_interval=3600).run("127.0.0.1", port)


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]



@contextmanager
def monitor_process(src: Path | None, registry: str, store: Path, config: Path):
    """``driftloop monitor`` as a user runs it, from ``src`` (a baseline's source tree) or this checkout;
    stopped with SIGTERM (a clean shutdown writes what it holds)."""
    port = _port()
    env = {k: v for k, v in os.environ.items() if "_TOKEN" not in k}  # loopback, no tokens: as in the tests
    if src is not None:
        env["PYTHONPATH"] = str(src)
    command = [sys.executable, "-m", "driftloop", "monitor", "--config", str(config), "--port", str(port),
               "--store", str(store), "--registry", registry, "--home", str(store.parent)]
    process = subprocess.Popen(command, env=env, cwd=store.parent, stdout=subprocess.DEVNULL,
                               stderr=open(store.parent / f"{store.name}.log", "w"))  # noqa: SIM115
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            print("the monitor did not stop within 120 s; killed", file=sys.stderr)
            process.kill()


def baseline_source(ref: str, into: Path) -> Path:
    """The ``src`` tree of commit ``ref``, extracted (no checkout, no worktree)."""
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=REPO_ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


@contextmanager
def _server(target, *args, port: int):
    process = mp.get_context("spawn").Process(target=target, args=(*args, port), daemon=True)
    process.start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()  # uvicorn shuts down gracefully: the monitor flushes what it buffers
        process.join(timeout=120)
        if process.is_alive():
            print(f"{target.__name__} did not stop within 120 s; killed (rows it buffered are lost)", file=sys.stderr)
            process.kill()


def prepare(root: Path) -> tuple[str, list[dict], list[int]]:
    """A registry with a trained production version; feature rows and that version's predictions."""
    import json

    from driftloop import synthetic
    from driftloop.registry import LocalRegistry
    from driftloop.serving.versions import ServedVersion
    from tests.conftest import register_trained

    registry = LocalRegistry(root / "registry")
    register_trained(registry, root, synthetic.generate(3000, seed=1))
    registry.promote(MODEL, 1, actor="bench")
    served = ServedVersion.load(registry, MODEL, 1)
    frame = synthetic.generate(2000, seed=2)
    rows = json.loads(frame[served.spec.feature_names].to_json(orient="records"))
    predictions = [int(p) for p in served.predict(frame)]
    return str(registry.root), rows, predictions


def build_events(rows: list[dict], predictions: list[int], pairs: int, batch: int = 1) -> list[tuple[dict, bytes]]:
    """Request then response event per request of ``batch`` rows, headers and bodies exactly as PayloadLogger
    makes them."""
    from driftloop.serving.payload_logger import REQUEST_TYPE, RESPONSE_TYPE, LoggedEvent

    source = f"http://driftloop-gateway/v1/models/{MODEL}"
    events = []
    for i in range(pairs):
        event_id = str(uuid.uuid4())
        picked = [(i * batch + j) % len(rows) for j in range(batch)]
        halves = ((REQUEST_TYPE, {"instances": [rows[k] for k in picked]}),
                  (RESPONSE_TYPE, {"predictions": [predictions[k] for k in picked]}))
        for event_type, body in halves:
            event = LoggedEvent(event_id, event_type, MODEL, "default", orjson.dumps(body), 1)
            events.append((event.headers("local", source), event.body))
    return events


async def post_events(url: str, events: list[tuple[dict, bytes]], connections: int) -> tuple[float, int]:
    """Posts every event; returns the seconds it took and how many were not accepted (202)."""
    queue = iter(events)
    refused = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal refused
        for headers, body in queue:  # one shared iterator: each event goes out once
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                refused += response.status != 202

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        return time.perf_counter() - started, refused


async def drive_gateway(url: str, rows: list[dict], connections: int, seconds: float) -> tuple[float, int, int]:
    """Single-row V1 requests at full speed; returns seconds, requests served (200) and failed."""
    bodies = [orjson.dumps({"instances": [row]}) for row in rows]
    served = failed = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession, offset: int) -> None:
        nonlocal served, failed
        i = offset
        while time.perf_counter() < deadline:
            body = bodies[i % len(bodies)]
            i += connections
            async with session.post(url, data=body, headers={"content-type": "application/json"}) as response:
                await response.read()
                served += response.status == 200
                failed += response.status != 200

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session, k) for k in range(connections)))
        return time.perf_counter() - started, served, failed


def monitor_status(url: str) -> dict:
    return httpx.get(f"{url}/status", timeout=30).json()


def rows_on_disk(store: Path) -> int:
    """Rows in the monitor's Parquet parts, counted after it shut down (and flushed): the ground truth."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(part).metadata.num_rows for part in (store / "rows").glob("*/date=*/part-*.parquet"))


def gateway_counters(url: str) -> dict[str, float]:
    """The payload logger's sent and dropped (per reason) counters from the gateway's /metrics."""
    counters: dict[str, float] = {}
    text = httpx.get(f"{url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "driftloop_payload_log_sent_total":
                counters["sent"] = sample.value
            elif sample.name == "driftloop_payload_log_dropped_total":
                counters[f"dropped: {sample.labels['reason']}"] = sample.value
    return counters


def wait_for_logger(url: str, events: int, timeout: float = 120) -> tuple[dict[str, float], float]:
    """Waits until the gateway's logger has sent or dropped every event (its queue is empty)."""
    started = time.monotonic()
    counters = gateway_counters(url)
    while sum(counters.values()) < events and time.monotonic() - started < timeout:
        time.sleep(0.25)
        counters = gateway_counters(url)
    return counters, time.monotonic() - started


def run_posting(src: Path | None, registry: str, events: list[tuple[dict, bytes]], rows: int, connections: int,
                store: Path, config: Path) -> dict:
    with monitor_process(src, registry, store, config) as monitor:
        seconds, refused = asyncio.run(post_events(f"{monitor}/events", events, connections))
        status = monitor_status(monitor)
    return {"seconds": seconds, "refused": refused, "rows": rows, "disk_rows": rows_on_disk(store), **status}


def run_gateway(registry: str, rows: list[dict], connections: int, seconds: float, store: Path) -> dict:
    with _server(_serve_monitor, registry, str(store), port=_port()) as monitor:
        with _server(_serve_gateway, registry, f"{monitor}/events", port=_port()) as gateway:
            url = f"{gateway}/v1/models/{MODEL}:predict"
            elapsed, served, failed = asyncio.run(drive_gateway(url, rows, connections, seconds))
            # Events still in the logger's queue when the load stops: its backlog against the queue's 10k bound.
            queued = 2 * served - sum(gateway_counters(gateway).values())
            counters, drained = wait_for_logger(gateway, 2 * served)
        status = monitor_status(monitor)
    return {"seconds": elapsed, "served": served, "failed": failed, "queued": queued, "drained": drained,
            "counters": counters, "disk_rows": rows_on_disk(store), **status}


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def posting_table(results: dict[tuple[str, int], list[dict]], events: int, connections: int, baseline: str) -> Table:
    table = Table(title=f"(i) monitor ingest before/after durable ingestion: {events:,} pre-built events per run "
                        f"(request + response halves), {connections} connections, window analysis and reports on; "
                        "best run of each")
    for column in ("rows per request", "monitor", "events/s", "rows/s", "runs (events/s)", "non-202",
                   "rows sent", "rows on disk", "lost rows", "after/before"):
        table.add_column(column, justify="right")
    for batch in sorted({b for _, b in results}):
        best = {}
        for label in (f"before ({baseline})", "after (fsync'd log)"):
            runs = results[(label, batch)]
            rates = [2 * r["rows"] / batch / r["seconds"] for r in runs]
            r = runs[rates.index(max(rates))]
            best[label] = max(rates)
            ratio = "" if label.startswith("before") else f"{best[label] / next(iter(best.values())):.2f}×"
            table.add_row(str(batch), label, f"{max(rates):,.0f}", f"{max(rates) / 2 * batch:,.0f}",
                          " / ".join(f"{x:,.0f}" for x in rates), str(sum(x["refused"] for x in runs)),
                          f"{r['rows']:,}", f"{r['disk_rows']:,}",
                          f"{sum(x['rows'] - x['disk_rows'] for x in runs):,}", ratio)
    return table


def gateway_table(results: list[dict], connections: int) -> Table:
    rates = [r["served"] / r["seconds"] for r in results]
    table = Table(title=f"(ii) gateway → monitor: single-row V1 requests at full speed, {connections} connections; "
                        f"best of {len(results)}: {max(rates):,.0f} req/s")
    for column in ("run", "s", "gateway req/s", "served", "failed", "events logged", "events sent", "events dropped",
                   "queued at end", "drain s", "monitor received", "rows on disk", "lost rows"):
        table.add_column(column, justify="right")
    for run, (r, rate) in enumerate(zip(results, rates, strict=True), 1):
        counters = r["counters"]
        dropped = ", ".join(f"{k.removeprefix('dropped: ')} {v:,.0f}" for k, v in counters.items()
                            if k.startswith("dropped") and v) or "0"
        table.add_row(str(run), f"{r['seconds']:.1f}", f"{rate:,.0f}", f"{r['served']:,}", str(r["failed"]),
                      f"{2 * r['served']:,}", f"{counters.get('sent', 0):,.0f}", dropped, f"{r['queued']:,.0f}",
                      f"{r['drained']:.1f}",
                      f"{r['events_received']:,}", f"{r['disk_rows']:,}", f"{r['served'] - r['disk_rows']:,}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=6000, help="events posted per run in (i) (two per request)")
    parser.add_argument("--batch", type=int, default=10, help="rows per request in (i)'s second shape")
    parser.add_argument("--seconds", type=float, default=20.0, help="load duration per run in (ii)")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE, help="the commit to compare with (its src/ is extracted)")
    parser.add_argument("--skip-gateway", action="store_true", help="only (i)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the servers: one model thread per request
    console = Console(width=180)
    load_before = _load()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        registry, rows, predictions = prepare(root)
        config = root / "monitor.json"
        config.write_text(json.dumps({"retrain": {"runner": "none"}}))
        (root / "baseline").mkdir()
        sources = {f"before ({args.baseline})": baseline_source(args.baseline, root / "baseline"),
                   "after (fsync'd log)": None}
        pairs = args.events // 2
        results: dict[tuple[str, int], list[dict]] = {}
        for batch in (1, args.batch):
            events = build_events(rows, predictions, pairs, batch)
            for run in range(args.runs):
                for label, src in sources.items():  # alternating: both see the same conditions
                    store = root / f"store-{batch}-{run}-{'before' if src else 'after'}"
                    results.setdefault((label, batch), []).append(
                        run_posting(src, registry, events, pairs * batch, args.connections, store, config))
        console.print(posting_table(results, 2 * pairs, args.connections, args.baseline))
        if not args.skip_gateway:
            driven = [run_gateway(registry, rows, args.connections, args.seconds, root / f"store-ii-{run}")
                      for run in range(args.runs)]
            console.print(gateway_table(driven, args.connections))
    console.print(f"{os.cpu_count()} cores, shared by client, gateway and monitor; "
                  f"load average before {load_before}, after {_load()}")


if __name__ == "__main__":
    main()
