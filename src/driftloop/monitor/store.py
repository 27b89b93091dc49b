"""Logged rows, kept as a partitioned Parquet dataset: ``<root>/<model>/date=YYYY-MM-DD/part-*.parquet``.

Rows reach the store only once the ingest log holds them on disk (monitor/ingest.py); here they wait in
memory until the next checkpoint writes them as parts. A part is written to a temporary name, fsync'd and
renamed (a reader never sees half a file), and its name carries the checkpoint's log position
(``part-s<seq>-…``): parts beyond the last completed checkpoint are the leftovers of a checkpoint a crash
interrupted, and are removed at start-up before the log is replayed over them. The dataset is what the
next training run learns from, once labels are joined.
"""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from pathlib import Path

import pandas as pd

from driftloop.monitor.disk import (
    finish_merges,
    fsync_dir,
    make_dirs,
    merge_files,
    remove_durably,
    write_durably,
)
from driftloop.monitor.rows import Chunk, assemble

COMPACT_PARTS = 32  # a day with more parts than this is merged into one (past days always are)
_TAGGED = re.compile(r"part-s(\d{16})-[0-9a-f]+\.parquet")
_DAY = re.compile(r"date=(\d{4}-\d{2}-\d{2})")


def part_name(tag: int) -> str:
    return f"part-s{tag:016d}-{uuid.uuid4().hex}.parquet"


def part_tag(path: Path) -> int:
    """The checkpoint a part was written by (0 for parts from before checkpoints)."""
    match = _TAGGED.fullmatch(path.name)
    return int(match.group(1)) if match else 0


