"""Durable ingestion without a server: the log, its replay after a crash, checkpoints a crash interrupted, and
writes that fail. A "crash" here is a second Ingest opened over the same directory while the first one's
buffers are abandoned, exactly what a killed process leaves on disk."""

from __future__ import annotations

import asyncio
import os
import time

import orjson
import pandas as pd
import pytest

from driftloop.data import DatasetSpec, FeatureSpec
from driftloop.monitor.events import EventJoiner
from driftloop.monitor.ingest import Ingest, JournalError
from driftloop.monitor.journal import segments
from driftloop.monitor.labels import LabelStore
from driftloop.monitor.store import RowStore
from driftloop.serving.payload_logger import REQUEST_TYPE, RESPONSE_TYPE

SPEC = DatasetSpec("y", (FeatureSpec("x", "numeric"),))


def open_ingest(root) -> Ingest:
    """What the monitor does at start-up, over the store at ``root``."""
    ingest = Ingest(root, EventJoiner(lambda m, v: SPEC, lambda m, e: 1), RowStore(root / "rows"), LabelStore(root),
                    on_rows=lambda model, rows: None)
    ingest.discard_unfinished_checkpoint()
    ingest.open()
    return ingest


def half(event_id: str, kind: str, x: float = 1.0) -> tuple[dict, bytes]:
    body = {"instances": [{"x": x}]} if kind == REQUEST_TYPE else {"predictions": [int(x) % 2]}
    return ({"ce-id": event_id, "ce-type": kind, "ce-inferenceservicename": "m", "ce-modelversion": "1",
             "authorization": "Bearer not-to-be-kept"}, orjson.dumps(body))


async def send_pairs(ingest: Ingest, ids: list[str], first_half_only: tuple[str, ...] = ()) -> None:
    for i, event_id in enumerate(ids):
        await ingest.event(*half(event_id, REQUEST_TYPE, i))
        if event_id not in first_half_only:
            await ingest.event(*half(event_id, RESPONSE_TYPE, i))
        await ingest.feedback([{"id": event_id, "label": i % 2}])


def stored(root) -> tuple[list[str], list[str]]:
    """Event ids of the rows and keys of the labels in the Parquet store (every part, as on disk)."""
    rows = RowStore(root / "rows").read("m")
    parts = list((root / "labels").glob("part-*.parquet"))
    keys = pd.concat([pd.read_parquet(p) for p in parts])["key"].tolist() if parts else []
    return sorted(rows["event_id"]) if not rows.empty else [], sorted(keys)


def test_acknowledged_records_survive_a_crash_once_even_when_replayed_twice(tmp_path) -> None:
    first = open_ingest(tmp_path)
    asyncio.run(send_pairs(first, ["a", "b", "c"], first_half_only=("c",)))
    first.flush()  # a checkpoint: a and b in parts, c's request half in the snapshot
    asyncio.run(send_pairs(first, ["d", "e"]))  # acknowledged, only in the log
    # The crash cut the last write short: a torn record after d and e.
    segment = segments(tmp_path / "ingest")[-1][1]
    with open(segment, "ab") as handle:
        handle.write(b"\x40\x00\x00\x00torn")
    second = open_ingest(tmp_path)  # replays d and e; c's request half waits again
    third = open_ingest(tmp_path)  # a crash before any checkpoint: the same records replayed again
    asyncio.run(third.event(*half("c", RESPONSE_TYPE, 2)))  # c's other half, after the restarts
    third.close()
    assert segments(tmp_path / "ingest") == []  # a clean stop's checkpoint covers every segment: all deleted
    rows, labels = stored(tmp_path)
    assert rows == ["a", "b", "c", "d", "e"] and labels == ["a:0", "b:0", "c:0", "d:0", "e:0"]
    assert second.replayed == 6 and open_ingest(tmp_path).replayed == 0
    assert not any(b"not-to-be-kept" in p.read_bytes() for p in (tmp_path / "ingest").iterdir())


def test_a_checkpoint_cut_short_by_a_crash_is_redone_from_the_log(tmp_path) -> None:
    first = open_ingest(tmp_path)
    asyncio.run(send_pairs(first, ["a", "b"]))
    first.flush()
    asyncio.run(send_pairs(first, ["c", "d"]))
    # The crash came after the checkpoint's parts were written and before its snapshot: c and d are in
    # parts, yet the last completed checkpoint does not cover them.
    first.store.write(first.store.take(), first.applied)
    first.labels.write(first.labels.take(), first.applied)
    assert stored(tmp_path)[0] == ["a", "b", "c", "d"]
    second = open_ingest(tmp_path)
    second.flush()
    assert stored(tmp_path) == (["a", "b", "c", "d"], ["a:0", "b:0", "c:0", "d:0"])


