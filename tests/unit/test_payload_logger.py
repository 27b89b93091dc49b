"""The gateway's payload logger keeps prediction pairs whole when its queue is full."""

from __future__ import annotations

import asyncio

from driftloop.serving.metrics import GatewayMetrics
from driftloop.serving.payload_logger import PayloadLogger


def test_a_full_queue_drops_a_prediction_whole_never_half_of_it() -> None:
    """Half a pair is no row to the monitor: with room for one event only, both of the pair are dropped."""
    metrics = GatewayMetrics()

    async def scenario() -> int:
        logger = PayloadLogger("http://127.0.0.1:9/events", metrics, queue_size=3)  # senders never started
        for n in range(3):
            logger.log(f"p{n}", "churn", 1, "default", {"instances": [{"age": n}]}, {"predictions": [n]})
        return logger.queued

    assert asyncio.run(scenario()) == 2  # the first prediction, both halves
    dropped = metrics.registry.get_sample_value("driftloop_payload_log_dropped_total", {"reason": "queue_full"})
    assert dropped == 4  # the other two, both halves each
