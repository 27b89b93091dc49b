"""When a drift signal becomes a retrain: M of the last N windows, a cooldown, one run at a time,
and a stop after K consecutive failed or rolled-back retrains; and when a window's realised quality counts
as a drop (:func:`quality_signal`).

The policy only decides; the monitor carries the decision out and records it. Keeping it free of I/O
makes the rules easy to test with a fake clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from driftloop.monitor.config import TriggerConfig
from driftloop.tasks import drop_text, quality_drop


@dataclass(frozen=True)
class Decision:
    """What to do after a window.

    ``action`` is "trigger", or why not: "quiet" (too few signalling windows), "cooldown",
    "in-flight" (a retrain is running: refused and recorded) or "stopped" (too many failures).
    """

    action: str
    reason: str

    @property
    def triggers(self) -> bool:
        return self.action == "trigger"


class TriggerPolicy:
    """Debounces window signals into retrain decisions."""

    def __init__(self, config: TriggerConfig) -> None:
        self.config = config
        self.signals: deque[tuple[int, bool]] = deque(maxlen=config.n)  # (window id, signal)
        self.last_trigger_at: float | None = None
        self.in_flight: str | None = None  # idempotency key of the running retrain
        self.consecutive_failures = 0

    @property
    def stopped(self) -> bool:
        return self.consecutive_failures >= self.config.max_failures

    def signalling_windows(self) -> list[int]:
        return [window for window, signal in self.signals if signal]

    def observe(self, window_id: int, signal: bool, now: float) -> Decision:
        """Takes one closed window's signal and decides."""
        self.signals.append((window_id, signal))
        hits = len(self.signalling_windows())
        needed = f"{hits} of the last {len(self.signals)} windows signal (trigger at {self.config.m} of {self.config.n})"
        if hits < self.config.m:
            return Decision("quiet", needed)
        if self.stopped:
            return Decision("stopped", f"{needed}, but retraining stopped after {self.consecutive_failures} "
                                       "consecutive failed or rolled-back retrains; fix the cause, then resume")
        if self.in_flight is not None:
            return Decision("in-flight", f"{needed}, but retrain {self.in_flight} is still running")
        if self.last_trigger_at is not None and now - self.last_trigger_at < self.config.cooldown_seconds:
            left = self.config.cooldown_seconds - (now - self.last_trigger_at)
            return Decision("cooldown", f"{needed}, but the cooldown has {left:.0f} s left")
        return Decision("trigger", needed)

    def update(self, window_id: int, signal: bool) -> None:
        """Revises a remembered window's signal (its realised quality changed as labels arrived)."""
        for i, (window, _) in enumerate(self.signals):
            if window == window_id:
                self.signals[i] = (window, signal)

    def started(self, key: str, now: float) -> None:
        self.in_flight, self.last_trigger_at = key, now

    def finished(self, succeeded: bool) -> None:
        """A retrain ended: succeeded means a new version was promoted."""
        self.in_flight = None
        self.consecutive_failures = 0 if succeeded else self.consecutive_failures + 1

    def reset_signals(self) -> None:
        """Forgets past windows (their drift was measured against a reference no longer serving)."""
        self.signals.clear()

    def resume(self) -> None:
        """Lets a stopped policy trigger again (an operator fixed the cause)."""
        self.consecutive_failures = 0

    def state(self) -> dict:
        return {"signals": [{"window": w, "signal": s} for w, s in self.signals], "in_flight": self.in_flight,
                "last_trigger_at": self.last_trigger_at, "consecutive_failures": self.consecutive_failures,
                "stopped": self.stopped, "config": vars(self.config)}


def quality_signal(metric: str, expected: float | None, quality: dict, config: TriggerConfig,
                   version: int) -> str | None:
    """Why a window's realised quality is a signal, or None when it is not: on at least ``min_labels`` labelled
    rows, ``metric`` is worse than the ``expected`` value version ``version`` is held to by more than
    ``quality_drop`` (:func:`driftloop.tasks.quality_drop`: an absolute drop of accuracy, a relative rise of RMSE).
    """
    realised, labelled = quality.get(metric), quality.get("labelled", 0)
    if realised is None or expected is None or labelled < config.min_labels:
        return None
    drop = quality_drop(metric, expected, realised)
    if drop <= config.quality_drop:
        return None
    return (f"{metric} {realised:.4g} is {drop_text(metric, drop)} the {expected:.4g} v{version} is held to "
            f"({labelled} labelled rows)")
