"""Splitting requests between stable and canary by KServe's ``canaryTrafficPercent``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrafficSplit:
    """Sends exactly ``percent`` of requests to the canary, interleaved.

    Request *k* goes to the canary when ``floor(k·p/100)`` steps up, so any window of 100 requests
    holds ``p`` canary requests (±1) instead of a random number: a small step of a rollout gets the
    traffic it was promised. Changing the percent takes effect on the next request.
    """

    percent: int = 0
    _count: int = field(default=0, repr=False)

    def to_canary(self) -> bool:
        self._count += 1
        p = max(0, min(100, self.percent))
        return (self._count * p) // 100 != ((self._count - 1) * p) // 100
