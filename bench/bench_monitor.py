"""Monitor ingest: payload events per second the drift monitor absorbs without losing a row.

(i) Pre-built request/response CloudEvent pairs, with the headers the gateway's payload logger sends,
    posted by an aiohttp client over a few connections as fast as the monitor answers; then how long
    until the monitor's rows_stored reaches the pairs sent, and the rows in its Parquet parts once it
    has shut down (and flushed), which must equal the pairs sent.
(ii) The real Gateway, logger_url at the monitor, driven at full speed with single-row V1 requests:
    gateway req/s, the events its payload logger dropped (driftloop_payload_log_dropped_total, by
    reason), the events still queued in its logger when the load stopped (the queue holds 10k, then
    drops) and how long they took to drain, and the rows in the monitor's Parquet parts against the
    requests served.

The monitor runs with its defaults (windows of 1000 rows, a drift verdict and an HTML report per
window) except that retrains are off: a training run in the background is not ingest. The monitor
and the gateway each run in a process of their own (uvicorn on 127.0.0.1), so the load generator does
not share an interpreter, and its GIL, with them; on 2 cores they still share the CPU. Every case runs
3 times against fresh servers and the tables show each run.

    .venv/bin/python bench/bench_monitor.py [--events 6000] [--seconds 20] [--connections 4]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
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
RUNS = 3


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


def build_events(rows: list[dict], predictions: list[int], pairs: int) -> list[tuple[dict, bytes]]:
    """Request then response event per prediction, headers and bodies exactly as PayloadLogger makes them."""
    from driftloop.serving.payload_logger import REQUEST_TYPE, RESPONSE_TYPE, LoggedEvent

    source = f"http://driftloop-gateway/v1/models/{MODEL}"
    events = []
    for i in range(pairs):
        event_id = str(uuid.uuid4())
        k = i % len(rows)
        halves = ((REQUEST_TYPE, {"instances": [rows[k]]}), (RESPONSE_TYPE, {"predictions": [predictions[k]]}))
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


def seconds_until_stored(url: str, expected: int, timeout: float = 60) -> float | None:
    """Seconds until the monitor reports ``expected`` rows stored (None: not within ``timeout``).

    A 202 means the rows are joined and buffered; they count as stored once the monitor's tick (every
    second, but after any window analysis it is busy with) has flushed them to Parquet.
    """
    started = time.monotonic()
    while monitor_status(url)["rows_stored"] < expected:
        if time.monotonic() - started > timeout:
            return None
        time.sleep(0.25)
    return time.monotonic() - started


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


def run_posting(registry: str, events: list[tuple[dict, bytes]], connections: int, store: Path) -> dict:
    with _server(_serve_monitor, registry, str(store), port=_port()) as monitor:
        seconds, refused = asyncio.run(post_events(f"{monitor}/events", events, connections))
        stored_after = seconds_until_stored(monitor, len(events) // 2)
        status = monitor_status(monitor)
    return {"seconds": seconds, "refused": refused, "stored_after": stored_after, "disk_rows": rows_on_disk(store),
            **status}


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


def posting_table(results: list[dict], pairs: int, connections: int) -> Table:
    rates = [2 * pairs / r["seconds"] for r in results]
    table = Table(title=f"(i) monitor ingest: {2 * pairs:,} pre-built events ({pairs:,} single-row pairs), "
                        f"{connections} connections; best of {len(results)}: {max(rates):,.0f} events/s")
    for column in ("run", "events/s", "s to post", "non-202", "rows sent", "s until stored", "rejected", "orphaned",
                   "rows on disk", "lost rows"):
        table.add_column(column, justify="right")
    for run, (r, rate) in enumerate(zip(results, rates, strict=True), 1):
        until = "not in 60 s" if r["stored_after"] is None else f"{r['stored_after']:.1f}"
        table.add_row(str(run), f"{rate:,.0f}", f"{r['seconds']:.1f}", str(r["refused"]), f"{pairs:,}", until,
                      str(r["events_rejected"]), str(r["events_orphaned"]), f"{r['disk_rows']:,}",
                      f"{pairs - r['disk_rows']:,}")
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
    parser.add_argument("--events", type=int, default=6000, help="events posted per run in (i) (two per row)")
    parser.add_argument("--seconds", type=float, default=20.0, help="load duration per run in (ii)")
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the servers: one model thread per request
    console = Console(width=160)
    load_before = _load()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        registry, rows, predictions = prepare(root)
        pairs = args.events // 2
        events = build_events(rows, predictions, pairs)
        posting = [run_posting(registry, events, args.connections, root / f"store-i-{run}") for run in range(RUNS)]
        console.print(posting_table(posting, pairs, args.connections))
        driven = [run_gateway(registry, rows, args.connections, args.seconds, root / f"store-ii-{run}")
                  for run in range(RUNS)]
        console.print(gateway_table(driven, args.connections))
    console.print(f"{os.cpu_count()} cores, shared by client, gateway and monitor; "
                  f"load average before {load_before}, after {_load()}")


if __name__ == "__main__":
    main()
