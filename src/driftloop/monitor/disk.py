"""Writing files so that they survive a crash: write a temporary name, fsync it, rename, fsync the directory.

A rename is atomic (a reader sees the old file or the new one, never half of one), but only the fsyncs
make it durable: without them a power cut can leave a renamed name pointing at an empty file.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Makes the directory's entries (files created, renamed or removed in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """Creates ``path`` and its missing parents, each made durable in its own parent."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        fsync_dir(directory.parent)


def write_durably(path: Path, write: Callable[[Path], object], *, sync_dir: bool = True) -> Path:
    """Calls ``write(tmp)``, fsyncs the temporary file and renames it to ``path``.

    Args:
        sync_dir: Also fsync the directory (callers that write several files into one directory do that
            once, after the last).
    """
    make_dirs(path.parent)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)
    return path


def remove_durably(paths: list[Path]) -> None:
    """Removes files (missing ones are fine), then fsyncs each directory they were in once."""
    directories = set()
    for path in paths:
        path.unlink(missing_ok=True)
        directories.add(path.parent)
    for directory in directories:
        if directory.exists():
            fsync_dir(directory)


def merge_files(directory: Path, sources: list[Path], target: Path | None, write: Callable[[Path], object]) -> None:
    """Replaces ``sources`` with one ``target`` file (None: with nothing) such that a crash at any point
    leaves either the sources or the target, never both: an intent naming them is written first and
    :func:`finish_merges` completes it at start-up."""
    intent = directory / f".merge-{uuid.uuid4().hex}.json"
    body = json.dumps({"target": target.name if target else None, "sources": [p.name for p in sources]})
    write_durably(intent, lambda tmp: tmp.write_text(body))
    if target is not None:
        write_durably(target, write)
    remove_durably(sources)
    remove_durably([intent])


def finish_merges(directories: list[Path]) -> int:
    """Completes the merges a crash interrupted: where the target was written, the sources it replaced go.
    Returns how many files were removed."""
    removed = 0
    for directory in directories:
        for intent in directory.glob(".merge-*.json"):
            plan = json.loads(intent.read_text())  # whole: it was renamed into place
            if plan["target"] is None or (directory / plan["target"]).exists():
                sources = [directory / name for name in plan["sources"] if (directory / name).exists()]
                remove_durably(sources)
                removed += len(sources)
            remove_durably([intent])
    return removed
