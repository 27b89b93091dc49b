"""Knative's "living" condition sets: a happy condition (``Ready``) that follows its dependents.

Follows knative.dev/pkg ``apis/condition_set.go`` (vendored in knative/serving and kserve): ``SetCondition``
keeps the transition time when nothing but the time would change and keeps the list sorted by type;
``MarkTrue``/``MarkTrueWithReason`` recompute happiness from the most recent unhappy dependent;
``MarkFalse`` on a dependent also fails the happy condition; ``MarkUnknown`` on a dependent makes the happy
condition Unknown unless some dependent is False. Non-dependent conditions carry severity ``Info``.
KServe's InferenceService status, Knative's Service, Configuration, Route and Revision all use this.
"""

from __future__ import annotations

from datetime import UTC, datetime

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


def now_rfc3339() -> str:
    """``metav1.Time`` as JSON: RFC 3339 in UTC with second resolution."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConditionSet:
    """One ``apis.NewLivingConditionSet(dependents...)`` applied to a list of condition dicts."""

    def __init__(self, *dependents: str, happy: str = "Ready") -> None:
        self.happy = happy
        self.dependents = dependents

    def manage(self, conditions: list[dict]) -> Conditions:
        return Conditions(self, conditions)


class Conditions:
    """The manager (``ConditionSet.Manage``) over a mutable list of JSON conditions."""

    def __init__(self, condition_set: ConditionSet, conditions: list[dict]) -> None:
        self.set = condition_set
        self.items = conditions

    # -- reading -------------------------------------------------------------------------------------------------

    def get(self, condition_type: str) -> dict | None:
        return next((c for c in self.items if c["type"] == condition_type), None)

    def status(self, condition_type: str) -> str | None:
        condition = self.get(condition_type)
        return condition["status"] if condition else None

    def is_true(self, condition_type: str) -> bool:
        return self.status(condition_type) == TRUE

    def is_unknown(self, condition_type: str) -> bool:
        return self.status(condition_type) in (None, UNKNOWN)

    # -- writing -------------------------------------------------------------------------------------------------

    def _terminal(self, condition_type: str) -> bool:
        return condition_type == self.set.happy or condition_type in self.set.dependents

    def _set(self, condition_type: str, status: str, reason: str = "", message: str = "") -> None:
        condition = {"type": condition_type, "status": status}
        if not self._terminal(condition_type):
            condition["severity"] = "Info"
        if reason:
            condition["reason"] = reason
        if message:
            condition["message"] = message
        old = self.get(condition_type)
        if old is not None:
            if {k: v for k, v in old.items() if k != "lastTransitionTime"} == condition:
                return
            self.items.remove(old)
        condition["lastTransitionTime"] = now_rfc3339()
        self.items.append(condition)
        self.items.sort(key=lambda c: c["type"])

    def initialize(self) -> None:
        happy = self.get(self.set.happy)
        if happy is None:
            self._set(self.set.happy, UNKNOWN)
            happy = self.get(self.set.happy)
        status = TRUE if happy["status"] == TRUE else UNKNOWN
        for dependent in self.set.dependents:
            if self.get(dependent) is None:
                self._set(dependent, status)

    def _recompute_happiness(self, changed: str) -> None:
        unhappy = self._find_unhappy_dependent()
        if unhappy is not None:
            self._set(self.set.happy, unhappy["status"], unhappy.get("reason", ""), unhappy.get("message", ""))
        elif changed != self.set.happy:
            self._set(self.set.happy, TRUE)

    def _find_unhappy_dependent(self) -> dict | None:
        if not self.set.dependents:
            return None
        terminal = [c for c in self.items if c["type"] in self.set.dependents]
        # most recent first; times have second resolution after a round trip through the API server, as in Go
        terminal.sort(key=lambda c: c.get("lastTransitionTime", ""), reverse=True)
        for wanted in (FALSE, UNKNOWN):
            for condition in terminal:
                if condition["status"] == wanted:
                    return condition
        if len(terminal) < len(self.set.dependents):
            return {"status": UNKNOWN}
        return None

    def mark_true(self, condition_type: str, reason: str = "", message: str = "") -> None:
        self._set(condition_type, TRUE, reason, message)
        self._recompute_happiness(condition_type)

    def mark_false(self, condition_type: str, reason: str = "", message: str = "") -> None:
        self._set(condition_type, FALSE, reason, message)
        if condition_type in self.set.dependents:
            self._set(self.set.happy, FALSE, reason, message)

    def mark_unknown(self, condition_type: str, reason: str = "", message: str = "") -> None:
        self._set(condition_type, UNKNOWN, reason, message)
        is_dependent = False
        for dependent in self.set.dependents:
            if self.status(dependent) == FALSE:
                if self.status(self.set.happy) != FALSE:
                    self.mark_false(self.set.happy, reason, message)
                return
            is_dependent = is_dependent or dependent == condition_type
        if is_dependent:
            self._set(self.set.happy, UNKNOWN, reason, message)

    def set_condition(self, condition_type: str, condition: dict | None) -> None:
        """KServe's ``InferenceServiceStatus.SetCondition``: copy another condition's status, reason, message."""
        if condition is None:
            return
        reason, message = condition.get("reason", ""), condition.get("message", "")
        {TRUE: self.mark_true, FALSE: self.mark_false, UNKNOWN: self.mark_unknown}[condition["status"]](
            condition_type, reason, message)

    def clear(self, condition_type: str) -> None:
        if self._terminal(condition_type):
            return  # knative refuses to clear terminal conditions
        condition = self.get(condition_type)
        if condition is not None:
            self.items.remove(condition)
