"""How a model server scores requests that arrive together: the policy and its flags (no heavy imports, so
every CLI command can list the flags)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BATCH_MAX_ROWS = 1  # off: see docs/serving.md ("Batching") for the measurement behind the default
DEFAULT_BATCH_WAIT_US = 0


@dataclass(frozen=True)
class Batching:
    """How requests are scored together.

    Attributes:
        max_rows: the most rows one model call takes; 1 scores every request alone (off). A request larger
            than this is still scored, alone.
        wait_us: how long, in microseconds, the worker waits for more requests once it holds one, when fewer
            than ``max_rows`` rows are queued; 0 takes only what is already queued and never delays a request.
    """

    max_rows: int = DEFAULT_BATCH_MAX_ROWS
    wait_us: int = DEFAULT_BATCH_WAIT_US

    def __post_init__(self) -> None:
        if self.max_rows < 1:
            raise ValueError(f"batch max_rows must be at least 1, got {self.max_rows}")
        if self.wait_us < 0:
            raise ValueError(f"batch wait_us must not be negative, got {self.wait_us}")

    @property
    def enabled(self) -> bool:
        return self.max_rows > 1


def add_batching_flags(parser, separator: str = "_") -> None:
    """Adds ``--batch_max_rows`` and ``--batch_wait_us`` (``separator`` "-" for driftloop's own CLI style)."""
    parser.add_argument(f"--batch{separator}max{separator}rows", dest="batch_max_rows", type=int,
                        default=DEFAULT_BATCH_MAX_ROWS,
                        help="score requests that arrive together in one model call of up to this many rows "
                             "(default %(default)s: each request alone)")
    parser.add_argument(f"--batch{separator}wait{separator}us", dest="batch_wait_us", type=int,
                        default=DEFAULT_BATCH_WAIT_US,
                        help="with batching, microseconds to wait for more requests once one is held "
                             "(default %(default)s: only what is already queued)")


def batching_from_args(args) -> Batching:
    """The :class:`Batching` the flags ask for; raises ValueError naming a bad value."""
    return Batching(max_rows=args.batch_max_rows, wait_us=args.batch_wait_us)
