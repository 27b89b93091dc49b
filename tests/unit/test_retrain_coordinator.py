"""Trigger → retrain → outcome without HTTP or event ingestion: a real registry on a temporary directory,
a runner that implements the runner port in the test, and restarts (a new coordinator over the same
registry) at the moments a killed monitor would leave behind."""

from __future__ import annotations

import shutil

import pytest
from prometheus_client import generate_latest

from driftloop import synthetic
from driftloop.errors import DataError, DriftloopError
from driftloop.monitor.config import RetrainConfig, TriggerConfig
from driftloop.monitor.coordinator import RetrainCoordinator, RetrainState, resume
from driftloop.monitor.retrain import TrainingTable
from driftloop.monitor.windows import WindowRecord
from driftloop.registry import CANARY, LocalRegistry
from driftloop.runners import RunOutcome, StartedRun
from tests.conftest import register_trained

MINUTE = 60.0


@pytest.fixture(scope="module")
def registry_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("coordinator")
    registry = LocalRegistry(root / "registry")
    register_trained(registry, root, synthetic.generate(600, seed=1))
    registry.promote("churn", 1, actor="test")
    return root / "registry"


@pytest.fixture
def registry(registry_template, tmp_path) -> LocalRegistry:
    shutil.copytree(registry_template, tmp_path / "registry")
    return LocalRegistry(tmp_path / "registry")


class Runs:
    """What the CT pipeline's runs are doing, shared by the runners of successive monitor processes."""

    def __init__(self) -> None:
        self.outcomes: dict[str, RunOutcome | None] = {}


class InTestRunner:
    """The runner port: starts "runs" in ``runs``; ``reachable`` says whether a later process finds them."""

    def __init__(self, runs: Runs, reachable: bool = True) -> None:
        self.runs, self.reachable = runs, reachable
        self.following: set[str] = set()

    def start(self, params, key: str) -> StartedRun:
        assert params.triggered_by == f"drift:{key}" and params.model_name == "churn"
        self.runs.outcomes[key] = None
        self.following.add(key)
        return StartedRun(f"run-{key}", f"http://pipelines/run-{key}")

    def attach(self, key: str, run_id: str) -> bool:
        if self.reachable and run_id == f"run-{key}" and key in self.runs.outcomes:
            self.following.add(key)
            return True
        return False

    def poll(self, key: str) -> RunOutcome | None:
        assert key in self.following
        return self.runs.outcomes[key]


def table(model: str, version: int, key: str, since) -> TrainingTable:
    return TrainingTable(f"/tables/{key}.parquet", 1000, 200, "/tables/reference.parquet")


def blocked(model: str, version: int, key: str, since) -> TrainingTable:
    raise DataError("no labelled live traffic yet")


def coordinator(registry, runner=None, assemble=table, **trigger) -> RetrainCoordinator:
    config = TriggerConfig(**({"m": 1, "n": 1, "cooldown_seconds": 0, "max_failures": 3} | trigger))
    return RetrainCoordinator(registry, config, RetrainConfig(runner="none"), runner, assemble)


def drifted(window_id: int) -> WindowRecord:
    return WindowRecord(id=window_id, model="churn", opened_at=window_id * MINUTE, closed_at=(window_id + 1) * MINUTE,
                        n_rows=500, reference_version=1, rows_by_version={"1": 500}, drift_share=0.6,
                        dataset_drift=True)


def actions(registry) -> list[str]:
    return [e.action for e in registry.history("churn") if e.action.startswith("retrain-")]


def register_for(registry, tmp_path, key: str) -> int:
    """What the retrain's run does: registers a version whose lineage names its trigger."""
    from driftloop.data import infer_spec
    from driftloop.training import save_model, train_model
    from driftloop.validation import validate_table

    frame = synthetic.generate(600, seed=3)
    spec = infer_spec(frame, synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN)
    clean, _, spec = validate_table(frame, spec)
    save_model(train_model(clean, spec, "logistic_regression", seed=3).model, tmp_path / "retrained")
    return registry.register("churn", tmp_path / "retrained", model_format="sklearn",
                             lineage={"triggered_by": f"drift:{key}"}, metrics={},
                             attachments={"spec.json": spec.to_json().encode()}, actor="ct-pipeline").version


