"""The rollout's metrics port: what each serving version did while a canary step was observed.

Two backends read it: the local gateway's ``/metrics`` (:mod:`driftloop.rollout.gateway_metrics`) and
Prometheus in a cluster (:mod:`driftloop.rollout.prometheus`). The engine only ever sees
:class:`Window` per version, so one analysis judges either.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class ServingTarget:
    """One version that takes traffic, as the deployment backend reports it.

    Attributes:
        version: Registry version number.
        percent: Share of requests it is meant to receive.
        revision: Knative revision (Serverless) or predictor Deployment name (Standard); "" locally.
        ready: Whether it can take traffic.
    """

    version: int
    percent: int
    revision: str = ""
    ready: bool = True


@dataclass
class Window:
    """What one version did during an observation window."""

    requests: int = 0
    errors: int = 0  # server errors (5xx); a caller's 4xx is not the version's fault
    latency_sum: float = 0.0  # seconds
    latency_count: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def mean_latency(self) -> float | None:
        return self.latency_sum / self.latency_count if self.latency_count else None


class RequestMetrics(ABC):
    """Where the rollout reads requests, server errors and latency per serving version."""

    @abstractmethod
    def mark(self) -> object:
        """Marks the start of an observation (a counter snapshot, a timestamp …)."""

    @abstractmethod
    def since(self, mark: object, targets: list[ServingTarget]) -> dict[int, Window]:
        """What each target did between ``mark`` and now, by version (absent targets get an empty Window)."""
