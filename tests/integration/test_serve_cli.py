"""`driftloop serve`, `rollout` and `deploy --target local` as processes, the way an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from driftloop import synthetic
from driftloop.registry import CANARY, PRODUCTION, LocalRegistry

from ..conftest import REPO_ROOT, free_port, register_trained, run_cli


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("serve-home")
    registry = LocalRegistry(home / "registry")
    for seed in (1, 2):
        register_trained(registry, home, synthetic.generate(500, seed=seed, covariate_shift=0.5 * (seed - 1)))
    registry.promote("churn", 1, actor="test")
    return home


def _listening_addresses(port: int) -> set[str]:
    """Local addresses bound to ``port``, from /proc/net/tcp (LISTEN = state 0A)."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":
            addresses.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return addresses


def test_serve_binds_loopback_and_answers(home) -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "driftloop", "serve", "--home", str(home), "--port", str(port)],
                               cwd=REPO_ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "gateway did not start"
            time.sleep(0.3)
        assert _listening_addresses(port) == {"127.0.0.1"}
        row = synthetic.generate(1, seed=5).drop(columns=[synthetic.TARGET, synthetic.ID_COLUMN,
                                                          synthetic.TIMESTAMP_COLUMN])
        body = f'{{"instances": {row.to_json(orient="records")}}}'
        url = f"http://127.0.0.1:{port}/v1/models/churn:predict"
        # `curl -d` sends a form content type, as a web page may without asking: refused (http_guard.Guard).
        form = httpx.post(url, content=body, headers={"content-type": "application/x-www-form-urlencoded"})
        response = httpx.post(url, content=body, headers={"content-type": "application/json"})
        assert form.status_code == 415 and "application/json" in form.json()["error"]
        assert response.status_code == 200 and response.headers["x-driftloop-model-version"] == "1"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_deploy_local_and_rollout_abort(home) -> None:
    registry = LocalRegistry(home / "registry")
    deployed = run_cli("deploy", "churn", "--version", "2", "--canary-percent", "20", "--home", str(home))
    assert deployed.returncode == 0, deployed.stderr
    assert "churn: v1 80%, v2 20%" in deployed.stdout
    assert registry.state("churn").canary_percent == 20 and registry.aliases("churn")[CANARY] == 2
    aborted = run_cli("rollout", "churn", "--abort", "--home", str(home))
    assert aborted.returncode == 0 and "canary removed; churn: v1 100%" in aborted.stdout
    assert registry.aliases("churn") == {PRODUCTION: 1}
    unreachable = run_cli("rollout", "churn", "--gateway", f"http://127.0.0.1:{free_port()}", "--home", str(home))
    assert unreachable.returncode == 1 and "Traceback" not in unreachable.stderr  # ran, and failed
    assert "cannot read the gateway's metrics" in unreachable.stderr
