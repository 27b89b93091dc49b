"""Approval of promotions: the per-model policy and the pending request, as the audit trail records them.

A model may require that a canary which passed its analysis be approved by a person before it becomes
production (as SageMaker's model package approval status and MLflow's transition requests offer). The policy
is an audit entry (``approval-policy``), so it is signed, replayed and changed only on the record like an
alias. A canary that passed waits under an ``approval-requested`` entry until an ``approve`` entry promotes
it, or a ``reject`` or ``approval-expired`` entry takes it out of service; any entry that moves the canary
away ends the wait too. This module holds the typed records and the rules over them; the moves themselves go
through the deployment port (:mod:`driftloop.deploy.approval`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from driftloop.errors import ConfigError, DriftloopError

# The audit actions of approvals, named once.
APPROVAL_POLICY = "approval-policy"
APPROVAL_REQUESTED = "approval-requested"
APPROVE = "approve"
REJECT = "reject"
APPROVAL_EXPIRED = "approval-expired"
PENDING_APPROVAL = "pending-approval"  # how a rollout (and the deploy step) ends when its canary waits
POLICY_KEY = "approval_policy"  # evidence key of approval-policy entries (null: the policy is switched off)
REQUEST_KEY = "approval"  # evidence key of approval-requested entries and of decisions

DEFAULT_TIMEOUT = "24h"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ApprovalRefused(DriftloopError):
    """An approval, rejection or promotion the policy does not allow (or nothing waits for it)."""

    http_status = 403


def parse_duration(text: str | float) -> float:
    """Seconds in ``"90s"``, ``"30m"``, ``"24h"``, ``"2d"`` or a plain number of seconds; must be > 0."""
    match = _DURATION.match(str(text))
    seconds = float(match.group(1)) * _UNITS[match.group(2)] if match else 0.0
    if seconds <= 0:
        raise ConfigError(f"timeout must be a positive duration such as 90m, 24h or 2d, got '{text}'")
    return seconds


def format_duration(seconds: float) -> str:
    """``"1d 2h"``, ``"45m"``, ``"12s"``: whole units, the two largest."""
    seconds = max(0, int(seconds))
    parts = [(seconds // 86400, "d"), (seconds % 86400 // 3600, "h"), (seconds % 3600 // 60, "m"), (seconds % 60, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"


@dataclass(frozen=True)
class ApprovalPolicy:
    """A model's rule for promotions: a canary that passed its analysis waits for approval.

    Attributes:
        approvers: Who may approve or reject (actor names as recorded, e.g. a login name or
            ``system:serviceaccount:<ns>:<name>``); empty: anyone.
        four_eyes: The decider must differ from whoever registered the version or triggered its run.
        timeout_seconds: How long a canary may wait; then it is rolled back (``approval-expired``).
        verified_only: Only actors with a verified identity (a Kubernetes user or ServiceAccount) may decide.
    """

    approvers: tuple[str, ...] = ()
    four_eyes: bool = False
    timeout_seconds: float = field(default_factory=lambda: parse_duration(DEFAULT_TIMEOUT))
    verified_only: bool = False

    def __post_init__(self) -> None:
        if not self.timeout_seconds > 0:
            raise ConfigError(f"approval timeout must be > 0 seconds, got {self.timeout_seconds}")
        if any(not a or a != a.strip() or "," in a for a in self.approvers):
            raise ConfigError(f"approvers must be names without commas or surrounding spaces, got {self.approvers}")

    def to_dict(self) -> dict:
        return {**asdict(self), "approvers": list(self.approvers)}

    @classmethod
    def from_dict(cls, values: dict) -> ApprovalPolicy:
        try:
            return cls(approvers=tuple(values.get("approvers") or ()), four_eyes=bool(values.get("four_eyes")),
                       timeout_seconds=float(values["timeout_seconds"]),
                       verified_only=bool(values.get("verified_only")))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ConfigError(f"not an approval policy: {values!r}") from None

    def describe(self) -> str:
        who = ", ".join(self.approvers) if self.approvers else "anyone"
        return (f"approval required: by {who}" + (", four eyes" if self.four_eyes else "")
                + (", verified identities only" if self.verified_only else "")
                + f"; timeout {format_duration(self.timeout_seconds)}")


@dataclass(frozen=True)
class PendingApproval:
    """A canary that passed its analysis and waits for a decision.

    Attributes:
        model / version: The canary.
        stable_version: The production version beside it.
        requested_at / expires_at: ISO-8601 UTC; the deadline is fixed when the wait begins.
        registered_by: The actor of the version's ``register`` entry.
        triggered_by: What started the run that made it (its lineage's ``triggered_by``).
        serving: Where it serves, as the deployment that asked described itself (target, namespace, …), so
            the decision goes through the same backend.
        seq: The ``approval-requested`` entry.
    """

    model: str
    version: int
    stable_version: int | None
    requested_at: str
    expires_at: str
    registered_by: str | None
    triggered_by: str | None
    serving: dict
    seq: int

    def to_dict(self) -> dict:
        return asdict(self)

    def age_seconds(self, now: float) -> float:
        return now - datetime.fromisoformat(self.requested_at).timestamp()

    def expired(self, now: float) -> bool:
        return now >= datetime.fromisoformat(self.expires_at).timestamp()

    def authors(self) -> set[str]:
        """Who may not decide under four eyes."""
        return {a for a in (self.registered_by, self.triggered_by) if a}


def request_record(*, version: int, stable_version: int | None, at: str, timeout_seconds: float,
                   registered_by: str | None, triggered_by: str | None, serving: dict) -> dict:
    """The ``approval`` evidence of an ``approval-requested`` entry (what :func:`pending_from` reads back)."""
    expires = datetime.fromisoformat(at) + timedelta(seconds=timeout_seconds)
    return {"version": version, "stable_version": stable_version, "requested_at": at,
            "expires_at": expires.isoformat(timespec="milliseconds"), "registered_by": registered_by,
            "triggered_by": triggered_by, "serving": serving}


def pending_from(model: str, seq: int, record: dict) -> PendingApproval:
    """The pending approval an ``approval-requested`` entry's ``approval`` evidence describes."""
    try:
        return PendingApproval(model=model, seq=seq, version=int(record["version"]),
                               stable_version=record.get("stable_version"), requested_at=record["requested_at"],
                               expires_at=record["expires_at"], registered_by=record.get("registered_by"),
                               triggered_by=record.get("triggered_by"), serving=dict(record.get("serving") or {}))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"audit entry {seq} of {model} is not an approval request") from None


