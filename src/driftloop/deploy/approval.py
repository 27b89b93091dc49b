"""Deciding on a canary that waits for approval, through the deployment port.

Approving promotes the canary (:meth:`Deployment.promote`, audit entry ``approve``); rejecting takes it out of
service (:meth:`Deployment.abort`, entry ``reject``); a wait past its deadline is rolled back the same way
(entry ``approval-expired``). Each goes through the backend the canary serves on — the one that asked for the
approval, recorded with the request — so the serving layer confirms the change before the registry records it.
The rules (who may decide, what may become production) live in :mod:`driftloop.registry.approvals`.
"""

from __future__ import annotations

import copy
import time

from driftloop.deploy.base import Deployment, ServedTraffic
from driftloop.errors import ConfigError
from driftloop.identity import Actor
from driftloop.registry import ModelRegistry
from driftloop.registry.approvals import (
    APPROVAL_EXPIRED,
    APPROVE,
    REJECT,
    REQUEST_KEY,
    PendingApproval,
    check_decision,
    format_duration,
)


def pending_approvals(registry: ModelRegistry, model: str | None = None) -> list[PendingApproval]:
    """The canaries waiting for approval: of ``model``, or of every model. Reads only; expires nothing."""
    names = [model] if model else registry.list_models()
    return [p for p in (registry.state(name).pending_approval for name in names) if p is not None]


def approve(deployment: Deployment, model: str, version: int, actor: Actor, reason: str) -> ServedTraffic:
    """Promotes the waiting canary ``version``: audit entry ``approve``, naming ``actor``.

    Raises:
        ApprovalRefused: it does not wait, or the policy does not let ``actor`` decide (one line).
    """
    pending = _decidable(deployment, model, version, actor, reason)
    return _acting(deployment, actor).promote(model, f"approved by {actor.name}: {reason}",
                                              _evidence(APPROVE, pending, actor, reason), action=APPROVE)


def reject(deployment: Deployment, model: str, version: int, actor: Actor, reason: str) -> ServedTraffic:
    """Takes the waiting canary ``version`` out of service: audit entry ``reject``, naming ``actor``.

    Raises:
        ApprovalRefused: it does not wait, or the policy does not let ``actor`` decide (one line).
    """
    pending = _decidable(deployment, model, version, actor, reason)
    return _acting(deployment, actor).abort(model, f"rejected by {actor.name}: {reason}",
                                            _evidence(REJECT, pending, actor, reason), action=REJECT)


def expire_pending(deployment: Deployment, model: str, now: float | None = None) -> PendingApproval | None:
    """Rolls back ``model``'s canary when its wait for approval is past the deadline (entry
    ``approval-expired``, by the deployment's actor). Meant to be called often: by the drift monitor every tick,
    by ``driftloop models pending`` (so a cron job can enforce timeouts without a monitor).

    Args:
        now: Epoch seconds (default: the current time).

    Returns:
        The approval that expired, or None when nothing was due.
    """
    now = time.time() if now is None else now
    pending = deployment.registry.state(model).pending_approval
    if pending is None or not pending.expired(now):
        return None
    _check_same_backend(deployment, pending)
    waited = format_duration(pending.age_seconds(now))
    deployment.abort(model, f"approval timed out after {waited} (deadline {pending.expires_at})",
                     {REQUEST_KEY: {"decision": APPROVAL_EXPIRED, "request_seq": pending.seq,
                                    "expires_at": pending.expires_at}},
                     action=APPROVAL_EXPIRED)
    return pending


def _decidable(deployment: Deployment, model: str, version: int, actor: Actor, reason: str) -> PendingApproval:
    if not reason.strip():
        raise ConfigError("a decision needs a reason (--reason)")
    state = deployment.registry.state(model)
    check_decision(state.approval_policy, state.pending_approval, model, int(version), actor.name, actor.verified)
    _check_same_backend(deployment, state.pending_approval)
    return state.pending_approval


def _check_same_backend(deployment: Deployment, pending: PendingApproval) -> None:
    """A decision must move the serving layer the canary serves on, else aliases and serving part ways."""
    recorded, here = pending.serving, deployment.serving()
    keys = ("target", "namespace")
    if recorded and any(recorded.get(k) != here.get(k) for k in keys if k in recorded):
        where = " ".join(f"--{k} {recorded[k]}" for k in keys if recorded.get(k))
        raise ConfigError(f"{pending.model} v{pending.version} waits on {where.replace('--', '')}; decide there "
                          f"({where})")


def _acting(deployment: Deployment, actor: Actor) -> Deployment:
    """The same backend, recording ``actor`` as the one who acts."""
    acting = copy.copy(deployment)
    acting.actor = actor.name
    return acting


def _evidence(decision: str, pending: PendingApproval, actor: Actor, reason: str) -> dict:
    identity = actor.to_dict()
    return {REQUEST_KEY: {"decision": decision, "request_seq": pending.seq, "reason": reason,
                          "actor": identity.pop("name"), "verified": identity.pop("verified"), "identity": identity,
                          "requested_at": pending.requested_at, "registered_by": pending.registered_by,
                          "triggered_by": pending.triggered_by}}


def deployment_for(registry: ModelRegistry, model: str | None, actor: str, *, context: str | None = None,
                   **serving) -> Deployment:
    """The deployment backend a decision on ``model`` goes through: where its waiting canary serves, as the
    request recorded it, with every setting given here (not None) taking precedence.

    Args:
        serving: ``target``, ``namespace``, ``deployment_mode``, ``service_account``, ``ready_timeout`` and the
            payload logger's settings (:data:`~driftloop.ct_params.LOGGER_SETTINGS`), as
            :func:`~driftloop.deploy.open_deployment` takes them.
    """
    from driftloop.deploy import open_deployment

    pending = registry.state(model).pending_approval if model else None
    settings = {**(pending.serving if pending else {}), **{k: v for k, v in serving.items() if v is not None}}
    target = settings.pop("target", None) or "local"
    return open_deployment(registry, target, actor=actor, context=context, **settings)


def decide(decision: str, registry: ModelRegistry, model: str, version: int, reason: str, *,
           actor: str | None = None, context: str | None = None, **serving) -> ServedTraffic:
    """Approves or rejects (``decision``) as whoever runs this: the actor is resolved
    (:func:`~driftloop.identity.resolve_actor`: a verified Kubernetes identity, else ``actor`` or the login name,
    self-declared) and the decision goes through the backend the canary serves on (:func:`deployment_for`)."""
    from driftloop.identity import resolve_actor

    act = {APPROVE: approve, REJECT: reject}.get(decision)
    if act is None:
        raise ConfigError(f"unknown decision '{decision}': use {APPROVE} or {REJECT}")
    registry.require_model(model)
    deployment = deployment_for(registry, model, "driftloop", context=context, **serving)
    return act(deployment, model, version, resolve_actor(actor, api_client=getattr(deployment, "api_client", None)),
               reason)
