"""Serving throughput and latency under `wrk`, side by side in one run, against KServe's own stack.

Servers, each its own process on 127.0.0.1, all serving the same registered version (a logistic-regression
Pipeline on the synthetic churn table, registered by the CT pipeline's register step, so its verified fast
path is in the model directory):

(a) ``sklearn-like``: a ``kserve.Model`` doing what KServe's sklearnserver does (kserve
    ``python/sklearnserver/sklearnserver/model.py``: joblib-load the one ``.joblib`` in the model directory,
    ``kserve.utils.utils.get_predict_input``, ``predict``, ``get_predict_response``) on KServe's ``ModelServer``
    with its defaults (sklearnserver itself is not on PyPI);
(b) ``kserve no-op``: a ``kserve.Model`` that answers without decoding or scoring, same server: the ceiling;
(c) ``runtime``: ``python -m driftloop.serving.runtime`` on the version's model directory (fast path on),
    batching off (the default) and on (``--batch_max_rows 64``, with and without a wait), and on the same Pipeline
    file registered without a fast path (the Pipeline serves), batching off and on;
(d) ``serve``: ``driftloop serve`` (the local gateway) on the registry, as is, and during a 10 % canary with
    payload logging (KServe-style binary events) to a running ``driftloop monitor``, which shares the two cores
    (its intake is reported), and to a null receiver (a few lines of asyncio answering 202: the gateway's own
    figure, as with a monitor on other cores).

Every server runs for the whole bench and each case is measured on all of them back to back, so a change in the
machine's load between cases shifts every server alike. Load: ``wrk`` (Debian's package; ``apt-get install -y --no-install-recommends wrk``), one thread, 1 and 8
connections, POST bodies from a Lua script: single-row and 32-row requests, V1 (KServe's column lists, the one
body every server here takes) and V2 (one tensor per column, ``content_type: pd``). Every server's first answer
is checked against the others before it is loaded. Native thread pools are limited to one thread everywhere
(``OMP_NUM_THREADS=1``): on 2 cores shared with the load generator more threads only spin.

    .venv/bin/python bench/bench_serving.py [--seconds 5] [--runs 2] [--markdown] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from _net import wait_for_port  # bench/ is on sys.path: the scripts run as `python bench/<script>.py`
from rich.console import Console
from rich.table import Table

MODEL = "churn"
BATCHES = (1, 32)
CONNECTIONS = (1, 8)
PROTOCOLS = ("V1", "V2")
SKLEARN_LIKE, NOOP = "(a) sklearn-like", "(b) kserve no-op"
PIPELINE_ONLY = "churn-pipeline"
DRAIN_SECONDS = 15.0
INSTALL_WRK = "apt-get install -y --no-install-recommends wrk"
LUA = """
local f = io.open("{body}", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.connect + e.read + e.write + e.status + e.timeout))
end
"""


# -- KServe's own stack: (a) and (b), run in a child process of this script ------------------------------


def _serve_kserve(kind: str, model_dir: str, port: int) -> None:
    """KServe's ModelServer with an sklearnserver-like or a no-op model (what ``--serve-kserve`` runs)."""
    import uvicorn

    # KServe's RESTServer binds 0.0.0.0 with no option to change it; a benchmark stays on loopback.
    class LoopbackConfig(uvicorn.Config):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **{**kwargs, "host": "127.0.0.1"})

    uvicorn.Config = LoopbackConfig
    import joblib
    from kserve import Model, ModelServer
    from kserve.errors import InferenceError
    from kserve.utils.utils import get_predict_input, get_predict_response

    class SKLearnLike(Model):
        """KServe's sklearnserver ``SKLearnModel``, as its source does it (PREDICT_PROBA unset)."""

        def load(self) -> bool:
            files = [p for p in Path(model_dir).iterdir() if p.is_file() and p.suffix in (".joblib", ".pkl", ".pickle")]
            if len(files) != 1:
                raise RuntimeError(f"expected one model file in {model_dir}, found {files}")
            self._model = joblib.load(files[0])
            self.ready = True
            return self.ready

        def predict(self, payload, headers=None):
            try:
                return get_predict_response(payload, self._model.predict(get_predict_input(payload)), self.name)
            except Exception as e:  # noqa: BLE001 - as sklearnserver does
                raise InferenceError(str(e)) from None

    class NoOp(Model):
        def load(self) -> bool:
            self.ready = True
            return True

        def predict(self, payload, headers=None):
            return get_predict_response(payload, [0], self.name)

    model = SKLearnLike(MODEL) if kind == "sklearn" else NoOp(MODEL)
    model.load()
    ModelServer(http_port=port, workers=1, enable_grpc=False).start([model])


