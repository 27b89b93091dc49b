"""Monitor ingest at full speed: KServe-agent-style binary CloudEvents from ``wrk``, windows and drift analysis on.

``driftloop monitor`` (its defaults: windows of 1000 rows, a drift verdict and an HTML report per window,
every event half fsync'd to the ingest log before its 202; retrains off) runs in its own process on
127.0.0.1. ``wrk`` (Debian's package; a Lua script, so no Python load generator shares the cores it measures)
posts one request and one response event per prediction, with the headers KServe's agent sends (``ce-id``
shared by the pair, ``ce-type``, ``ce-source`` = pod name, ``ce-inferenceservicename``, ``ce-namespace``,
``ce-component``, an empty ``ce-endpoint``, ``ce-annotations`` naming ``driftloop.io/model-version``,
``ce-metadata``, ``ce-time``; kserve pkg/logger/worker.go). Single-row V1 requests, as the gateway's
fast path serves them.

Modes (each run alternates through them, so they share the machine's conditions):

* ``before`` — the monitor of ``--baseline`` (its ``src`` extracted with ``git archive``), binary events.
* ``after`` — this checkout, binary events (KServe's agent; the default).
* ``after, batched`` — this checkout, ``application/cloudevents-batch+json`` posts of ``--batch`` predictions
  (2 × batch events) each: what driftloop's gateway sends with ``--payload-log-batch``.
* ``gateway`` — the rate the monitor is held to: ``driftloop serve`` alone (no payload log) on a version the CT
  pipeline's register step registered, so on its verified fast path, under the same ``wrk`` load with
  single-row V1 requests. Each monitor mode's rows/s is printed against it (the issue's binding target: the
  monitor alone takes at least what one gateway serves).

Printed per mode: events/s and predictions (rows)/s while ``wrk`` ran, the monitor's CPU per row (from
/proc: the figure other load on the machine disturbs least), p50/p99 answer latency, non-2xx answers, and the
rows in the monitor's Parquet parts after a clean shutdown against the predictions whose both halves were
acknowledged (lost rows must be 0).

``--joint SECONDS``: the joint run instead. ``driftloop serve`` (this checkout, scoring a version registered by the
CT pipeline's register step with its verified fast path, payload logging to the monitor, once with single binary
events and once with ``--payload-log-batch``) driven by ``wrk`` at full speed with single-row V1 requests for
SECONDS; then how many events were still queued in the gateway's payload logger
when the load stopped, how long the queue took to drain, the events dropped
(``driftloop_payload_log_dropped_total``) and the rows on disk against the predictions served.

    .venv/bin/python bench/bench_monitor_ingest.py [--seconds 15] [--warmup 20] [--connections 8] [--runs 2]
                                                   [--baseline 92317d3] [--batch 64]
                                                   [--modes before,after,batched,gateway]
    .venv/bin/python bench/bench_monitor_ingest.py --joint 60 [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from _net import wait_for_port
from bench_monitor import MODEL, baseline_source, gateway_counters, monitor_status, prepare, rows_on_disk
from rich.console import Console
from rich.table import Table

BASELINE = "92317d3"  # main when the ingest work began (#15): a DataFrame per event pair

# One Lua state per wrk thread; every request() call sends the next half of the current pair, or (batched)
# a CloudEvents batch of `batch` pairs. Ids are unique per thread and run.
_LUA = r"""
local bodies = {ROWS}
local answers = {ANSWERS}
local batch = BATCH
local counter = 0
local prefix = ""
local threads = 0
local done_pairs = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  prefix = "w" .. tid .. "-" .. tostring(os.time()) .. "-" .. tostring(math.random(1000000000))
end

local function headers(kind, id)
  return {
    ["ce-specversion"] = "1.0", ["ce-id"] = id, ["ce-type"] = "org.kubeflow.serving.inference." .. kind,
    ["ce-source"] = "churn-predictor-00001-deployment-6d9f7c-x2k4p", ["ce-inferenceservicename"] = "churn",
    ["ce-namespace"] = "ml", ["ce-component"] = "predictor", ["ce-endpoint"] = "",
    ["ce-annotations"] = '{"driftloop.io/model-version":"1"}', ["ce-metadata"] = "{}",
    ["ce-time"] = "2026-11-28T08:00:00.000000Z", ["content-type"] = "application/json",
  }
