"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
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
