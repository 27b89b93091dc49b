"""The whole path for a multi-class and a regression model, as `driftloop demo --task` runs it (small data):
a CT run under kfp.local registers v1, the gateway serves it, the monitor's windows see the drift and the
delayed labels (realised quality in the task's terms), a drift-triggered retrain registers v2, and its canary is
judged on the task's quality metric before it is promoted. The binary loop is tests/integration/test_closed_loop.py.
"""

from __future__ import annotations

import json

import pytest

from driftloop import synthetic
from driftloop.registry import open_registry
from driftloop.tasks import MULTICLASS, QUALITY_METRIC, QUALITY_REPORTED, REGRESSION, default_gate_metric

from ..conftest import run_cli


@pytest.mark.parametrize("task", [MULTICLASS, REGRESSION])
def test_a_multiclass_and_a_regression_model_go_round_the_same_loop(task, tmp_path) -> None:
    result = run_cli("demo", "--task", task, "--home", str(tmp_path), "--rows", "1500", "--clean-rows", "600",
                     "--window-rows", "300", "--rate", "40", "--timeout", "240", "--json", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    model = synthetic.MODEL_NAMES[task]
    assert (summary["model"], summary["task"], summary["outcome"], summary["promoted_version"]) == \
        (model, task, "promoted", 2)

    # Every number is the task's: the versions by its gate metric, the windows by its realised quality.
    gate_metric = default_gate_metric(task)
    versions = {v["version"]: v for v in summary["versions"]}
    assert summary["metrics"][0] == gate_metric and "roc_auc" not in versions[1]
    assert all(isinstance(v[gate_metric], float) for v in versions.values())
    labelled = [e["text"] for e in summary["events"] if e["source"] == "monitor" and " labels → " in e["text"]]
    assert labelled and all(all(f"{name} " in line for name in QUALITY_REPORTED[task]) for line in labelled)

    registry = open_registry(str(tmp_path / "registry"))
    assert registry.aliases(model) == {"production": 2}
    v2 = registry.get_version(model, 2)
    assert v2.lineage["parent_version"] == 1 and v2.lineage["triggered_by"].startswith("drift:")
    history = registry.history(model)
    actions = [e.action for e in history]
    (triggered,) = [e for e in history if e.action == "retrain-triggered"]
    after = actions[actions.index("retrain-triggered"):]
    order = [after.index(a) for a in ("retrain-triggered", "register", "deploy-canary", "rollout-analysis", "promote")]
    assert order == sorted(order)
    # The canary was judged on the task's realised quality against production's.
    promote = history[actions.index("promote", actions.index("deploy-canary"))]
    assert f"quality: canary {QUALITY_METRIC[task]}" in json.dumps(promote.evidence)
    # v2's reference is the new world: against it, the windows it serves drift far less than those that
    # triggered (a 300-row window's share is noisy: one may cross the threshold alone), and nothing retrains.
    triggering = [w["drift_share"] for w in triggered.evidence["windows"]]
    watched = [w["drift_share"] for w in summary["after_promotion"]]
    assert watched and max(watched) < min(triggering) - 0.2, (watched, triggering)
    assert summary["retrains_after_promotion"] == 0