end

local function esc(s)
  return (s:gsub('\\', '\\\\'):gsub('"', '\\"'))
end

function request()
  if batch == 0 then
    local pair = math.floor(counter / 2)
    local half = counter % 2
    counter = counter + 1
    local id = prefix .. "-" .. pair
    local i = pair % #bodies + 1
    if half == 0 then
      return wrk.format("POST", "/events", headers("request", id), bodies[i])
    end
    return wrk.format("POST", "/events", headers("response", id), answers[i])
  end
  local parts = {}
  for k = 1, batch do
    local pair = counter
    counter = counter + 1
    local id = prefix .. "-" .. pair
    local i = pair % #bodies + 1
    local common = '"specversion":"1.0","id":"' .. id .. '","source":"driftloop-gateway",' ..
      '"inferenceservicename":"churn","namespace":"local","component":"predictor","endpoint":"default",' ..
      '"modelversion":"1","datacontenttype":"application/json"'
    parts[#parts + 1] = '{' .. common .. ',"type":"org.kubeflow.serving.inference.request","data":' .. bodies[i] .. '}'
    parts[#parts + 1] = '{' .. common .. ',"type":"org.kubeflow.serving.inference.response","data":' .. answers[i] .. '}'
  end
  return wrk.format("POST", "/events", {["content-type"] = "application/cloudevents-batch+json"},
                    "[" .. table.concat(parts, ",") .. "]")
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
                         '"p50_us": %d, "p99_us": %d}\n', summary.requests, summary.duration, non2xx,
                         summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
                         latency:percentile(50), latency:percentile(99)))
end
"""


def lua_script(rows: list[dict], predictions: list[int], batch: int) -> str:
    def lua_strings(values: list[bytes]) -> str:
        return "{" + ",".join(json.dumps(v.decode()) for v in values) + "}"

    bodies = [json.dumps({"instances": [row]}, separators=(",", ":")).encode() for row in rows]
    answers = [json.dumps({"predictions": [p]}, separators=(",", ":")).encode() for p in predictions]
    return (_LUA.replace("{ROWS}", lua_strings(bodies)).replace("{ANSWERS}", lua_strings(answers))
            .replace("BATCH", str(batch)))


@contextmanager
def monitor_process(src: Path | None, registry: str, store: Path, config: Path):
    """``driftloop monitor`` as a user runs it (from ``src``, a baseline's source tree, or this checkout); yields
    its URL and a function giving the CPU seconds it has used; stopped with SIGTERM (a clean shutdown)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if "_TOKEN" not in k}  # loopback, no tokens: as in the tests
    if src is not None:
        env["PYTHONPATH"] = str(src)
    command = [sys.executable, "-m", "driftloop", "monitor", "--config", str(config), "--port", str(port),
               "--store", str(store), "--registry", registry, "--home", str(store.parent)]
    process = subprocess.Popen(command, env=env, cwd=store.parent, stdout=subprocess.DEVNULL,
                               stderr=open(store.parent / f"{store.name}.log", "w"))  # noqa: SIM115

    def cpu_seconds() -> float:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    try:
        wait_for_port(port, timeout=180)
        yield f"http://127.0.0.1:{port}", cpu_seconds
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=180)
        except subprocess.TimeoutExpired:
            print("the monitor did not stop within 180 s; killed", file=sys.stderr)
            process.kill()


def run_wrk(url: str, script: Path, seconds: float, connections: int) -> dict:
    """One wrk thread (the monitor gets the other core), ``connections`` connections."""
    completed = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
                                "-s", str(script), url], capture_output=True, text=True, check=True)
    line = next(line for line in completed.stdout.splitlines() if line.startswith("WRKJSON "))
    return json.loads(line.removeprefix("WRKJSON "))