def check_production_move(model: str, policy: ApprovalPolicy | None, pending: PendingApproval | None,
                          current: int | None, target: int, action: str) -> None:
    """The one rule for what may become production under an approval policy.

    An ``approve`` entry promotes exactly the version that waits. Otherwise, with a policy in force, production
    may not move to another version while one is in production (a first version, a roll back and re-promoting
    the current version are not promotions of something new).

    Raises:
        ApprovalRefused: the move needs an approval it does not have.
    """
    if action == APPROVE:
        if pending is None or pending.version != target:
            raise ApprovalRefused(f"{model} v{target} is not pending approval")
        return
    if policy is None or current is None or target == current:
        return
    raise ApprovalRefused(f"{model} requires approval: v{target} reaches production only by passing a canary "
                          f"rollout and 'driftloop models approve {model} {target}'")


def check_decision(policy: ApprovalPolicy | None, pending: PendingApproval | None, model: str, version: int,
                   actor: str, verified: bool) -> None:
    """Whether ``actor`` may approve or reject ``version`` now, under the policy in force (with the policy
    switched off, anyone may decide what still waits).

    Raises:
        ApprovalRefused: the version does not wait, or the actor is not allowed to decide.
    """
    if pending is None or pending.version != version:
        waiting = f" (v{pending.version} is)" if pending is not None else ""
        raise ApprovalRefused(f"{model} v{version} is not pending approval{waiting}")
    if policy is None:
        return
    if policy.verified_only and not verified:
        raise ApprovalRefused(f"{model} accepts decisions from verified identities only; '{actor}' is self-declared "
                              "(run where a Kubernetes identity is available)")
    if policy.approvers and actor not in policy.approvers:
        raise ApprovalRefused(f"'{actor}' is not an approver of {model} (approvers: {', '.join(policy.approvers)})")
    if policy.four_eyes and actor in pending.authors():
        role = "registered" if actor == pending.registered_by else "triggered"
        raise ApprovalRefused(f"four eyes: '{actor}' {role} {model} v{version}; someone else must decide")