def _serve_null_receiver(port: int) -> None:
    """A payload log receiver that costs next to nothing: reads each POST and answers 202 (``--null-receiver``)."""
    import asyncio

    answer = b'HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 17\r\n\r\n{"accepted":true}'

    class Receiver(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            self.transport, self.buffer = transport, b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                length = next((int(line.split(b":", 1)[1]) for line in self.buffer[:end].split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                if len(self.buffer) < end + 4 + length:
                    return
                self.buffer = self.buffer[end + 4 + length:]
                self.transport.write(answer)

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Receiver, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


# -- the set-up ---------------------------------------------------------------------------------------------


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def register_fast_path_version(registry, root: Path, seed: int, shift: float = 0.0):
    """Trains a logistic regression on generated churn rows (``covariate_shift`` = ``shift``) and registers it
    through the CT pipeline's register step, so its fast path is compiled and checked as in a real run;
    returns the spec and the validated training rows."""
    from driftloop import steps, synthetic
    from driftloop.data import infer_spec
    from driftloop.evaluation import GateDecision, evaluate_model
    from driftloop.training import save_model, train_model
    from driftloop.validation import validate_table

    frame = synthetic.generate(3000, seed=seed, covariate_shift=shift)
    spec = infer_spec(frame, synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN)
    frame, _, spec = validate_table(frame, spec)
    frame.to_parquet(root / f"data{seed}.parquet", index=False)
    trained = train_model(frame, spec, "logistic_regression", seed=1)
    save_model(trained.model, root / f"m{seed}")
    trained.holdout_frame.to_parquet(root / f"holdout{seed}.parquet", index=False)
    evaluation = evaluate_model(trained.model, trained.holdout_frame, spec)
    decision = GateDecision(True, ["bench"], "roc_auc", evaluation.metrics["roc_auc"], None, None, {})
    outcome = json.dumps({"evaluation": evaluation.to_dict(), "decision": decision.to_dict()})
    steps.register(str(root / f"m{seed}"), str(root / f"data{seed}.parquet"), spec.to_json(), outcome,
                   str(registry.root), MODEL, {"run_id": f"bench-{seed}"},
                   holdout_path=str(root / f"holdout{seed}.parquet"))
    return spec, frame


def _register(root: Path) -> tuple[str, list[dict]]:
    """A registry with v1 in production and v2 (trained on shifted rows) as a 10 % canary, both registered by the
    CT pipeline's register step (fast path compiled and checked); complete request rows."""
    from driftloop.registry import CANARY, PRODUCTION, LocalRegistry

    registry = LocalRegistry(root / "registry")
    rows: list[dict] = []
    for seed, shift in ((1, 0.0), (2, 0.6)):
        spec, frame = register_fast_path_version(registry, root, seed, shift)
        if not rows:
            rows = json.loads(frame[spec.feature_names].dropna().head(32).to_json(orient="records"))
        if seed == 1:  # the same Pipeline file without a fast path: what a version serves when none was accepted
            registry.register(PIPELINE_ONLY, root / "m1", model_format="sklearn", lineage={}, metrics={},
                              attachments={"spec.json": spec.to_json().encode()}, actor="bench")
    registry.set_alias(MODEL, PRODUCTION, 1, actor="bench")
    registry.set_alias(MODEL, CANARY, 2, actor="bench", evidence={"canary_traffic_percent": 10})
    for version in (1, 2):
        record = registry.get_version(MODEL, version).lineage.get("fast_path", {})
        if record.get("status") != "accepted":
            print(f"note: v{version}'s fast path was not accepted: {record.get('reason')}", file=sys.stderr)
    return str(registry.root), rows


def _bodies(rows: list[dict], spec_kinds: dict[str, str]) -> dict[tuple[str, int], dict]:
    """The request bodies: V1 as KServe's column lists (one instance, n rows), V2 one tensor per column."""
    datatype = {"numeric": "FP64", "categorical": "BYTES", "boolean": "BOOL"}
    bodies = {}
    for n in BATCHES:
        chunk = rows[:n]
        bodies["V1", n] = {"instances": [{name: [r[name] for r in chunk] for name in spec_kinds}]}
        bodies["V2", n] = {"parameters": {"content_type": "pd"}, "inputs": [
            {"name": name, "shape": [n], "datatype": datatype[kind], "data": [r[name] for r in chunk]}
            for name, kind in spec_kinds.items()]}
    return bodies


@dataclass
class Server:
    label: str
    command: list[str]
    note: str = ""
    logging_to: str | None = None  # the monitor URL, when this server logs payloads


@dataclass
class Result:
    server: str
    protocol: str
    batch: int
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    run: int = 1

    @property
    def rows_per_s(self) -> float:
        return self.rps * self.batch


def _start(server: Server, port: int, env: dict, log: Path) -> subprocess.Popen:
    command = [part.replace("{port}", str(port)) for part in server.command]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"),  # noqa: SIM115
                               start_new_session=True)
    try:
        wait_for_port(port, timeout=120)
    except RuntimeError:
        process.kill()
        raise RuntimeError(f"{server.label} did not start; see {log}:\n{log.read_text()[-2000:]}") from None
    return process


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _url(port: int, protocol: str) -> str:
    path = f"/v1/models/{MODEL}:predict" if protocol == "V1" else f"/v2/models/{MODEL}/infer"
    return f"http://127.0.0.1:{port}{path}"


def _answer(port: int, protocol: str, body: dict) -> list:
    response = httpx.post(_url(port, protocol), json=body, timeout=30)
    response.raise_for_status()
    payload = response.json()
    return payload["predictions"] if protocol == "V1" else payload["outputs"][0]["data"]


def _wrk(url: str, body_file: Path, script: Path, connections: int, seconds: float) -> tuple[int, int, int, int, int]:
    script.write_text(LUA.replace("{body}", str(body_file)))
    run = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script),
                          url], capture_output=True, text=True, check=True)
    match = re.search(r"WRK_RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", run.stdout)
    if match is None:
        raise RuntimeError(f"wrk gave no result: {run.stdout} {run.stderr}")
    return tuple(int(g) for g in match.groups())  # type: ignore[return-value]