def run_mode(label: str, src: Path | None, registry: str, script: Path, seconds: float, connections: int,
             batch: int, store: Path, config: Path, warmup: float) -> dict:
    def events_of(result: dict) -> int:
        ok = result["requests"] - result["non2xx"]
        return ok if batch == 0 else ok * 2 * batch

    with monitor_process(src, registry, store, config) as (monitor, cpu_seconds):
        # Not measured: the first window loads the reference and the analysis libraries (once per process).
        warm = run_wrk(monitor, script, warmup, connections) if warmup > 0 else {"requests": 0, "non2xx": 0}
        cpu_before = cpu_seconds()
        wrk = run_wrk(monitor, script, seconds, connections)
        cpu = cpu_seconds() - cpu_before
        status = monitor_status(monitor)
    events = events_of(wrk)
    # Binary halves alternate per connection, so a cut-off pair is at most one half per connection.
    predictions = (events + events_of(warm)) // 2
    return {"label": label, "seconds": wrk["duration_us"] / 1e6, "posts": wrk["requests"], "non2xx": wrk["non2xx"],
            "socket_errors": wrk["socket_errors"], "events": events, "predictions": predictions,
            "rate": events / 2 / (wrk["duration_us"] / 1e6),
            "p50_ms": wrk["p50_us"] / 1000, "p99_ms": wrk["p99_us"] / 1000, "disk_rows": rows_on_disk(store),
            "windows": sum(len(m.get("windows", [])) for m in status.get("models", {}).values()),
            "cpu": cpu,
            "connections": connections}


_PREDICT_LUA = r"""
local bodies = {ROWS}
local counter = 0
function request()
  counter = counter + 1
  return wrk.format("POST", "/v1/models/churn:predict", {["content-type"] = "application/json"},
                    bodies[counter % #bodies + 1])
end
function done(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
                         '"p50_us": %d, "p99_us": %d}\n', summary.requests, summary.duration, summary.errors.status,
                         summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
                         latency:percentile(50), latency:percentile(99)))
end
"""


