"""The scoring worker: where a model server decodes request bodies into frames and runs the model.

KServe calls a model's ``predict`` on the event loop; a synchronous model there stalls everything the
server does — health checks, metrics scrapes, other requests — for as long as one batch takes. The worker
is one thread with a queue in front of it: the event loop hands the work over and keeps serving while it
runs. One thread, not a pool: the model libraries use their own native threads for one batch, and one
batch at a time keeps latency predictable (a later step can take several queued requests as one batch).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class ScoringWorker:
    """Runs model work on one dedicated thread, in the order it was handed over."""

    def __init__(self, name: str = "driftloop-scoring") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, work: Callable[..., T], *args) -> T:
        """Runs ``work(*args)`` on the worker's thread; the caller's event loop stays free meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(work, *args))

    def shutdown(self) -> None:
        """Stops taking work; what is queued and not started is dropped."""
        self._executor.shutdown(wait=False, cancel_futures=True)