def _metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def _decode_costs(spec: dict, rows: list[dict]) -> list[tuple[str, int, float]]:
    """CPU µs per row that driftloop's decoder spends turning a parsed body into typed columns, per format and
    size (the median of 5 loops, in this process's CPU time, so other load on the machine barely moves it)."""
    from kserve.protocol.infer_type import InferRequest
    from kserve.protocol.rest.v2_datamodels import InferenceRequest

    from driftloop.data import DatasetSpec
    from driftloop.serving.payload import columns_from_payload

    typed = DatasetSpec.from_dict(spec)
    names = typed.feature_names
    kinds = {f.name: f.kind for f in typed.features}
    costs = []
    for n in BATCHES:
        chunk = rows[:n]
        v1, v2 = _bodies(chunk, kinds)["V1", n], _bodies(chunk, kinds)["V2", n]
        formats = {
            "V1 records": {"instances": chunk},
            "V1 column lists": v1,
            "V1 positional": {"instances": [[r[name] for name in names] for r in chunk]},
            "V2 pd (one tensor per column)": InferRequest.from_inference_request(InferenceRequest(**v2), MODEL),
            "V2 row-major BYTES": InferRequest.from_inference_request(InferenceRequest(inputs=[
                {"name": "input-0", "shape": [n, len(names)], "datatype": "BYTES",
                 "data": [[r[name] for name in names] for r in chunk]}]), MODEL),
        }
        for label, body in formats.items():
            runs = []
            for _ in range(5):
                started, loops = time.process_time(), 0
                while time.process_time() - started < 0.1:
                    columns_from_payload(body, typed)
                    loops += 1
                runs.append((time.process_time() - started) / loops / n * 1e6)
            costs.append((label, n, sorted(runs)[2]))
    return costs