def test_a_running_retrain_is_followed_again_after_a_restart_and_judged_by_its_rollout(registry, tmp_path) -> None:
    runs = Runs()
    first = coordinator(registry, InTestRunner(runs), cooldown_seconds=3600)
    decision = first.on_window("churn", 1, drifted(1), [], now=1000.0)
    retrain = first.retrains("churn")[-1]
    assert decision.triggers and retrain.state == RetrainState.RUNNING and retrain.run_id == f"run-{retrain.key}"
    # The monitor is killed; the run goes on, registers v2 and leaves it as a canary.
    after = coordinator(registry, InTestRunner(runs), cooldown_seconds=3600)
    restored = after.retrains("churn")[-1]
    assert (restored.key, restored.state, restored.run_id) == (retrain.key, RetrainState.RUNNING, retrain.run_id)
    policy = after.policy("churn")
    assert (policy.in_flight, policy.last_trigger_at) == (retrain.key, 1000.0)
    assert after.on_window("churn", 1, drifted(2), [], now=1060.0).action == "in-flight"
    version = register_for(registry, tmp_path, retrain.key)
    registry.set_alias("churn", CANARY, version, actor="ct-pipeline")
    runs.outcomes[retrain.key] = RunOutcome("SUCCEEDED")
    after.tick(now=1200.0)
    assert (restored.state, restored.version, restored.finished_at) == (RetrainState.CANARY, version, 1200.0)
    assert actions(registry) == ["retrain-triggered", "retrain-refused", "retrain-finished"]
    assert 'driftloop_rollouts_total{model="churn",outcome="canary"} 1.0' in generate_latest(after.metrics.registry).decode()
    # The cooldown counts from the trigger before the restart; a canary still serving is no failure.
    assert after.on_window("churn", 1, drifted(3), [], now=1300.0).action == "cooldown"
    assert after.policy("churn").consecutive_failures == 0


def test_a_retrain_whose_run_cannot_be_found_after_a_restart_is_recorded_once_as_interrupted(registry) -> None:
    runs = Runs()
    first = coordinator(registry, InTestRunner(runs))
    first.on_window("churn", 1, drifted(1), [], now=1000.0)
    lost = coordinator(registry, InTestRunner(runs, reachable=False))  # e.g. the machine went with the monitor
    retrain = lost.retrains("churn")[-1]
    assert retrain.state == RetrainState.FAILED and "interrupted" in retrain.error
    finished = [e for e in registry.history("churn") if e.action == "retrain-finished"]
    assert len(finished) == 1 and finished[0].evidence["interrupted"] is True
    again = coordinator(registry, InTestRunner(runs, reachable=False))
    assert actions(registry) == ["retrain-triggered", "retrain-finished"]  # nothing recorded twice
    assert again.policy("churn").consecutive_failures == 1 and again.policy("churn").in_flight is None


def test_stopped_after_k_failures_survives_restarts_until_resumed(registry) -> None:
    first = coordinator(registry, assemble=blocked, max_failures=2)
    assert [first.on_window("churn", 1, drifted(i), [], now=i * MINUTE).action for i in (1, 2, 3)] == \
        ["trigger", "trigger", "stopped"]
    restarted = coordinator(registry, assemble=blocked, max_failures=2)
    policy = restarted.policy("churn")
    assert policy.stopped and policy.last_trigger_at == 2 * MINUTE
    assert restarted.on_window("churn", 1, drifted(4), [], now=4 * MINUTE).action == "stopped"
    assert actions(registry) == ["retrain-blocked", "retrain-blocked", "retrain-stopped"]
    assert [r.state for r in restarted.retrains("churn")] == [RetrainState.BLOCKED, RetrainState.BLOCKED]
    resume(registry, "churn", actor="operator", reason="reference data restored")  # what `monitor resume` does
    restarted.assemble = table
    assert restarted.on_window("churn", 1, drifted(5), [], now=5 * MINUTE).triggers  # the running one sees it
    assert coordinator(registry).policy("churn").consecutive_failures == 0  # and so does the next start
    with pytest.raises(DriftloopError, match="not stopped"):
        resume(registry, "churn", actor="operator", reason="again")


def test_retrains_pending_approval_reach_the_timeout_hook_each_tick(registry) -> None:
    class Expiring(RetrainCoordinator):
        seen: list = []

        def expire_pending(self, pending, now):
            self.seen.append([r.key for r in pending])
            for retrain in pending:
                self.settle(retrain, RetrainState.ROLLED_BACK, now, reason="approval timed out")

    runs = Runs()
    hub = Expiring(registry, TriggerConfig(m=1, n=1, cooldown_seconds=0), RetrainConfig(runner="none"),
                   InTestRunner(runs), table)
    hub.on_window("churn", 1, drifted(1), [], now=1000.0)
    retrain = hub.retrains("churn")[-1]
    hub.settle(retrain, RetrainState.PENDING_APPROVAL, 1100.0)  # what a run ending "pending approval" leaves
    assert hub.policy("churn").consecutive_failures == 0
    hub.tick(now=1200.0)
    hub.tick(now=1300.0)
    assert hub.seen == [[retrain.key]] and retrain.state == RetrainState.ROLLED_BACK
    assert hub.policy("churn").consecutive_failures == 1
    assert coordinator(registry).retrains("churn")[-1].state == RetrainState.ROLLED_BACK