@contextmanager
def gateway_process(registry: str, logger_url: str | None, batch: int, log: Path):
    """``driftloop serve`` with payload logging to ``logger_url`` (None: no payload log); yields its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if "_TOKEN" not in k}
    command = [sys.executable, "-m", "driftloop", "serve", "--registry", registry, "--port", str(port),
               "--poll-interval", "3600"]
    if logger_url:
        command += ["--logger-url", logger_url, "--payload-log-batch", str(batch)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))  # noqa: SIM115
    try:
        wait_for_port(port, timeout=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def prepare_fast_path(root: Path) -> tuple[str, list[dict]]:
    """A registry whose production version was registered by the CT pipeline's register step, so the gateway
    scores with its verified fast path (as ``driftloop serve`` does for every version the pipeline registers);
    single rows of a fresh sample to request."""
    from bench_serving import register_fast_path_version

    from driftloop import synthetic
    from driftloop.registry import LocalRegistry

    (root / "fast").mkdir(exist_ok=True)
    registry = LocalRegistry(root / "fast" / "registry")
    spec, _ = register_fast_path_version(registry, root / "fast", seed=1)
    registry.promote(MODEL, 1, actor="bench")
    fast_path = registry.get_version(MODEL, 1).lineage.get("fast_path", {})
    if fast_path.get("status") != "accepted":
        sys.exit(f"bench_monitor_ingest: the version's fast path was not accepted: {fast_path.get('reason')}")
    rows = json.loads(synthetic.generate(2000, seed=2)[spec.feature_names].to_json(orient="records"))
    return str(registry.root), rows


def _serves_fast_path(gateway: str) -> bool:
    text = httpx.get(f"{gateway}/metrics", timeout=30).text
    return any(line.startswith("driftloop_fast_path{") and line.endswith(" 1.0") and 'endpoint="default"' in line
               for line in text.splitlines())


def _predict_script(rows: list[dict], root: Path) -> Path:
    script = root / "predict.lua"
    bodies = "{" + ",".join(json.dumps(json.dumps({"instances": [r]}, separators=(",", ":"))) for r in rows) + "}"
    script.write_text(_PREDICT_LUA.replace("{ROWS}", bodies))
    return script


def run_gateway_alone(registry: str, rows: list[dict], seconds: float, connections: int, root: Path,
                      warmup: float) -> float:
    """Predictions a second that ``driftloop serve`` answers on its fast path with no payload log."""
    script = _predict_script(rows, root)
    with gateway_process(registry, None, 0, root / "gateway-alone.log") as gateway:
        if not _serves_fast_path(gateway):
            sys.exit("bench_monitor_ingest: the gateway does not score with the fast path")
        run_wrk(f"{gateway}/v1/models/churn:predict", script, min(warmup, 5), connections)  # not measured
        wrk = run_wrk(f"{gateway}/v1/models/churn:predict", script, seconds, connections)
    return (wrk["requests"] - wrk["non2xx"]) / (wrk["duration_us"] / 1e6)


def run_joint(registry: str, rows: list[dict], seconds: float, connections: int, batch: int, root: Path,
              config: Path) -> dict:
    script = _predict_script(rows, root)
    store = root / f"joint-{batch}"
    with monitor_process(None, registry, store, config) as (monitor, _):
        with gateway_process(registry, f"{monitor}/events", batch, root / f"gateway-{batch}.log") as gateway:
            if not _serves_fast_path(gateway):
                sys.exit("bench_monitor_ingest: the gateway does not score with the fast path")
            warm = run_wrk(f"{gateway}/v1/models/churn:predict", script, 5, connections)  # not measured
            wrk = run_wrk(f"{gateway}/v1/models/churn:predict", script, seconds, connections)
            stopped = time.monotonic()
            counters = gateway_counters(gateway)
            served = wrk["requests"] - wrk["non2xx"]
            # Every prediction served is two events, each sent or dropped once the logger's queue is empty.
            logged = 2 * (warm["requests"] - warm["non2xx"] + served)
            queued = logged - sum(counters.values())
            while sum(counters.values()) < logged and time.monotonic() - stopped < 300:
                time.sleep(0.05)
                counters = gateway_counters(gateway)
            drained = time.monotonic() - stopped
    predictions = int(sum(counters.values()) // 2)
    return {"batch": batch, "seconds": wrk["duration_us"] / 1e6, "served": served, "p99_ms": wrk["p99_us"] / 1000,
            "queued": max(0, int(queued)), "drained": drained, "counters": counters, "predictions": predictions,
            "disk_rows": rows_on_disk(store)}


def joint_table(results: list[dict], connections: int) -> Table:
    out = Table(title=f"joint run: driftloop serve on its fast path at full speed (wrk, {connections} connections, "
                      "single-row V1) logging every prediction to the monitor (windows, drift analysis and reports on), both on "
                      "the same 2 cores")
    for column in ("payload log", "s", "gateway req/s", "p99 ms", "events queued at stop", "drain s",
                   "drained events/s", "events sent", "events dropped", "predictions logged", "rows on disk",
                   "lost rows"):
        out.add_column(column, justify="right")
    for r in results:
        counters = r["counters"]
        dropped = ", ".join(f"{k.removeprefix('dropped: ')} {v:,.0f}" for k, v in counters.items()
                            if k.startswith("dropped") and v) or "0"
        sent = counters.get("sent", 0)
        out.add_row("binary events" if r["batch"] == 0 else f"batched ({r['batch']}/POST)", f"{r['seconds']:.0f}",
                    f"{r['served'] / r['seconds']:,.0f}", f"{r['p99_ms']:.1f}", f"{r['queued']:,}",
                    f"{r['drained']:.2f}", f"{r['queued'] / r['drained']:,.0f}" if r["queued"] else "–",
                    f"{sent:,.0f}", dropped, f"{r['predictions']:,}", f"{r['disk_rows']:,}",
                    f"{max(0, int(sent // 2) - r['disk_rows']):,}")
    return out


def table(results: list[dict], seconds: float, connections: int, batch: int, gateway: list[float]) -> Table:
    out = Table(title=f"monitor ingest with windows (1000 rows) and drift analysis + reports on: wrk, {connections} "
                      f"connections, {seconds:g} s measured per run after a warm-up; single-row predictions; batched "
                      f"= {batch} predictions per POST; best run of each; rows/s = predictions acknowledged per s"
                      + (f"; the gateway alone on its fast path served {max(gateway):,.0f} predictions/s (runs "
                         f"{' / '.join(f'{g:,.0f}' for g in gateway)})" if gateway else ""))
    for column in ("mode", "events/s", "rows/s", "runs (rows/s)", "monitor CPU µs/row", "p50 ms", "p99 ms", "non-2xx",
                   "rows acknowledged", "rows on disk", "lost rows", "rows/s vs before", "rows/s ÷ gateway's"):
        out.add_column(column, justify="right")
    labels = list(dict.fromkeys(r["label"] for r in results))
    before = None
    for label in labels:
        runs = [r for r in results if r["label"] == label]
        rates = [r["rate"] for r in runs]
        best = runs[rates.index(max(rates))]
        if label.startswith("before"):
            before = max(rates)
        # Both halves of every acknowledged prediction are in; at most one half per connection was cut off.
        lost = sum(max(0, r["predictions"] - connections - r["disk_rows"]) for r in runs)
        out.add_row(label, f"{best['events'] / best['seconds']:,.0f}", f"{max(rates):,.0f}",
                    " / ".join(f"{x:,.0f}" for x in rates),
                    f"{min(r['cpu'] / max(r['rate'] * r['seconds'], 1) for r in runs) * 1e6:,.0f}",
                    f"{best['p50_ms']:.1f}", f"{best['p99_ms']:.1f}",
                    str(sum(r["non2xx"] + r["socket_errors"] for r in runs)), f"{best['predictions']:,}",
                    f"{best['disk_rows']:,}", f"{lost:,}", f"{max(rates) / before:.1f}×" if before else "",
                    # Run by run: each monitor run against the gateway's run of the same round.
                    " / ".join(f"{r['rate'] / g:.2f}" for r, g in zip(runs, gateway, strict=False)) if gateway else "")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64, help="predictions per batched POST")
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--modes", default="before,after,batched,gateway")
    parser.add_argument("--joint", type=float, default=0.0, metavar="SECONDS",
                        help="the joint run (gateway feeding the monitor) for SECONDS instead of the monitor alone")
    args = parser.parse_args()
    modes = args.modes.split(",")
    console = Console(width=200)
    load_before = "/".join(f"{v:.1f}" for v in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = root / "monitor.json"
        config.write_text(json.dumps({"retrain": {"runner": "none"}}))
        if args.joint:
            registry, rows = prepare_fast_path(root)
            joint = [run_joint(registry, rows, args.joint, args.connections, batch, root, config)
                     for batch in (0, args.batch)]
            console.print(joint_table(joint, args.connections))
            console.print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores; load average before "
                          f"{load_before}, after {'/'.join(f'{v:.1f}' for v in os.getloadavg())}")
            return
        registry, rows, predictions = prepare(root)
        scripts = {0: root / "single.lua", args.batch: root / "batched.lua"}
        for batch, path in scripts.items():
            path.write_text(lua_script(rows, predictions, batch))
        plan = []
        if "before" in modes:
            (root / "baseline").mkdir()
            plan.append((f"before ({args.baseline}), binary", baseline_source(args.baseline, root / "baseline"), 0))
        if "after" in modes:
            plan.append(("after, binary (KServe agent)", None, 0))
        if "batched" in modes:
            plan.append((f"after, batched ({args.batch}/POST)", None, args.batch))
        results, gateway = [], []
        if "gateway" in modes:
            fast_registry, fast_rows = prepare_fast_path(root)
        for run in range(args.runs):
            if "gateway" in modes:
                gateway.append(run_gateway_alone(fast_registry, fast_rows, args.seconds, args.connections, root,
                                                 args.warmup))
            for i, (label, src, batch) in enumerate(plan):
                store = root / f"store-{run}-{i}"
                results.append(run_mode(label, src, registry, scripts[batch], args.seconds, args.connections, batch,
                                        store, config, args.warmup))
                time.sleep(1)
    console.print(table(results, args.seconds, args.connections, args.batch, gateway))
    console.print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
                  f"{os.cpu_count()} cores shared by wrk and the monitor (monitor CPU per row is the figure other load "
                  f"disturbs least); load average before {load_before}, "
                  f"after {'/'.join(f'{v:.1f}' for v in os.getloadavg())}; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
