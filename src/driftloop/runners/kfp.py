"""CT runs on Kubeflow Pipelines, with the same client as ``driftloop submit``."""

from __future__ import annotations

from driftloop.ct_params import CTParams
from driftloop.runners.base import RunOutcome, StartedRun


class KfpRunner:
    """Starts the CT pipeline on Kubeflow Pipelines with the same client as ``driftloop submit``."""

    def __init__(self, host: str, registry_uri: str, namespace: str | None = None,
                 experiment: str | None = None) -> None:
        from driftloop.kfp_submit import KfpSettings

        self.settings = KfpSettings.from_env(host=host, namespace=namespace, experiment=experiment)
        self.registry_uri = registry_uri
        self._runs: dict[str, str] = {}

    def start(self, params: CTParams, key: str) -> StartedRun:
        from driftloop.kfp_submit import submit_run

        run = submit_run(self.settings, params, self.registry_uri, run_name=f"driftloop-retrain-{key}")
        self._runs[key] = run.run_id
        return StartedRun(run.run_id, run.run_url or run.run_id)

    def attach(self, key: str, run_id: str) -> bool:
        if not run_id:
            return False
        self._runs[key] = run_id  # KFP keeps the run; polling it works from any process
        return True

    def poll(self, key: str) -> RunOutcome | None:
        from driftloop.kfp_submit import run_state

        state = run_state(self.settings, self._runs[key])
        if state not in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"):
            return None
        del self._runs[key]
        return RunOutcome("SUCCEEDED" if state == "SUCCEEDED" else "FAILED",
                          "" if state == "SUCCEEDED" else f"KFP run ended {state}")


