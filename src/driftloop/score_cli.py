"""``driftloop score``: score a CSV/Parquet table offline with a registered version."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from driftloop.batch import DEFAULT_CHUNK_ROWS
from driftloop.cli_style import exit_codes

if TYPE_CHECKING:
    from driftloop.batch.score import ScoreSummary


def add_score_parser(sub, add_common) -> None:
    score = sub.add_parser("score", help="score a CSV/Parquet table with a registered version (batch scoring), "
                           "after the checks serving makes",
                           epilog=exit_codes("scoring failed while running (a store did not answer)",
                                             (2, "… or the version failed its checks (checksum, signature, "
                                                 "library versions), or the table could not be read or written")))
    score.add_argument("--data", required=True, help="the table: CSV or Parquet path or s3:// URI")
    score.add_argument("--model", required=True, help="registered model name")
    which = score.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, help="the version to score with")
    which.add_argument("--alias", help="the alias whose version scores (default: production)")
    score.add_argument("--output", required=True, help="where the scored table goes: .csv or .parquet path or "
                       "s3:// URI (written whole or not at all)")
    score.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS,
                       help="rows scored at a time: bounds memory")
    score.add_argument("--with-features", action="store_true",
                       help="write the typed feature columns too (what 'driftloop monitor ingest-batch' needs)")
    add_common(score)


def run_score(args: argparse.Namespace) -> int:
    from driftloop.batch.score import score_table
    from driftloop.models_cli import open_existing_registry
    from driftloop.settings import Settings

    registry = open_existing_registry(Settings.resolve(args.home, args.registry).registry_uri)
    with _ProgressBar(enabled=sys.stderr.isatty() and not args.json) as progress:
        summary = score_table(args.data, args.output, registry, args.model, version=args.version, alias=args.alias,
                              chunk_rows=args.chunk_rows, with_features=args.with_features, on_progress=progress)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print_score_summary(summary)
    return 0


class _ProgressBar:
    """A progress bar on a terminal's stderr (rows scored of rows in the table); a no-op when disabled (a log
    gets the summary only)."""

    def __init__(self, enabled: bool) -> None:
        self._bar = self._task = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                                 TimeRemainingColumn(), console=Console(file=sys.stderr), transient=True)

    def __enter__(self) -> _ProgressBar:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            return
        if self._task is None:
            self._task = self._bar.add_task("score", total=total)
        self._bar.update(self._task, completed=done, total=total)


def print_score_summary(summary: ScoreSummary) -> None:
    """One row: the version, rows, seconds (loading the version; scoring the table), rows/s and where the scored
    table is (wrapped, never cut: the shared table helper)."""
    from driftloop.tables import Column, Table, print_table

    table = Table("batch scoring", [
        Column("model", wrap=True), Column("version"), Column("rows", right=True), Column("load s", right=True),
        Column("score s", right=True), Column("rows/s", right=True), Column("row id", wrap=True),
        Column("output", wrap=True)])
    table.add_row(summary.model, f"v{summary.version}", f"{summary.rows:,}", f"{summary.load_seconds:.1f}",
                  f"{summary.seconds:.1f}", f"{summary.rows_per_second:,.0f}", summary.id_column, summary.output)
    print_table(table, sys.stdout)
