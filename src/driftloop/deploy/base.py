"""The deployment port: where registry versions serve, and how traffic moves between them.

One interface, two backends: :class:`~driftloop.deploy.local.LocalDeployment` (the registry's aliases, which
the local gateway follows) and :class:`~driftloop.deploy.kserve.KServeDeployment` (an InferenceService, in
either KServe deployment mode). A backend implements two primitives — make the serving layer serve a stable
version and optionally a canary at a share, waiting until it confirms; and report what serves — and every
verb (roll out, set traffic, promote, abort, roll back) is written once here on top of them. The registry's
aliases move only after the serving layer has confirmed the change, and every change is an audit entry.

A model's approval policy (:mod:`driftloop.registry.approvals`) is honoured here, before anything is served:
a canary that passed its analysis is held for approval by :meth:`Deployment.conclude`, and a promotion that
the policy would refuse is refused before the serving layer moves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

from driftloop.errors import DriftloopError, RegistryError
from driftloop.registry import CANARY, PRODUCTION, ModelRegistry, ModelVersion
from driftloop.registry.approvals import PENDING_APPROVAL, check_production_move
from driftloop.registry.base import TRAFFIC_KEY, previous_production
from driftloop.rollout.metrics import ServingTarget


class DeploymentError(DriftloopError):
    """The serving layer did not reach the state asked of it (a revision failed, a timeout)."""


@dataclass(frozen=True)
class ServedTraffic:
    """What serves a model now: a stable version and, during a rollout, a canary with its share."""

    model: str
    stable: ServingTarget | None
    canary: ServingTarget | None = None
    ready: bool = True
    detail: str = ""  # the serving layer's own words (e.g. a KServe condition message)

    def targets(self) -> list[ServingTarget]:
        return [t for t in (self.stable, self.canary) if t is not None]

    @property
    def canary_percent(self) -> int:
        return self.canary.percent if self.canary else 0

    def describe(self) -> str:
        if self.stable is None:
            return "nothing serves yet"
        parts = [f"v{t.version} {t.percent}%" + (f" ({t.revision})" if t.revision else "") for t in self.targets()]
        return ", ".join(parts) + ("" if self.ready else " — not ready" + (f": {self.detail}" if self.detail else ""))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RolloutStart:
    """How a new version entered service."""

    action: str  # "promoted" (first version or 100 %) | "canary"
    version: int
    previous_production: int | None
    traffic: ServedTraffic


class Deployment(ABC):
    """Serves registry versions and moves traffic between them.

    Args:
        registry: Versions, aliases and the audit trail; aliases follow what serving confirms.
        actor: Who the audit entries name.
    """

    target: str  # the serve target this backend is ("local" | "kserve"), as CTParams names it

    def __init__(self, registry: ModelRegistry, actor: str = "driftloop") -> None:
        self.registry = registry
        self.actor = actor

    def serving(self) -> dict:
        """Where this backend serves, as recorded with a pending approval (enough to open it again)."""
        return {"target": self.target}

    # -- backend primitives ---------------------------------------------------------------------

    @abstractmethod
    def observe(self, model: str) -> ServedTraffic | None:
        """What serves ``model`` now, or None when nothing does (no InferenceService, no production alias)."""

    @abstractmethod
    def _serve(self, model: str, stable: ModelVersion, canary: ModelVersion | None, percent: int) -> ServedTraffic:
        """Makes the serving layer serve ``stable`` and, if given, ``canary`` at ``percent`` %; returns
        what it confirmed. Raises :class:`DeploymentError` when it cannot get there."""

    # -- verbs --------------------------------------------------------------------------------------

    def roll_out(self, model: str, version: int, percent: int) -> RolloutStart:
        """Puts a registered version into service: straight to production when nothing serves yet or
        ``percent`` is 100, otherwise as the canary taking ``percent`` % beside production."""
        new = self.registry.get_version(model, version)
        current = self.observe(model)
        production = self.registry.aliases(model).get(PRODUCTION)
        if current is None or production is None or percent >= 100 or production == version:
            reason = ("first version" if current is None or production is None
                      else "already production" if production == version else "rolled out at 100%")
            self._check_promotion(model, version, "promote")
            traffic = self._serve(model, new, None, 100)
            self.registry.promote(model, version, actor=self.actor, reason=reason,
                                  evidence={"served": traffic.to_dict()})
            return RolloutStart("promoted", version, production, traffic)
        stable = self.registry.get_version(model, production)
        try:
            traffic = self._serve(model, stable, new, percent)
        except DeploymentError as exc:
            self._record_failed(model, version, f"canary v{version} did not start: {exc}")
            self._restore(model, stable)
            raise
        self.registry.set_alias(model, CANARY, version, actor=self.actor, action="deploy-canary",
                                reason=f"canary at {percent}% beside production v{production}",
                                evidence={TRAFFIC_KEY: percent, "stable_version": production,
                                          "served": traffic.to_dict()})
        return RolloutStart("canary", version, production, traffic)

    def set_traffic(self, model: str, percent: int, reason: str = "") -> ServedTraffic:
        """Gives the canary ``percent`` % (1–99) of requests."""
        stable, canary = self._stable_and_canary(model)
        traffic = self._serve(model, stable, canary, percent)
        self.registry.set_canary_traffic(model, percent, actor=self.actor, action="rollout-step",
                                         reason=reason or f"canary at {percent}%",
                                         evidence={"served": traffic.to_dict()})
        return traffic

    def promote(self, model: str, reason: str = "", evidence: dict | None = None, *,
                action: str = "promote") -> ServedTraffic:
        """The canary takes all traffic and becomes production; the audit entry is ``action`` (``approve``
        when an approval promotes it). Refused before anything moves when the approval policy forbids it."""
        _, canary = self._stable_and_canary(model)
        self._check_promotion(model, canary.version, action)
        traffic = self._serve(model, canary, None, 100)
        self.registry.promote(model, canary.version, actor=self.actor, reason=reason or "canary promoted",
                              evidence={**(evidence or {}), "served": traffic.to_dict()},
                              expect_canary=canary.version, action=action)
        return traffic

    def abort(self, model: str, reason: str, evidence: dict | None = None, *,
              action: str = "rollout-abort") -> ServedTraffic:
        """Takes the canary out of service: stable gets all traffic again; production stays where it was. The
        audit entry is ``action`` (``reject`` or ``approval-expired`` when an approval ends that way)."""
        stable, canary = self._stable_and_canary(model)
        traffic = self._serve(model, stable, None, 100)
        self.registry.remove_alias(model, CANARY, actor=self.actor, action=action,
                                   reason=f"canary v{canary.version} aborted: {reason}",
                                   evidence={**(evidence or {}), "served": traffic.to_dict()}, expect=canary.version)
        return traffic

    def conclude(self, model: str, reason: str, evidence: dict | None = None) -> str:
        """A canary passed its analysis: promotes it, or — when the model's policy requires approval — leaves
        it serving at its share and records that it waits (``approval-requested``).

        Returns:
            "promoted" or "pending-approval".
        """
        _, canary = self._stable_and_canary(model)
        if self.registry.state(model).approval_policy is None:
            self.promote(model, reason, evidence)
            return "promoted"
        self.registry.request_approval(model, canary.version, actor=self.actor,
                                       reason=f"{reason}; v{canary.version} waits for approval",
                                       evidence={**(evidence or {}), "served": _describe(self.observe(model))},
                                       serving=self.serving())
        return PENDING_APPROVAL

    def roll_back(self, model: str, reason: str = "") -> ServedTraffic:
        """Undoes the latest rollout: a canary is taken out of service; without one, production returns to
        the version it replaced (repeated roll backs walk further back)."""
        aliases = self.registry.aliases(model)
        if CANARY in aliases:
            return self.abort(model, reason or "rolled back")
        current = aliases.get(PRODUCTION)
        if current is None:
            raise RegistryError(f"model '{model}' has nothing in production to roll back")
        target = previous_production(self.registry.history(model), current)
        if target is None:
            raise RegistryError(f"{model} v{current} replaced no earlier version; nothing to roll back to")
        traffic = self._serve(model, self.registry.get_version(model, target), None, 100)
        self.registry.rollback(model, actor=self.actor, reason=reason or "rolled back",
                               evidence={"served": traffic.to_dict()})
        return traffic

    def record(self, model: str, action: str, reason: str, version: int | None = None,
               evidence: dict | None = None) -> None:
        """An audit entry that moves nothing (a rollout step's analysis, say)."""
        self.registry.record(model, action, actor=self.actor, reason=reason, version=version, evidence=evidence)

    # -- helpers ------------------------------------------------------------------------------------

    def _stable_and_canary(self, model: str) -> tuple[ModelVersion, ModelVersion]:
        aliases = self.registry.aliases(model)
        if CANARY not in aliases or PRODUCTION not in aliases:
            raise RegistryError(f"model '{model}' has no canary beside a production version")
        return self.registry.get_version(model, aliases[PRODUCTION]), self.registry.get_version(model, aliases[CANARY])

    def _check_promotion(self, model: str, version: int, action: str) -> None:
        state = self.registry.state(model)
        check_production_move(model, state.approval_policy, state.pending_approval,
                              state.aliases.get(PRODUCTION), version, action)

    def _record_failed(self, model: str, version: int, reason: str) -> None:
        self.registry.record(model, "rollout-failed", actor=self.actor, version=version, reason=reason)

    def _restore(self, model: str, stable: ModelVersion) -> None:
        """After a failed canary start: stable alone again (best effort; the failure is what gets reported)."""
        try:
            self._serve(model, stable, None, 100)
        except DeploymentError:
            pass


def _describe(traffic: ServedTraffic | None) -> str:
    return traffic.describe() if traffic else "nothing serves"
