"""What following the registry costs: a poll of a model's aliases (what the gateway does every second and the
monitor on every event) against a trail of N audit entries, before and after incremental reads.

For each backend (a local directory; S3 through moto on 127.0.0.1, behind a counting proxy) and trail length:
- replay (before): reading the whole trail and folding it, as every poll did before #11;
- cold start: the first poll of a new reader (reads everything and checks every signature once);
- poll, nothing new / poll, 1 new entry: a warmed reader's ``state()``.
Columns give the median time of 5 polls and, per poll, S3 requests (LIST / GET) or bytes read locally
(``rchar`` of /proc/self/io).

    .venv/bin/python bench/bench_registry_reads.py [--sizes 100,1000,5000] [--s3-sizes 100,500]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # tests.s3_proxy and the test S3 server
NAME = "churn"
REPEATS = 5


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def _measure(poll, proxy=None) -> tuple[float, str]:
    times, costs = [], []
    for _ in range(REPEATS):
        if proxy is not None:
            proxy.clear()
        before = _rchar()
        start = time.perf_counter()
        poll()
        times.append(time.perf_counter() - start)
        if proxy is not None:
            costs.append(f"{proxy.count('GET', query_contains='list-type=2')} LIST / "
                         f"{proxy.count('GET', '/audit/')} GET")
        else:
            costs.append(f"{(_rchar() - before) / 1024:.1f} KiB")
    return statistics.median(times) * 1000, costs[-1]


def _fill(writer, size: int, workdir: Path) -> None:
    source = workdir / uuid.uuid4().hex
    source.mkdir()
    (source / "model.joblib").write_bytes(b"model")
    writer.register(NAME, source, model_format="sklearn", lineage={}, metrics={}, attachments={}, actor="bench")
    writer.promote(NAME, 1, actor="bench")
    for i in range(size - 2):
        writer.record(NAME, "window-closed", actor="monitor", reason=f"window {i}", evidence={"drift_share": 0.1})


def _rows(backend: str, size: int, writer, reader_factory, proxy=None) -> list[str]:
    from driftloop.registry import replay

    reader = reader_factory()
    cold_start = time.perf_counter()
    reader.state(NAME)
    cold = (time.perf_counter() - cold_start) * 1000
    full_ms, full_cost = _measure(lambda: replay(reader._read_trail(NAME, None).entries), proxy)
    idle_ms, idle_cost = _measure(lambda: reader.state(NAME), proxy)

    new_times, new_cost = [], ""
    for _ in range(REPEATS):
        writer.record(NAME, "window-closed", actor="monitor")
        if proxy is not None:
            proxy.clear()
        before = _rchar()
        start = time.perf_counter()
        reader.state(NAME)
        new_times.append(time.perf_counter() - start)
        new_cost = (f"{proxy.count('GET', query_contains='list-type=2')} LIST / {proxy.count('GET', '/audit/')} GET"
                    if proxy is not None else f"{(_rchar() - before) / 1024:.1f} KiB")
    new_ms = statistics.median(new_times) * 1000
    return [backend, f"{size:,}", f"{full_ms:.1f} ms ({full_cost})", f"{cold:.0f} ms", f"{idle_ms:.2f} ms ({idle_cost})",
            f"{new_ms:.2f} ms ({new_cost})"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="trail lengths, local directory")
    parser.add_argument("--s3-sizes", default="100,500", help="trail lengths, S3 (one request per entry to fill)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    s3_sizes = [int(s) for s in args.s3_sizes.split(",")]

    from driftloop.registry import LocalRegistry
    from driftloop.registry.s3 import S3Registry
    from driftloop.signing import SigningKey
    from driftloop.storage import S3Settings
    from tests.conftest import _SerialMotoServer, free_port
    from tests.s3_proxy import S3Proxy

    table = Table(title="a poll of the aliases against a trail of N entries (median of 5)")
    for column in ("backend", "entries", "replay (before)", "cold start", "poll, nothing new", "poll, 1 new entry"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-") as tmp:
        workdir = Path(tmp)
        key_file = workdir / "signing-key"
        key_file.write_bytes(SigningKey.generate().private_pem())
        os.environ["DRIFTLOOP_SIGNING_KEY_FILE"] = str(key_file)
        for size in sizes:
            root = workdir / f"local-{size}"
            writer = LocalRegistry(root)
            _fill(writer, size, workdir)
            table.add_row(*_rows("local", size, writer, lambda root=root: LocalRegistry(root)))

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
        port = free_port()
        server = _SerialMotoServer(port)
        server.start()
        env = {"DRIFTLOOP_S3_ENDPOINT": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_REGION": "us-east-1"}
        direct = S3Settings.from_env(env)
        direct.client().make_bucket("bench")
        try:
            with S3Proxy(f"127.0.0.1:{port}") as proxy:
                proxied = S3Settings.from_env({**env, "DRIFTLOOP_S3_ENDPOINT": f"http://{proxy.endpoint}"})
                for size in s3_sizes:
                    uri = f"s3://bench/registry-{size}"
                    writer = S3Registry(uri, direct)
                    _fill(writer, size, workdir)
                    table.add_row(*_rows("s3 (moto)", size, writer, lambda uri=uri: S3Registry(uri, proxied), proxy))
        finally:
            server.stop()
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
