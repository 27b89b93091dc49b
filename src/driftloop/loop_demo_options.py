"""The demo's sizes and speeds: a module of its own so the CLI can show their defaults without importing the demo
(pandas and friends)."""

from __future__ import annotations

from dataclasses import dataclass

from driftloop.errors import ConfigError
from driftloop.tasks import BINARY, check_task


@dataclass(frozen=True)
class DemoOptions:
    """The demo's task, sizes and speeds (the defaults finish in a few minutes on 2 cores).

    Attributes:
        task: The generated table's task (:data:`driftloop.synthetic.TARGETS`): binary (churn), multiclass
            (retention offer) or regression (next month's spend).
        train_rows: Rows of the reference world v1 is trained on.
        clean_rows: Live rows before the drift starts.
        rate: Live rows per second sent to the gateway.
        window_rows: Rows per monitor window.
        timeout: Seconds after the drift onset before the demo gives up waiting for the loop.
        after_windows: Windows to watch after a promotion, judged against the promoted version's reference:
            they show whether the alarm cleared (the same shift must not trigger a second retrain).
    """

    train_rows: int = 3000
    clean_rows: int = 1000
    rate: float = 50.0
    window_rows: int = 500
    timeout: float = 240.0
    covariate_shift: float = 0.6
    concept_shift: float = 0.6
    seed: int = 7
    after_windows: int = 2
    task: str = BINARY

    def __post_init__(self) -> None:
        check_task(self.task)
        if self.train_rows < 500 or self.clean_rows < self.window_rows or self.window_rows < 200:
            raise ConfigError("demo needs train rows >= 500, window rows >= 200 and clean rows >= window rows")
        if self.rate <= 0 or self.timeout <= 0:
            raise ConfigError("demo rate and timeout must be > 0")
        if self.after_windows < 0:
            raise ConfigError("demo after-windows must be >= 0")
