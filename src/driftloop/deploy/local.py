"""The deployment port's local backend: the registry's aliases are what serves.

The local gateway (``driftloop serve``) follows the ``production`` and ``canary`` aliases and the canary's
traffic share from the audit trail, so serving a version here is moving an alias; nothing else has to
confirm it. The port's verbs record the moves.
"""

from __future__ import annotations

from driftloop.deploy.base import Deployment, ServedTraffic
from driftloop.registry import CANARY, PRODUCTION, ModelVersion
from driftloop.rollout.metrics import ServingTarget


class LocalDeployment(Deployment):
    """Registry aliases → the local gateway."""

    target = "local"

    def observe(self, model: str) -> ServedTraffic | None:
        state = self.registry.state(model)
        production, canary = state.aliases.get(PRODUCTION), state.aliases.get(CANARY)
        if production is None:
            return None
        percent = (state.canary_percent or 0) if canary is not None else 0
        return ServedTraffic(model, ServingTarget(production, 100 - percent),
                             ServingTarget(canary, percent) if canary is not None else None)

    def _serve(self, model: str, stable: ModelVersion, canary: ModelVersion | None, percent: int) -> ServedTraffic:
        # The alias move that the verb records next is what the gateway acts on.
        if canary is None:
            return ServedTraffic(model, ServingTarget(stable.version, 100))
        return ServedTraffic(model, ServingTarget(stable.version, 100 - percent), ServingTarget(canary.version, percent))
