"""Request and response halves of one payload event may arrive at the same moment."""

from __future__ import annotations

import threading
import time

import orjson

from driftloop.data import DatasetSpec, FeatureSpec
from driftloop.monitor.events import EventJoiner
from driftloop.serving.payload_logger import REQUEST_TYPE, RESPONSE_TYPE

SPEC = DatasetSpec("y", (FeatureSpec("x", "numeric"),))


def test_halves_arriving_together_make_exactly_one_row_and_no_error() -> None:
    joiner = EventJoiner(lambda model, version: SPEC, lambda model, endpoint: 1)
    expire = joiner._expire

    def slow_expire(now: float) -> None:  # widens the window between "both halves here?" and the delete
        expire(now)
        time.sleep(0.001)

    joiner._expire = slow_expire
    rows, errors = [], []
    barrier = threading.Barrier(2)

    def send(event_id: str, kind: str) -> None:
        headers = {"ce-id": event_id, "ce-type": kind, "ce-inferenceservicename": "m", "ce-modelversion": "1"}
        body = {"instances": [{"x": 1.0}]} if kind == REQUEST_TYPE else {"predictions": [0]}
        barrier.wait()  # both halves enter together
        try:
            if (frame := joiner.add(headers, orjson.dumps(body))) is not None:
                rows.append(frame)
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            errors.append(repr(exc))

    for i in range(200):
        threads = [threading.Thread(target=send, args=(f"e{i}", kind)) for kind in (REQUEST_TYPE, RESPONSE_TYPE)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        barrier.reset()
    assert errors == [] and len(rows) == 200 and joiner.orphaned == 0 and not joiner._pending
