"""Terminal output: live task progress and the end-of-run summary table."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.table import Table

from driftloop.data import DatasetSpec
from driftloop.runners.local import RunSummary, TaskEvent

_MARK = {"running": "[cyan]…[/]", "succeeded": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[yellow]–[/]"}


class Progress:
    """Prints one line per task event to the terminal (stderr by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.console = Console(file=stream or sys.stderr, highlight=False)

    def __call__(self, event: TaskEvent) -> None:
        if event.state == "running":
            self.console.print(f"  {_MARK['running']} {event.task}")
        elif event.state == "skipped":
            self.console.print(f"  {_MARK['skipped']} {event.task} skipped (gate did not pass)")
        else:
            self.console.print(f"  {_MARK[event.state]} {event.task} [dim]{event.seconds:.1f}s[/]")


def summary_table(summaries: list[RunSummary]) -> Table:
    """One row per run: version, gate, metrics against the champion, deploy action."""
    table = Table(title="CT runs (champion in brackets)", show_lines=False)
    for column in ("#", "state", "model", "version", "gate", "roc_auc", "accuracy", "f1", "deploy", "time"):
        table.add_column(column, justify="right" if column in {"roc_auc", "accuracy", "f1", "time"} else "left")
    for number, s in enumerate(summaries, 1):
        metric = _metric_cell(s.metrics, s.champion_metrics or {})
        gate = "–" if s.gate_passed is None else ("[green]passed[/]" if s.gate_passed else "[red]failed[/]")
        state = "[green]SUCCEEDED[/]" if s.state == "SUCCEEDED" else "[red]FAILED[/]"
        version = f"v{s.version}" if s.version is not None else "–"
        table.add_row(str(number), state, s.model_name, version, gate, metric("roc_auc"), metric("accuracy"),
                      metric("f1"), s.deploy_action or "–", f"{s.seconds:.0f}s")
    return table


def _metric_cell(metrics: dict, champion: dict):
    def cell(name: str) -> str:
        if name not in metrics:
            return "–"
        return f"{metrics[name]:.4f}" + (f" [dim]({champion[name]:.4f})[/]" if name in champion else "")

    return cell


def print_summary(summaries: list[RunSummary], stream: TextIO | None = None) -> None:
    """The summary table, then for each run its gate reasons and where the artifacts are."""
    console = _console(stream or sys.stdout)
    console.print(summary_table(summaries))
    for number, s in enumerate(summaries, 1):
        console.print(f"[bold]#{number} {s.run_name}[/]")
        for reason in s.gate_reasons:
            console.print(f"  gate: {reason}")
        if s.error:
            console.print(f"  [red]error:[/] {s.error}")
        for label, path in s.artifacts.items():
            console.print(f"  {label:<18} {path}", soft_wrap=True)
        console.print(f"  {'log':<18} {s.log_path}", soft_wrap=True)


def _console(stream: TextIO) -> Console:
    # Logs and pipes have no width; give tables room rather than wrapping every cell.
    return Console(file=stream, highlight=False, width=None if stream.isatty() else 120)


def print_spec(spec: DatasetSpec, stream: TextIO | None = None) -> None:
    console = _console(stream or sys.stdout)
    table = Table(title=f"dataset spec (target: {spec.target})")
    table.add_column("column")
    table.add_column("role")
    for feature in spec.features:
        table.add_row(feature.name, feature.kind)
    for name, role in ((spec.id_column, "id"), (spec.timestamp_column, "timestamp")):
        if name:
            table.add_row(name, role)
    for name, reason in spec.ignored.items():
        table.add_row(name, f"[yellow]ignored[/]: {reason}")
    console.print(table)
