"""How a canary earns its promotion: the steps, the observation time and the limits it is judged by."""

from __future__ import annotations

from dataclasses import dataclass, fields

from driftloop import ct_params
from driftloop.errors import ConfigError


@dataclass(frozen=True)
class RolloutPolicy:
    """How a canary earns its promotion.

    Attributes:
        steps: Canary traffic percentages, ascending, ending at 100.
        interval: Seconds each step is observed.
        min_requests: Canary requests a step needs to be judged at all.
        max_error_rate: Highest canary error rate (server errors / requests) a step may show.
        max_error_rate_increase: How much the canary's error rate may exceed stable's.
        max_latency_ratio: Highest ratio of canary to stable mean latency.
        latency_tolerance: Seconds by which the canary's mean latency may exceed stable's whatever the ratio:
            at sub-millisecond means one preempted request in a step's few dozen moves the ratio by half, and
            no caller notices a few milliseconds.
        max_inconclusive: Inconclusive observations allowed in total before the rollout aborts.
        max_failures: Failed checks that abort the rollout.
        max_quality_drop: How much worse the canary's realised quality may be than stable's (labels needed), in
            the model's quality metric: for classification an absolute drop of accuracy (0.05), for regression a
            relative rise of RMSE (0.05: 5 % above stable's).
        min_labels: Labelled rows each side needs before quality is compared.
    """

    steps: tuple[int, ...] = (10, 25, 50, 100)
    interval: float = ct_params.default_of("rollout_interval")
    min_requests: int = 50
    max_error_rate: float = 0.01
    max_error_rate_increase: float = 0.005
    max_latency_ratio: float = 1.5
    latency_tolerance: float = 0.005
    max_inconclusive: int = 3
    max_failures: int = 1
    max_quality_drop: float = 0.05
    min_labels: int = 30

    @classmethod
    def from_dict(cls, values: dict) -> RolloutPolicy:
        """A policy from overrides such as a pipeline's ``rollout_policy`` parameter.

        KFP hands dict parameters over as JSON, where integers may come back as floats; they are
        restored here, and unknown keys are refused rather than ignored.
        """
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown rollout policy setting(s): {', '.join(unknown)}; known: {', '.join(known)}")
        converted = {}
        for key, value in values.items():
            try:
                if key == "steps":
                    converted[key] = tuple(int(v) for v in value)
                elif known[key] == "int":
                    converted[key] = int(value)
                else:
                    converted[key] = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"rollout policy setting {key} has a bad value: {value!r}") from None
        return cls(**converted)

    def __post_init__(self) -> None:
        if (len(self.steps) < 2 or list(self.steps) != sorted(set(self.steps)) or self.steps[-1] != 100
                or self.steps[0] <= 0):
            raise ConfigError(f"rollout steps must rise from above 0 to 100 with at least one step before 100, "
                              f"got {list(self.steps)}")
        if self.interval <= 0 or self.min_requests < 1:
            raise ConfigError("rollout interval must be > 0 and min requests >= 1")
        if self.latency_tolerance < 0:
            raise ConfigError(f"rollout latency tolerance must be >= 0 seconds, got {self.latency_tolerance}")