def test_a_failed_write_acknowledges_nothing_and_keeps_nothing(tmp_path) -> None:
    (tmp_path / "ingest").mkdir()
    # The first segment the log opens is a device that is always full: every write fails (ENOSPC).
    os.symlink("/dev/full", tmp_path / "ingest" / f"log-{1:016d}.wal")
    ingest = open_ingest(tmp_path)
    with pytest.raises(JournalError, match="could not write to its ingest log"):
        asyncio.run(ingest.event(*half("lost", REQUEST_TYPE)))
    assert ingest.joiner.pending == (0, 0)  # nothing of it was applied
    asyncio.run(send_pairs(ingest, ["kept"]))  # the log moved on to a new segment
    open_ingest(tmp_path).close()
    assert stored(tmp_path) == (["kept"], ["kept:0"])


def test_a_pair_refused_after_it_was_logged_is_refused_again_at_restart_and_the_monitor_starts(tmp_path) -> None:
    from driftloop.monitor.events import EventError

    first = open_ingest(tmp_path)
    asyncio.run(send_pairs(first, ["a"]))
    headers, _ = half("odd", REQUEST_TYPE)
    asyncio.run(first.event(headers, orjson.dumps({"instances": [{"x": 1.0}, {"x": 2.0}]})))
    with pytest.raises(EventError):  # two rows, one prediction: the sender hears 400, the record is in the log
        asyncio.run(first.event(*half("odd", RESPONSE_TYPE)))
    # A crash: no checkpoint. The restart replays the log, refuses the pair again and goes on.
    second = open_ingest(tmp_path)
    second.close()
    assert stored(tmp_path)[0] == ["a"]


def test_records_whose_loop_closed_before_applying_them_are_still_applied_in_order(tmp_path) -> None:
    """Batches are applied on the loop that submitted them; one that closed first (its callers gone) must not
    leave a written record unapplied, or a later checkpoint would cover a record that is in no part."""
    from driftloop.monitor.events import event_headers

    ingest = open_ingest(tmp_path)

    async def submit_and_leave() -> None:  # no await: the loop closes before the log is written
        for i, event_id in enumerate(["p", "q", "r"]):
            for kind in (REQUEST_TYPE, RESPONSE_TYPE):
                headers, body = half(event_id, kind, i)
                ingest.event_nowait(event_headers(headers), body)

    asyncio.run(submit_and_leave())
    asyncio.run(send_pairs(ingest, ["s"]))  # a new loop's records come after them
    ingest.close()
    assert stored(tmp_path) == (["p", "q", "r", "s"], ["s:0"])
    assert open_ingest(tmp_path).replayed == 0


def test_halves_taken_in_during_one_pass_of_the_loop_are_synced_together(tmp_path) -> None:
    """Group commit: the writer is woken once the loop's pass is over, so what one pass took in is one fsync
    (woken per record, it synced batches of one or two and cost a thread wake-up per event)."""
    from driftloop.monitor.events import event_headers

    commits: list[int] = []
    ingest = Ingest(tmp_path, EventJoiner(lambda m, v: SPEC, lambda m, e: 1), RowStore(tmp_path / "rows"),
                    LabelStore(tmp_path), on_rows=lambda model, rows: None, on_commit=commits.append)
    ingest.discard_unfinished_checkpoint()
    ingest.open()

    def take(headers: dict, body: bytes) -> asyncio.Future:
        time.sleep(0.002)  # as reading the next socket would, the interpreter's lock is let go within the pass
        return ingest.event_nowait(event_headers(headers), body)

    async def one_pass_then_another() -> None:
        taken = [take(h, b) for i in range(10)
                 for h, b in (half(f"e{i}", REQUEST_TYPE, i), half(f"e{i}", RESPONSE_TYPE, i))]
        await asyncio.gather(*taken)
        await send_pairs(ingest, ["alone"])  # one record per pass: each still written at once

    asyncio.run(one_pass_then_another())
    ingest.close()
    assert commits[0] == 20  # the pass's twenty halves, one fsync
    assert commits[1:] and set(commits[1:]) == {1}  # then each awaited record on its own, written at once
    assert stored(tmp_path)[0] == sorted([f"e{i}" for i in range(10)] + ["alone"])


def test_records_of_a_loop_that_stopped_before_waking_the_writer_are_still_written(tmp_path) -> None:
    from driftloop.monitor.events import event_headers

    ingest = open_ingest(tmp_path)

    async def take_then_stop() -> None:
        asyncio.get_running_loop().stop()  # the pass ends the loop: the writer's wake never runs
        for kind in (REQUEST_TYPE, RESPONSE_TYPE):
            headers, body = half("lone", kind)
            ingest.event_nowait(event_headers(headers), body)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(take_then_stop())
    loop.close()
    deadline = time.monotonic() + 10
    while ingest.journal.last_written < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ingest.journal.last_written == 2  # written without waiting for another record or close()
    ingest.close()
    assert stored(tmp_path)[0] == ["lone"]
