"""The runner port: how a CT run is started and followed, whatever runs it.

Three ways, one interface (start, poll, attach): :mod:`driftloop.runners.local` runs the pipeline in this process
on ``kfp.local`` (``driftloop run``); :class:`~driftloop.runners.child.ChildProcessRunner` runs that in a child
process the caller watches (the drift monitor's local retrains); :class:`~driftloop.runners.kfp.KfpRunner`
submits it to Kubeflow Pipelines. :func:`~driftloop.runners.make_runner` picks one by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from driftloop.ct_params import CTParams


@dataclass
class RunOutcome:
    """How a run ended."""

    state: str  # "SUCCEEDED" | "FAILED"
    error: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StartedRun:
    """A run a runner started."""

    run_id: str  # what :meth:`Runner.attach` needs to follow it from another process
    url: str  # where a person looks at it


class Runner(Protocol):
    """Starts CT runs and reports how they end."""

    def start(self, params: CTParams, key: str) -> StartedRun:
        """Starts the CT pipeline for ``key`` (a retrain's idempotency key)."""

    def poll(self, key: str) -> RunOutcome | None:
        """None while the run goes on, then how it ended (once)."""

    def attach(self, key: str, run_id: str) -> bool:
        """Follows a run that an earlier process started (it was killed or restarted meanwhile); False when the
        run cannot be found, and so never finishes as far as anyone can tell."""