class RowStore:
    """Rows per model: buffered until a checkpoint, then Parquet parts."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._buffers: dict[str, list[Chunk]] = {}
        self._lock = threading.Lock()  # the buffers
        self._disk = threading.Lock()  # the set of parts: a reader never sees a merge half done
        self.rows_added = 0  # rows this process took in (each on disk already, in the ingest log)
        self.rows_written = 0  # rows this process has written as parts

    def add(self, model: str, rows: Chunk) -> None:
        with self._lock:
            self._buffers.setdefault(model, []).append(rows)
            self.rows_added += len(rows)

    def take(self) -> dict[str, list[Chunk]]:
        """Everything buffered, for a checkpoint to write (:meth:`put_back` if the write fails)."""
        with self._lock:
            taken, self._buffers = self._buffers, {}
        return taken

    def put_back(self, taken: dict[str, list[Chunk]]) -> None:
        """Returns rows a failed checkpoint could not write, ahead of those buffered since."""
        with self._lock:
            for model, frames in taken.items():
                self._buffers[model] = frames + self._buffers.get(model, [])

    def write(self, taken: dict[str, list[Chunk]], tag: int) -> list[Path]:
        """Writes taken rows as durable parts named with ``tag``; returns their paths.

        Raises:
            OSError: a part could not be written (those written before it are returned in the exception's
                ``written`` attribute, for the caller to remove).
        """
        written: list[Path] = []
        try:
            with self._disk:
                for model, frames in taken.items():
                    rows = assemble(frames)  # one DataFrame per checkpoint, not one per event
                    if rows.empty:
                        continue
                    # By UTC day (received_at is UTC): a floor per row, not a string per row as strftime made.
                    for day, part in rows.groupby(rows["received_at"].dt.floor("D")):
                        directory = self.root / model / f"date={day:%Y-%m-%d}"
                        make_dirs(directory)
                        path = directory / part_name(tag)
                        write_durably(path, lambda tmp, part=part: part.to_parquet(tmp, index=False), sync_dir=False)
                        written.append(path)
                for directory in {p.parent for p in written}:
                    fsync_dir(directory)
        except OSError as exc:
            exc.written = written  # type: ignore[attr-defined]
            raise
        self.rows_written += sum(len(f) for frames in taken.values() for f in frames)
        return written

    def remove_after(self, tag: int) -> int:
        """Completes merges a crash interrupted, and removes parts written by a checkpoint later than ``tag``
        (one a crash interrupted)."""
        finish_merges(list(self.root.glob("*/date=*")))
        orphans = [p for p in self.root.glob("*/date=*/part-*.parquet") if part_tag(p) > tag]
        remove_durably(orphans)
        return len(orphans)

    def models(self) -> list[str]:
        stored = {p.name for p in self.root.iterdir() if p.is_dir()} if self.root.exists() else set()
        with self._lock:
            return sorted(stored | set(self._buffers))

    def read(self, model: str, since: pd.Timestamp | None = None) -> pd.DataFrame:
        """Every row of ``model`` — in parts and buffered — received at or after ``since`` if given."""
        with self._disk:
            parts = sorted(self.root.glob(f"{model}/date=*/part-*.parquet"))
            if since is not None:  # a part is written after every row in it arrived
                day, moment = since.strftime("%Y-%m-%d"), since.timestamp()
                parts = [p for p in parts if _day(p) >= day and p.stat().st_mtime >= moment]
            frames = [pd.read_parquet(p) for p in parts]
        with self._lock:
            frames += list(self._buffers.get(model, []))
        rows = assemble(frames)
        if rows.empty:
            return rows
        return rows[rows["received_at"] >= since].reset_index(drop=True) if since is not None else rows

    def newest(self, model: str, limit: int) -> pd.DataFrame:
        """About the newest ``limit`` stored rows of ``model`` (whole parts, newest days first)."""
        frames, count = [], 0
        with self._disk:
            parts = sorted(self.root.glob(f"{model}/date=*/part-*.parquet"), key=lambda p: (_day(p), part_tag(p)))
            for part in reversed(parts):
                frames.append(pd.read_parquet(part))
                count += len(frames[-1])
                if count >= limit:
                    break
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True).sort_values("received_at").tail(limit).reset_index(drop=True)

    def compact(self, upto: int, today: str) -> int:
        """Merges the parts of each past day into one, and today's once there are more than ``COMPACT_PARTS``
        (only parts of completed checkpoints: tag up to ``upto``). Returns the days merged."""
        merged = 0
        with self._disk:
            for directory in sorted(self.root.glob("*/date=*")):
                parts = sorted(p for p in directory.glob("part-*.parquet") if part_tag(p) <= upto)
                if len(parts) < 2 or (_day(directory) >= today and len(parts) <= COMPACT_PARTS):
                    continue
                frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
                target = directory / part_name(max(part_tag(p) for p in parts))
                merge_files(directory, parts, target, lambda tmp, frame=frame: frame.to_parquet(tmp, index=False))
                merged += 1
        return merged

    def retain(self, max_age_days: float | None, max_bytes: int | None, now: pd.Timestamp) -> tuple[int, int]:
        """Deletes whole days of rows older than ``max_age_days``, then the oldest days while the store is over
        ``max_bytes`` (the newest day always stays). Returns (files, bytes) deleted."""
        days = sorted({(_day(p), p.parent) for p in self.root.glob("*/date=*/part-*.parquet")})
        by_day: dict[str, list[Path]] = {}
        for day, directory in days:
            by_day.setdefault(day, []).append(directory)
        sizes = {d: sum(f.stat().st_size for f in d.glob("part-*.parquet")) for _, d in days}
        total = sum(sizes.values())
        cutoff = (now - pd.Timedelta(days=max_age_days)).strftime("%Y-%m-%d") if max_age_days else None
        files = deleted = 0
        ordered = sorted(by_day)
        for i, day in enumerate(ordered):
            too_old = cutoff is not None and day < cutoff
            too_big = max_bytes is not None and total > max_bytes and i < len(ordered) - 1
            if not (too_old or too_big):
                break
            for directory in by_day[day]:
                files += len(list(directory.glob("part-*.parquet")))
                deleted += sizes[directory]
                total -= sizes[directory]
                with self._disk:
                    shutil.rmtree(directory, ignore_errors=True)
                fsync_dir(directory.parent)
        return files, deleted

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("*/date=*/part-*.parquet"))


def _day(path: Path) -> str:
    match = _DAY.fullmatch(path.parent.name if path.suffix else path.name)
    return match.group(1) if match else ""

