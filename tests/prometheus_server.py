"""A real Prometheus (Debian's /usr/bin/prometheus) on 127.0.0.1 for tests, and endpoints for it to scrape.

:func:`running_prometheus` starts one with a temporary TSDB, ``scrape_interval: 1s`` and one scrape job
whose targets come from file_sd JSON files in ``targets_dir`` (``*.json``), each in Prometheus' file_sd
format: ``[{"targets": ["127.0.0.1:PORT"], "labels": {"namespace": ..., "revision": ..., "pod": ...}}]``.
A test (or an emulated cluster) publishes its targets under a name of its own, so tests sharing one
server do not overwrite each other's targets. The session fixture ``prometheus`` (tests/conftest.py)
shares one server between all tests. Prometheus' discovery passes target changes on every 5 s, so
publish a test's targets together and wait for them once (:meth:`PrometheusServer.wait_for_targets_up`).

:class:`ExporterServer` serves Prometheus text from callables on 127.0.0.1, one path per emulated pod,
and counts the scrapes it answers, so a test knows when Prometheus has seen what it drove.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

PROMETHEUS_BINARY = "/usr/bin/prometheus"
SCRAPE_INTERVAL_S = 1
START_TIMEOUT_S = 30
JOB = "driftloop-test"


@dataclass
class PrometheusServer:
    """A running Prometheus and where its targets are published."""

    url: str
    targets_dir: Path
    log_path: Path
    scrape_interval: float = SCRAPE_INTERVAL_S

    def publish_targets(self, name: str, groups: list[dict]) -> Path:
        """Writes ``<targets_dir>/<name>.json`` atomically (Prometheus watches the directory)."""
        path = self.targets_dir / f"{name}.json"
        partial = self.targets_dir / f".{name}.json.partial"  # not matched by *.json while being written
        partial.write_text(json.dumps(groups))
        os.replace(partial, path)
        return path

    def withdraw_targets(self, name: str) -> None:
        (self.targets_dir / f"{name}.json").unlink(missing_ok=True)

    def query(self, promql: str) -> list[dict]:
        """The result of an instant query at the current time (for tests' own checks)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"query {promql} failed: {body}")
        return body["data"]["result"]

    def wait_for_targets_up(self, scrape_urls: set[str], timeout: float = 30) -> None:
        """Waits until Prometheus has discovered each URL and scraped it successfully."""
        deadline = time.monotonic() + timeout
        while True:
            active = httpx.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=10).json()
            up = {t["scrapeUrl"] for t in active["data"]["activeTargets"] if t["health"] == "up"}
            if scrape_urls <= up:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"targets not up after {timeout} s: {sorted(scrape_urls - up)}")
            time.sleep(0.2)


def prometheus_available() -> bool:
    return Path(PROMETHEUS_BINARY).is_file() and os.access(PROMETHEUS_BINARY, os.X_OK)


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies, even by SIGKILL or os._exit
    (pytest-timeout's thread method), so no Prometheus outlives its test run."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _config(targets_dir: Path) -> dict:
    interval = f"{SCRAPE_INTERVAL_S}s"
    return {
        # scrape_timeout defaults to 10s, which Prometheus refuses when it exceeds the interval
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "scrape_configs": [{
            "job_name": JOB,
            # fsnotify picks up new files at once; the refresh is the fallback
            "file_sd_configs": [{"files": [str(targets_dir / "*.json")], "refresh_interval": interval}],
        }],
    }


@contextmanager
def running_prometheus(workdir: Path) -> Iterator[PrometheusServer]:
    """Starts Prometheus on a free port of 127.0.0.1 and stops it on exit, whatever happened inside."""
    if not prometheus_available():
        raise RuntimeError(f"{PROMETHEUS_BINARY} is not installed")
    targets_dir, tsdb = workdir / "targets", workdir / "tsdb"
    targets_dir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(json.dumps(_config(targets_dir)))  # JSON is YAML, and needs no quoting of odd paths
    log_path = workdir / "prometheus.log"
    process, url = None, ""
    try:
        for _attempt in range(3):  # the free port may be taken between choosing and binding it
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    [PROMETHEUS_BINARY, f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
                     f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                )
            if _wait_ready(process, url):
                break
            process = None
        else:
            raise RuntimeError(f"Prometheus did not start; its log:\n{log_path.read_text()[-3000:]}")
        yield PrometheusServer(url, targets_dir, log_path)
    finally:
        if process is not None:
            _stop(process)


def _wait_ready(process: subprocess.Popen, url: str) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    _stop(process)
    return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def prometheus_session(tmp_path_factory) -> Iterator[PrometheusServer]:
    """The body of the session fixture ``prometheus`` (tests/conftest.py); skips when Prometheus is absent."""
    if not prometheus_available():
        pytest.skip(f"{PROMETHEUS_BINARY} is not installed (Debian: apt-get install prometheus; .ci/run does)")
    with running_prometheus(tmp_path_factory.mktemp("prometheus")) as server:
        yield server


class ExporterServer:
    """Prometheus text on 127.0.0.1, one path per emulated pod, rendered by a callable at each scrape.

    Rendering and :meth:`driving` share a lock, so a scrape sees all or nothing of what a test drives.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._pages: dict[str, Callable[[], str]] = {}
        self._scrapes: dict[str, int] = {}
        self._lock = threading.Condition()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with exporter._lock:
                    render = exporter._pages.get(self.path)
                    body = render().encode() if render else b""
                    if render:
                        exporter._scrapes[self.path] += 1
                        exporter._lock.notify_all()
                self.send_response(200 if render else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def serve(self, path: str, render: Callable[[], str]) -> str:
        """Serves ``render()`` at ``path``; returns the URL Prometheus will scrape."""
        with self._lock:
            self._pages[path] = render
            self._scrapes.setdefault(path, 0)
        return f"http://{self.address}{path}"

    @contextmanager
    def driving(self) -> Iterator[None]:
        """Holds scrapes off while a test changes what the pages show."""
        with self._lock:
            yield

    def wait_scrapes(self, count: int, timeout: float = 30) -> None:
        """Waits until every served path has answered ``count`` more scrapes.

        Prometheus scrapes a target, stores the sample, then waits for its next tick, so once a path has
        answered a scrape that started after some moment, every earlier answer is stored: two more
        scrapes mean the first one that can have seen the test's change is queryable.
        """
        with self._lock:
            start = dict(self._scrapes)
            done = self._lock.wait_for(lambda: all(self._scrapes[p] >= start[p] + count for p in start), timeout)
        if not done:
            raise AssertionError(f"Prometheus did not scrape every exporter path {count} times in {timeout} s")

    def __enter__(self) -> ExporterServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

