"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The suite runs three workers on two cores, and every CLI, pipeline task and server it starts is a process of
# its own: OpenMP pools (histogram gradient boosting, XGBoost) spin-wait on such busy cores and a 1-second fit
# takes 40. One native thread per process, inherited by every child (a user's machine keeps its default).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _signing_key_of_the_session(tmp_path_factory) -> Iterator[Path]:
    """Every registry the tests write (in this process and in the processes it starts) signs with one key
    made for the session, never the user's ~/.config/driftloop/signing-key; no reader trust leaks in."""
    from driftloop.signing import SigningKey

    path = tmp_path_factory.mktemp("signing") / "signing-key"
    path.write_bytes(SigningKey.generate().private_pem())
    path.chmod(0o600)
    names = ("DRIFTLOOP_SIGNING_KEY", "DRIFTLOOP_SIGNING_KEY_FILE", "DRIFTLOOP_VERIFY_KEY", "DRIFTLOOP_VERIFY_KEY_FILE",
             "DRIFTLOOP_TRUSTED_KEY_IDS", "DRIFTLOOP_REQUIRE_SIGNATURES")
    saved = {name: os.environ.pop(name, None) for name in names}
    os.environ["DRIFTLOOP_SIGNING_KEY_FILE"] = str(path)
    try:
        yield path
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port where connections are refused for as long as the block runs: bound and not listening, so
    a server a test in another worker starts cannot take it (a port that was merely free could be)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> CliResult:
    """Runs ``python -m driftloop ARGS`` as a user would, in a fresh process."""
    completed = subprocess.run(
        [sys.executable, "-m", "driftloop", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=REPO_ROOT,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


@dataclass
class S3Server:
    """An S3-compatible server (moto) on 127.0.0.1 and the settings to reach it."""

    endpoint: str
    env: dict[str, str]

    def settings(self):
        from driftloop.storage import S3Settings

        return S3Settings.from_env(self.env)


class _SerialMotoServer:
    """moto's S3 on 127.0.0.1, answering one request at a time.

    moto implements conditional writes (If-None-Match) as check-then-set; handling requests one by
    one makes them atomic, as they are on MinIO and AWS S3, so concurrency tests judge our code and
    not the stand-in's races.
    """

    def __init__(self, port: int) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server("127.0.0.1", port, app, threaded=False, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    port = free_port()
    server = _SerialMotoServer(port)
    server.start()
    env = {
        "DRIFTLOOP_S3_ENDPOINT": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "driftloop-test-key",
        "AWS_SECRET_ACCESS_KEY": "driftloop-test-secret-do-not-log",
        "AWS_REGION": "us-east-1",
    }
    try:
        yield S3Server(f"127.0.0.1:{port}", env)
    finally:
        server.stop()


class ServerThread:
    """An ASGI app served by uvicorn on 127.0.0.1 in a background thread (``http``: uvicorn's HTTP protocol, e.g. a
    monitor's ``http_protocol()``, as ``driftloop monitor`` runs it)."""

    def __init__(self, app, http=None) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        from driftloop.http_server import UVICORN_OPTIONS

        options = {**UVICORN_OPTIONS, **({"http": http} if http is not None else {})}  # as the services run
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, **options))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        import time

        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def register_trained(registry, workdir: Path, frame, name: str = "churn", seed: int = 1, actor: str = "test",
                     lineage: dict | None = None, target: str | None = None, estimator: str = "logistic_regression"):
    """Trains a Pipeline on a table (default: a synthetic churn table, logistic regression) and registers it as the
    CT pipeline would: spec, profile, reference sample, holdout metrics and the training data's URI in lineage.
    ``target`` names another table's target (its task inferred from it), ``estimator`` one that fits it."""
    import io

    from driftloop import synthetic
    from driftloop.data import infer_spec
    from driftloop.evaluation import evaluate_model
    from driftloop.profile import build_profile
    from driftloop.training import save_model, train_model
    from driftloop.validation import validate_table

    spec = (infer_spec(frame, synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN) if target is None
            else infer_spec(frame, target))
    clean, _, spec = validate_table(frame, spec)
    tag = uuid.uuid4().hex[:8]
    model_dir, data_path = workdir / f"model-{tag}", workdir / f"train-{tag}.parquet"
    frame.to_parquet(data_path, index=False)
    trained = train_model(clean, spec, estimator, seed=seed)
    save_model(trained.model, model_dir)
    sample = io.BytesIO()
    clean.sample(n=min(len(clean), 2000), random_state=0).to_parquet(sample, index=False)
    metrics = evaluate_model(trained.model, trained.holdout_frame, spec).metrics
    return registry.register(
        name, model_dir, model_format="sklearn", lineage={"data_uri": str(data_path), **(lineage or {})},
        metrics=metrics,
        attachments={"spec.json": spec.to_json().encode(), "profile.json": build_profile(clean, spec).to_json().encode(),
                     "reference_sample.parquet": sample.getvalue()}, actor=actor)


def promoted_churn(root: Path, rows: int):
    """A local registry under ``root`` with churn v1 trained on ``rows`` synthetic rows (seed 1) and in production;
    returns the registry, the table and the features v1 is served with."""
    from driftloop import synthetic
    from driftloop.registry import LocalRegistry
    from driftloop.serving.versions import ServedVersion

    registry = LocalRegistry(root / "registry")
    frame = synthetic.generate(rows, seed=1)
    register_trained(registry, root, frame)
    registry.promote("churn", 1, actor="test")
    return registry, frame, ServedVersion.load(registry, "churn", 1).spec.feature_names


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory):
    """A real Prometheus on 127.0.0.1 scraping file_sd targets, shared by the session (tests/prometheus_server.py)."""
    from tests.prometheus_server import prometheus_session

    yield from prometheus_session(tmp_path_factory)
