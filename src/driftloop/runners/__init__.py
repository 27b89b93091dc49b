"""Every way of running the CT pipeline, behind one port (:mod:`driftloop.runners.base`)."""

from __future__ import annotations

from pathlib import Path

from driftloop.runners.base import Runner, RunOutcome, StartedRun

__all__ = ["RunOutcome", "Runner", "StartedRun", "make_runner"]


def make_runner(kind: str, home: Path, registry_uri: str, *, kfp_host: str = "", kfp_namespace: str | None = None,
                experiment: str | None = None) -> Runner | None:
    """The runner named ``kind``: "local" (kfp.local in a child process), "kfp" (Kubeflow Pipelines) or "none"."""
    if kind == "kfp":
        from driftloop.runners.kfp import KfpRunner

        return KfpRunner(kfp_host, registry_uri, kfp_namespace, experiment)
    if kind == "local":
        from driftloop.runners.child import ChildProcessRunner

        return ChildProcessRunner(home, registry_uri)
    return None
