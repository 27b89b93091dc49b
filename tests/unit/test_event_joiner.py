"""Request and response halves of one payload event may arrive at the same moment."""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from driftloop.data import DatasetSpec, FeatureSpec
from driftloop.monitor.events import EventError, EventJoiner
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


def _kserve_event(event_id: str, kind: str, annotations: str | None) -> dict[str, str]:
    """Headers as KServe's agent sends them: no model version, an empty endpoint, ce-annotations when set."""
    headers = {"ce-id": event_id, "ce-type": kind, "ce-inferenceservicename": "m", "ce-namespace": "team-a",
               "ce-component": "predictor", "ce-endpoint": "", "ce-source": "m-predictor-00002-deployment-x"}
    if annotations is not None:
        headers["ce-annotations"] = annotations
    return headers


def test_rows_from_kserves_agent_take_the_version_from_ce_annotations() -> None:
    # Production is v1 (what the endpoint fallback would say); the annotation says v2 answered.
    joiner = EventJoiner(lambda model, version: SPEC, lambda model, endpoint: 1,
                         lambda model, version: "canary" if version == 2 else "default")
    annotations = '{"driftloop.io/model-version": "2"}'
    assert joiner.add(_kserve_event("a", REQUEST_TYPE, annotations), orjson.dumps({"instances": [{"x": 1.0}]})) is None
    rows = joiner.add(_kserve_event("a", RESPONSE_TYPE, annotations), orjson.dumps({"predictions": [1]}))
    assert rows.frame()["version"].tolist() == [2] and rows.frame()["endpoint"].tolist() == ["canary"]


def test_without_any_version_the_endpoint_alias_decides_and_a_bad_annotation_is_refused() -> None:
    joiner = EventJoiner(lambda model, version: SPEC, lambda model, endpoint: 7)
    joiner.add(_kserve_event("b", REQUEST_TYPE, None), orjson.dumps({"instances": [{"x": 1.0}]}))
    rows = joiner.add(_kserve_event("b", RESPONSE_TYPE, None), orjson.dumps({"predictions": [0]}))
    assert rows.frame()["version"].tolist() == [7]
    joiner.add(_kserve_event("c", REQUEST_TYPE, '{"driftloop.io/model-version": "v2"}'),
               orjson.dumps({"instances": [{"x": 1.0}]}))
    with pytest.raises(EventError, match="not a version number"):
        joiner.add(_kserve_event("c", RESPONSE_TYPE, '{"driftloop.io/model-version": "v2"}'),
                   orjson.dumps({"predictions": [0]}))


def _half(joiner: EventJoiner, event_id: str, kind: str, now: float, padding: int = 0):
    headers = {"ce-id": event_id, "ce-type": kind, "ce-inferenceservicename": "m", "ce-modelversion": "1"}
    body = {"instances": [{"x": 1.0}], "pad": "p" * padding} if kind == REQUEST_TYPE else {"predictions": [0]}
    return joiner.add(headers, orjson.dumps(body), now=now)


def test_lone_halves_are_capped_by_count_and_bytes_oldest_dropped_first_and_counted() -> None:
    dropped: list[tuple[str, int]] = []
    joiner = EventJoiner(lambda model, version: SPEC, lambda model, endpoint: 1, max_pending=100,
                         max_pending_bytes=50_000, on_drop=lambda outcome, n: dropped.append((outcome, n)))
    for i in range(250):  # a sender of request halves whose responses never come
        assert _half(joiner, f"lone{i}", REQUEST_TYPE, now=1000.0 + i * 0.01) is None
    assert joiner.pending[0] == 100 and sum(n for _, n in dropped) == 150
    assert {outcome for outcome, _ in dropped} == {"dropped_pending"}
    # The newest 100 wait; the oldest went first: a late response to one of them still completes its pair.
    assert _half(joiner, "lone0", RESPONSE_TYPE, now=1003.0) is None
    assert len(_half(joiner, "lone249", RESPONSE_TYPE, now=1003.0)) == 1
    for i in range(10):  # 10 KiB halves: the byte cap holds well below the count cap
        _half(joiner, f"big{i}", REQUEST_TYPE, now=1004.0, padding=10_000)
    count, size = joiner.pending
    assert size <= 50_000 and count < 100 and "big9" in joiner._pending


def test_unpaired_halves_expire_in_arrival_order() -> None:
    dropped: list[tuple[str, int]] = []
    joiner = EventJoiner(lambda model, version: SPEC, lambda model, endpoint: 1, max_age=60.0,
                         on_drop=lambda outcome, n: dropped.append((outcome, n)))
    for i in range(5):
        _half(joiner, f"e{i}", REQUEST_TYPE, now=100.0 + i * 10)  # arrivals at 100, 110, … 140
    _half(joiner, "late", REQUEST_TYPE, now=175.0)  # e0 (100) and e1 (110) are older than 60 s
    assert list(joiner._pending) == ["e2", "e3", "e4", "late"] and dropped == [("expired_pending", 2)]
    assert joiner.orphaned == 2 and joiner.pending[1] == sum(p.size for p in joiner._pending.values())
