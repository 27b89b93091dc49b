"""Governance on the local backend: a real gateway on 127.0.0.1, real rollouts through the deploy step, and the
decisions an operator takes with `driftloop models policy | pending | approve | reject`."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from driftloop import steps, synthetic
from driftloop.deploy.approval import expire_pending
from driftloop.deploy.local import LocalDeployment
from driftloop.registry import CANARY, PRODUCTION, LocalRegistry
from driftloop.serving.gateway import Gateway

from ..conftest import ServerThread, register_trained, run_cli

FEATURES_TO_DROP = [synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN]
# One observed step at 50 %, then the decision; latency between two equal models on 2 busy cores jitters.
ROLLOUT = {"rollout_interval": 0.6, "rollout_policy": {"steps": [50, 100], "min_requests": 5, "max_latency_ratio": 4.0}}


@pytest.fixture
def world(tmp_path) -> dict:
    """v1 in production behind a gateway under steady traffic; v2 registered by 'carol' from a run that 'dave'
    triggered (lineage's triggered_by)."""
    registry = LocalRegistry(tmp_path / "registry")
    frame = synthetic.generate(600, seed=1)
    register_trained(registry, tmp_path, frame)
    registry.promote("churn", 1, actor="test")
    register_trained(registry, tmp_path, synthetic.generate(600, seed=2), actor="carol",
                     lineage={"triggered_by": "dave"})
    gateway = Gateway(registry, poll_interval=0.1)
    rows = json.loads(frame.drop(columns=FEATURES_TO_DROP).head(20).to_json(orient="records"))
    with ServerThread(gateway.app) as server, _Traffic(server.url, rows) as traffic:
        yield {"registry": registry, "gateway": server.url, "traffic": traffic, "tmp": tmp_path,
               "cli": ["--registry", str(registry.root), "--home", str(tmp_path)]}


class _Traffic:
    """Steady V1 requests; the versions that answered since the last :meth:`reset`."""

    def __init__(self, url: str, rows: list[dict]) -> None:
        self.url, self.rows = url, rows
        self.versions: set[str] = set()
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def reset(self) -> None:
        self.versions = set()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            i = 0
            while not self._stop.is_set():
                response = client.post("/v1/models/churn:predict", json={"instances": [self.rows[i % len(self.rows)]]})
                if response.status_code != 200:
                    self.failures += 1
                self.versions.add(response.headers.get("x-driftloop-model-version"))
                i += 1


def _deploy(world: dict, version: int) -> steps.DeployResult:
    return steps.deploy(str(world["registry"].root), "churn", version, actor="ct-pipeline", canary_percent=10,
                        rollout_gateway=world["gateway"], **ROLLOUT)


def _models(world: dict, *args: str):
    return run_cli("models", *args, *world["cli"])


def _served_after_change(world: dict) -> set[str]:
    """The versions that answer once the gateway has followed the registry (it polls every 0.1 s)."""
    time.sleep(0.5)
    world["traffic"].reset()
    time.sleep(1.0)
    return set(world["traffic"].versions)


def test_a_passing_canary_waits_for_a_second_person_and_is_promoted_by_approve(world) -> None:
    registry = world["registry"]
    policy = _models(world, "policy", "churn", "--require-approval", "--approvers", "alice,carol,dave", "--four-eyes",
                     "--timeout", "24h", "--actor", "erin", "--json")
    assert policy.returncode == 0, policy.stderr
    assert json.loads(policy.stdout)["action"] == "approval-policy"

    result = _deploy(world, 2)
    assert (result.action, result.canary_percent) == ("pending-approval", 50), _trail(registry)
    assert registry.aliases("churn") == {PRODUCTION: 1, CANARY: 2}
    assert _served_after_change(world) == {"1", "2"}  # the canary keeps its share while it waits
    request = registry.history("churn")[-1]
    assert request.action == "approval-requested" and request.to_version == 2
    assert request.evidence["approval"]["registered_by"] == "carol"
    assert request.evidence["approval"]["triggered_by"] == "dave"
    assert [s["verdict"] for s in request.evidence["steps"]] == ["pass"]

    shown = _models(world, "pending", "churn")
    assert shown.returncode == 0, shown.stderr
    assert "churn v2 waits for approval beside v1" in shown.stdout and "rolled back in 23h 59m" in shown.stdout
    described = _models(world, "show", "churn").stdout
    assert "policy: approval required: by alice, carol, dave, four eyes; timeout 1d" in described
    assert "pending: churn v2 waits for approval" in described

    # The policy's refusals: one line, exit 2, nothing moves.
    refusals = {"carol": "four eyes: 'carol' registered churn v2; someone else must decide",
                "dave": "four eyes: 'dave' triggered churn v2; someone else must decide",
                "mallory": "'mallory' is not an approver of churn (approvers: alice, carol, dave)"}
    for actor, why in refusals.items():
        refused = _models(world, "approve", "churn", "2", "--reason", "looks fine", "--actor", actor)
        assert (refused.returncode, refused.stderr) == (2, f"driftloop: error: {why}\n")
    bypass = _models(world, "promote", "churn", "--actor", "alice")
    assert bypass.returncode == 2 and "churn requires approval" in bypass.stderr
    assert registry.aliases("churn") == {PRODUCTION: 1, CANARY: 2}

    approved = _models(world, "approve", "churn", "2", "--reason", "analysis and model card reviewed",
                       "--actor", "alice")
    assert approved.returncode == 0, approved.stderr
    assert registry.aliases("churn") == {PRODUCTION: 2}
    assert _served_after_change(world) == {"2"} and world["traffic"].failures == 0
    decision = registry.history("churn")[-1]
    assert (decision.action, decision.actor, decision.from_version, decision.to_version) == ("approve", "alice", 1, 2)
    assert decision.evidence["approval"]["verified"] is False  # --actor, no Kubernetes identity here
    assert decision.evidence["approval"]["identity"]["source"] == "declared"
    again = _models(world, "approve", "churn", "2", "--reason", "twice", "--actor", "alice")
    assert again.returncode == 2 and "churn v2 is not pending approval" in again.stderr
    assert registry.verify("churn") == []


def test_reject_takes_the_canary_out_and_a_timeout_rolls_it_back(world) -> None:
    registry = world["registry"]
    assert _models(world, "policy", "churn", "--require-approval", "--timeout", "1s").returncode == 0
    assert _deploy(world, 2).action == "pending-approval"
    rejected = _models(world, "reject", "churn", "2", "--reason", "fairness review failed", "--actor", "bob")
    assert rejected.returncode == 0, rejected.stderr
    assert registry.aliases("churn") == {PRODUCTION: 1}
    assert _served_after_change(world) == {"1"}
    entry = registry.history("churn")[-1]
    assert (entry.action, entry.actor, entry.from_version) == ("reject", "bob", 2)
    assert "rejected by bob: fairness review failed" in entry.reason

    # Waiting past the deadline: `models pending` (what a cron job runs) rolls the canary back.
    assert _deploy(world, 2).action == "pending-approval"
    assert registry.state("churn").pending_approval is not None
    time.sleep(1.1)
    swept = _models(world, "pending", "--json")
    assert swept.returncode == 0, swept.stderr
    report = json.loads(swept.stdout)
    assert report["pending"] == [] and [p["version"] for p in report["expired"]] == [2]
    assert registry.aliases("churn") == {PRODUCTION: 1} and registry.state("churn").pending_approval is None
    assert registry.history("churn")[-1].action == "approval-expired"
    assert _served_after_change(world) == {"1"} and world["traffic"].failures == 0

    # What the monitor calls every tick: nothing due, nothing done; due, rolled back through the port.
    assert _deploy(world, 2).action == "pending-approval"
    deployment = LocalDeployment(registry, "drift-monitor")
    assert expire_pending(deployment, "churn") is None
    assert expire_pending(deployment, "churn", now=time.time() + 2).version == 2
    expired = registry.history("churn")[-1]
    assert (expired.action, expired.actor) == ("approval-expired", "drift-monitor")
    assert registry.aliases("churn") == {PRODUCTION: 1}
    off = _models(world, "policy", "churn", "--off")
    assert off.returncode == 0 and "promotions need no approval" in off.stdout
    assert _deploy(world, 2).action == "promoted"
    assert [e.action for e in registry.history("churn")].count("approval-policy") == 2
    assert registry.verify("churn") == []


def _trail(registry) -> list[str]:
    return [f"{e.action}: {e.reason}" for e in registry.history("churn")]