def _drain(port: int, seconds: float) -> tuple[float, float, float]:
    """Waits up to ``seconds`` for the gateway's payload logger to deliver or drop every event of the requests it
    served (two per request: request and response); returns (requests, delivered, dropped)."""
    deadline = time.monotonic() + seconds
    while True:
        served = _metric(port, "driftloop_requests_total")
        sent = _metric(port, "driftloop_payload_log_sent_total")
        dropped = _metric(port, "driftloop_payload_log_dropped_total")
        if sent + dropped >= 2 * served or time.monotonic() > deadline:
            return served, sent, dropped
        time.sleep(0.5)


def _logging_outcome(port: int) -> str:
    served, sent, dropped = _drain(port, 2 * DRAIN_SECONDS)
    return (f"{served:.0f} requests → {2 * served:.0f} events: {sent:.0f} delivered to the receiver, {dropped:.0f} "
            f"dropped, {2 * served - sent - dropped:.0f} still queued (after each case the bench waited up to "
            f"{DRAIN_SECONDS:g} s for the queue to drain; the receiver shares the 2 cores)")


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}"


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


# -- the run ----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk duration per case (default 5)")
    parser.add_argument("--runs", type=int, default=1, help="times every case is measured on every server (default 1)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--markdown", action="store_true", help="also print a compact Markdown table (for docs)")
    parser.add_argument("--serve-kserve", choices=("sklearn", "noop"), help=argparse.SUPPRESS)
    parser.add_argument("--null-receiver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_kserve:
        _serve_kserve(args.serve_kserve, args.model_dir, args.port)
        return
    if args.null_receiver:
        _serve_null_receiver(args.port)
        return
    if shutil.which("wrk") is None:
        sys.exit(f"bench_serving: wrk is not installed; install it with: {INSTALL_WRK}")
    console = Console(width=200)  # a table wider than a terminal stays one row per case
    started = datetime.now(UTC)
    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = Path(tmp)
        env = {**{k: v for k, v in os.environ.items() if "_TOKEN" not in k},  # loopback, no tokens
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "DRIFTLOOP_SIGNING_KEY_FILE": str(root / "signing-key"), "DRIFTLOOP_HOME": str(root / "home")}
        os.environ.update({k: env[k] for k in ("OMP_NUM_THREADS", "DRIFTLOOP_SIGNING_KEY_FILE", "DRIFTLOOP_HOME")})
        console.print("registering v1 and v2 (fast path compiled and checked) …")
        registry, rows = _register(root)
        from driftloop.registry import LocalRegistry

        model_dir = LocalRegistry(registry).fetch_model(MODEL, 1, root / "model")
        spec = json.loads((model_dir / "driftloop-model.json").read_text())["spec"]
        kinds = {f["name"]: f["kind"] for f in spec["features"]}
        bodies = _bodies(rows, kinds)
        decode_costs = _decode_costs(spec, rows)
        body_files = {}
        for key, body in bodies.items():
            body_files[key] = root / f"body-{key[0]}-{key[1]}.json"
            body_files[key].write_text(json.dumps(body))
        python, me = sys.executable, str(Path(__file__).resolve())
        pipeline_dir = LocalRegistry(registry).fetch_model(PIPELINE_ONLY, 1, root / "pipeline-model")
        runtime = [python, "-m", "driftloop.serving.runtime", f"--model_name={MODEL}", f"--model_dir={model_dir}",
                   "--http_port={port}"]
        runtime_pipeline = [python, "-m", "driftloop.serving.runtime", f"--model_name={MODEL}",
                            f"--model_dir={pipeline_dir}", "--http_port={port}"]
        serve = [python, "-m", "driftloop", "serve", "--registry", registry, "--port", "{port}",
                 "--poll-interval", "3600"]
        monitor_port, null_port = _port(), _port()
        monitor_url, null_url = f"http://127.0.0.1:{monitor_port}", f"http://127.0.0.1:{null_port}"
        servers = [
            Server(SKLEARN_LIKE, [python, me, "--serve-kserve", "sklearn", "--model-dir", str(model_dir),
                                  "--port", "{port}"]),
            Server(NOOP, [python, me, "--serve-kserve", "noop", "--model-dir", str(model_dir), "--port", "{port}"]),
            Server("(c) runtime", runtime),
            Server("(c) runtime, batching", runtime + ["--batch_max_rows", "64"], "max 64 rows, no wait"),
            Server("(c) runtime, batching+wait", runtime + ["--batch_max_rows", "64", "--batch_wait_us", "300"],
                   "max 64 rows, wait 300 µs"),
            Server("(c) runtime, Pipeline", runtime_pipeline, "no fast path: the Pipeline serves"),
            Server("(c) runtime, Pipeline, batching", runtime_pipeline + ["--batch_max_rows", "64"],
                   "no fast path: the Pipeline serves; max 64 rows, no wait"),
            Server("(d) serve", serve),
            Server("(d) serve, canary+logging", serve + ["--logger-url", f"{monitor_url}/events"],
                   "10 % canary, payload log → monitor", logging_to=monitor_url),
            Server("(d) serve, canary+logging, null receiver", serve + ["--logger-url", f"{null_url}/events"],
                   "10 % canary, payload log → a receiver that only answers 202", logging_to=null_url),
        ]
        from driftloop.registry import CANARY

        results: list[Result] = []
        answers: dict[str, list] = {}
        notes: dict[str, str] = {}
        monitor_config = root / "monitor.json"
        monitor_config.write_text(json.dumps({"retrain": {"runner": "none"}}))
        processes: list[subprocess.Popen] = []
        ports: dict[str, int] = {}
        try:
            # Every server runs for the whole bench, idle but for its turn: each case is measured on all of them
            # back to back, so a change in the machine's load between cases shifts every server alike.
            processes.append(_start(Server("monitor", [python, "-m", "driftloop", "monitor", "--config",
                                                       str(monitor_config), "--port", "{port}", "--store",
                                                       str(root / "monitor"), "--registry", registry]),
                                    monitor_port, env, root / "monitor.log"))
            processes.append(_start(Server("null receiver", [python, me, "--null-receiver", "--port", "{port}"]),
                                    null_port, env, root / "null-receiver.log"))
            reg = LocalRegistry(registry)
            reg.remove_alias(MODEL, CANARY, actor="bench")  # the gateways read the aliases as they start
            for server in servers:
                if server.logging_to and reg.state(MODEL).aliases.get(CANARY) is None:  # only where it is measured
                    reg.set_alias(MODEL, CANARY, 2, actor="bench", evidence={"canary_traffic_percent": 10})
                console.print(f"starting {server.label} …")
                ports[server.label] = port = _port()
                processes.append(_start(server, port, env, root / f"server-{len(ports)}.log"))
                answers[server.label] = _answer(port, "V1", bodies["V1", 32])
                if server.label != NOOP and answers[server.label] != answers[SKLEARN_LIKE]:
                    notes[server.label] = "answers differ from (a) on the check request!"
                if server.label.startswith(("(c)", "(d)")):
                    on = _metric(port, "driftloop_fast_path{")
                    notes.setdefault(server.label, ("fast path on" if on >= 1 else "fast path off")
                                     + (f"; {server.note}" if server.note else ""))
                _wrk(_url(port, "V1"), body_files["V1", 1], root / "warm.lua", 8, 1)  # warm-up
            cases = [(p, b, c) for p in PROTOCOLS for b in BATCHES for c in CONNECTIONS]
            for run, (protocol, batch, connections) in ((run, case) for run in range(1, args.runs + 1)
                                                        for case in cases):
                console.print(f"run {run}: {protocol}, {batch} row(s), {connections} connection(s) …")
                for server in servers:
                    port = ports[server.label]
                    n, duration_us, p50, p99, errors = _wrk(
                        _url(port, protocol), body_files[protocol, batch], root / "load.lua", connections,
                        args.seconds)
                    results.append(Result(server.label, protocol, batch, connections,
                                          n / duration_us * 1e6, p50 / 1000, p99 / 1000, errors, run))
                    if server.logging_to:  # its backlog must not load the next server's turn
                        _drain(port, DRAIN_SECONDS)
            for server in servers:
                if server.logging_to:
                    notes[server.label] += "; " + _logging_outcome(ports[server.label])
        finally:
            for process in processes:
                _stop(process)
    load_after = _load()
    for run in range(1, args.runs + 1):
        _print(console, [r for r in results if r.run == run], notes if run == args.runs else {}, started,
               load_before, load_after, args.seconds, f"run {run} of {args.runs}")
    decoding = Table(title="driftloop's decoder: CPU µs per row, parsed body → typed columns (median of 5)")
    for column in ("format", "rows/req", "µs/row"):
        decoding.add_column(column)
    for label, n, micros in decode_costs:
        decoding.add_row(label, str(n), f"{micros:.1f}")
    console.print(decoding)
    if args.markdown:
        for run in range(1, args.runs + 1):
            print(f"\nrun {run} of {args.runs}\n")
            print(_markdown([r for r in results if r.run == run]))
    if args.json:
        args.json.write_text(json.dumps({
            "date": started.isoformat(timespec="seconds"), "machine": _machine(), "load_before": load_before,
            "load_after": load_after, "seconds": args.seconds, "runs": args.runs, "notes": notes,
            "results": [{**asdict(r), "rows_per_s": r.rows_per_s} for r in results],
            "decode_us_per_row": [{"format": f, "rows": n, "us_per_row": u} for f, n, u in decode_costs]}, indent=2))


def _markdown(results: list[Result]) -> str:
    """One line per server: single-row req/s (p99) on 1 and 8 connections, V1 and V2; 32-row rows/s on 8; the
    single-row ratios the issue's targets are stated in."""
    by_case = {(r.server, r.protocol, r.batch, r.connections): r for r in results}
    head = ("| server | V1 1 row, 1 conn: req/s (p99 ms) | V1 1 row, 8 conns | V2 1 row, 1 conn | V2 1 row, 8 conns | "
            "V1 32 rows, 8 conns: rows/s | V2 32 rows, 8 conns: rows/s | × (a) V1, 1 / 8 conns | "
            "× (a) V2, 1 / 8 conns | p99 ÷ (a)'s, 8 conns, V1 / V2 | % of (b), 8 conns, V1 / V2 |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for server in dict.fromkeys(r.server for r in results):
        def cell(protocol: str, batch: int, connections: int, server: str = server) -> str:
            r = by_case[server, protocol, batch, connections]
            return f"{r.rows_per_s:,.0f}" if batch > 1 else f"{r.rps:,.0f} ({r.p99_ms:.0f})"

        def ratio(protocol: str, connections: int, server: str = server) -> tuple[Result, Result, Result]:
            return tuple(by_case[name, protocol, 1, connections] for name in (server, SKLEARN_LIKE, NOOP))

        times = {p: " / ".join(f"{r.rps / a.rps:.1f}×" for r, a, _ in (ratio(p, c) for c in CONNECTIONS))
                 for p in PROTOCOLS}
        tails = " / ".join(f"{r.p99_ms / a.p99_ms:.2f}" for r, a, _ in (ratio(p, 8) for p in PROTOCOLS))
        ceiling = " / ".join(f"{100 * r.rps / b.rps:.0f} %" for r, _, b in (ratio(p, 8) for p in PROTOCOLS))
        lines.append(f"| {server} | {cell('V1', 1, 1)} | {cell('V1', 1, 8)} | {cell('V2', 1, 1)} | "
                     f"{cell('V2', 1, 8)} | {cell('V1', 32, 8)} | {cell('V2', 32, 8)} | {times['V1']} | "
                     f"{times['V2']} | {tails} | {ceiling} |")
    return "\n".join(lines)


def _print(console: Console, results: list[Result], notes: dict[str, str], started: datetime, load_before: str,
           load_after: str, seconds: float, run: str) -> None:
    by_case = {(r.server, r.protocol, r.batch, r.connections): r for r in results}
    table = Table(title=f"serving under wrk, {run}, {seconds:g} s per case — {started:%Y-%m-%d %H:%M} UTC, "
                        f"{_machine()}; load average before {load_before}, after {load_after}")
    for column in ("server", "proto", "rows/req", "conns", "req/s", "rows/s", "p50 ms", "p99 ms", "errors",
                   "× (a) req/s", "p99 ÷ (a)", "% of (b)"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for r in results:
        a = by_case.get((SKLEARN_LIKE, r.protocol, r.batch, r.connections))
        b = by_case.get((NOOP, r.protocol, r.batch, r.connections))
        table.add_row(r.server, r.protocol, str(r.batch), str(r.connections), f"{r.rps:,.0f}", f"{r.rows_per_s:,.0f}",
                      f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}", str(r.errors),
                      f"{r.rps / a.rps:.1f}" if a and a.rps else "–",
                      f"{r.p99_ms / a.p99_ms:.2f}" if a and a.p99_ms else "–",
                      f"{100 * r.rps / b.rps:.0f} %" if b and b.rps else "–")
    console.print(table)
    for server, note in notes.items():
        console.print(f"{server}: {note}")
    targets = Table(title=f"single-row targets (issue 15), {run}: ≥ 10× (a)'s req/s, p99 ≤ ¼ of (a)'s, ≥ 50 % of (b)'s "
                          "req/s")
    for column in ("server", "proto", "conns", "× (a)", "p99 ÷ (a)", "% of (b)", "met"):
        targets.add_column(column)
    for r in results:
        if r.batch != 1 or r.server in (SKLEARN_LIKE, NOOP):
            continue
        a = by_case[SKLEARN_LIKE, r.protocol, 1, r.connections]
        b = by_case[NOOP, r.protocol, 1, r.connections]
        checks = (r.rps >= 10 * a.rps, r.p99_ms <= a.p99_ms / 4, r.rps >= b.rps / 2)
        targets.add_row(r.server, r.protocol, str(r.connections), f"{r.rps / a.rps:.1f}", f"{r.p99_ms / a.p99_ms:.2f}",
                        f"{100 * r.rps / b.rps:.0f} %",
                        "all" if all(checks) else "no: " + ", ".join(
                            name for name, ok in zip(("×10", "p99/4", "50 % of (b)"), checks) if not ok))
    console.print(targets)


if __name__ == "__main__":
    main()
