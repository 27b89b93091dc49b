"""Terminal output: live task progress and the end-of-run summary table."""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # keeps `driftloop models …` from importing scikit-learn just to print a table
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


def print_spec(spec: DatasetSpec, stream: TextIO | None = None, source: str = "") -> None:
    """The spec as a table, and every note inference left (a column it was unsure about)."""
    console = _console(stream or sys.stdout)
    table = Table(title=f"{source + ' ' if source else ''}dataset spec (target: {spec.target})")
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
    for name, note in spec.notes.items():
        console.print(f"[yellow]note[/] {name}: {note}")


def _stdout() -> Console:
    return _console(sys.stdout)


def print_models(rows: list[dict], registry_uri: str) -> None:
    table = Table(title=f"models in {registry_uri}")
    for column in ("model", "versions", "production", "canary", "other aliases", "last change"):
        table.add_column(column)
    for row in rows:
        aliases = dict(row["aliases"])
        production, canary = aliases.pop("production", None), aliases.pop("canary", None)
        table.add_row(row["name"], str(row["versions"]), _v(production), _v(canary),
                      ", ".join(f"{a}→v{n}" for a, n in sorted(aliases.items())) or "–",
                      f"{row['last_action']} at {row['last_change']}" if row["last_change"] else "–")
    _stdout().print(table)


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else "–"


def print_versions(name: str, rows: list[dict], policy=None, now: float = 0.0) -> None:
    """The versions table, then the approval policy and what waits for approval."""
    table = Table(title=f"versions of {name}")
    for column in ("version", "created", "estimator", "roc_auc", "data", "run", "aliases"):
        table.add_column(column)
    for row in rows:
        lineage = row["lineage"]
        aliases = ", ".join(row["aliases"]) + (" [dim](archived)[/]" if row["archived"] else "")
        if row.get("pending_approval"):
            aliases += " [yellow](pending approval)[/]"
        roc = row["metrics"].get("roc_auc")
        table.add_row(f"v{row['version']}", row["created_at"], str(lineage.get("estimator", "?")),
                      f"{roc:.4f}" if roc is not None else "–", str(lineage.get("data_uri", "?")),
                      str(lineage.get("run_name") or lineage.get("run_id") or "?"), aliases or "–")
    console = _stdout()
    console.print(table)
    console.print(f"policy: {policy.describe() if policy else 'promotions need no approval'}", markup=False)
    for row in rows:
        if row.get("pending_approval"):
            console.print(f"pending: {_waiting(row['pending_approval'], now)}", markup=False, soft_wrap=True)


def _waiting(pending: dict, now: float) -> str:
    from datetime import datetime

    from driftloop.registry.approvals import format_duration

    age = now - datetime.fromisoformat(pending["requested_at"]).timestamp()
    left = datetime.fromisoformat(pending["expires_at"]).timestamp() - now
    return (f"{pending['model']} v{pending['version']} waits for approval beside v{pending['stable_version']} "
            f"for {format_duration(age)}; rolled back in {format_duration(left)} (at {pending['expires_at']}); "
            f"registered by {pending['registered_by'] or '?'}, triggered by {pending['triggered_by'] or '?'}")


def print_policy(name: str, policy, entry=None) -> None:
    done = f" (entry {entry.seq}, by {entry.actor})" if entry is not None else ""
    _stdout().print(f"{name}: {policy.describe() if policy else 'promotions need no approval'}{done}", markup=False)


def print_pending(waiting: list, expired: list, now: float) -> None:
    """What waits for approval, and what this call rolled back because its time was up."""
    console = _stdout()
    for pending in expired:
        console.print(f"expired: {pending.model} v{pending.version} rolled back (deadline {pending.expires_at})",
                      markup=False, soft_wrap=True)
    for pending in waiting:
        console.print(f"pending: {_waiting(pending.to_dict(), now)}", markup=False, soft_wrap=True)
    if not waiting:
        console.print("nothing waits for approval")


def print_version(version: dict) -> None:
    console = _stdout()
    console.print(f"[bold]{version['name']} v{version['version']}[/]  created {version['created_at']}")
    console.print(f"  storage   {version['storage_uri']}", soft_wrap=True)
    console.print(f"  format    {version['model_format']}")
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in version["metrics"].items())
    console.print(f"  metrics   {metrics}")
    lineage = Table(title="lineage", show_header=False)
    lineage.add_column("field")
    lineage.add_column("value")
    for key, value in sorted(version["lineage"].items()):
        lineage.add_row(key, value if isinstance(value, str) else json.dumps(value, default=str))
    console.print(lineage)
    files = Table(title="files")
    files.add_column("file")
    files.add_column("sha256")
    for rel, digest in sorted(version["files"].items()):
        files.add_row(rel, digest)
    console.print(files)


def print_audit_entry(entry) -> None:
    _stdout().print(f"{entry.action}: {entry.model} {entry.alias or ''} {_v(entry.from_version)} → "
                    f"{_v(entry.to_version)} (entry {entry.seq}, by {entry.actor})")


def print_history(name: str, entries: list) -> None:
    table = Table(title=f"audit trail of {name}")
    for column in ("#", "when", "who", "action", "alias", "from", "to", "reason"):
        table.add_column(column)
    for e in entries:
        table.add_row(str(e.seq), e.at, e.actor, e.action, e.alias or "–", _v(e.from_version), _v(e.to_version),
                      e.reason)
    _stdout().print(table)


def print_verification(report: dict, anchored: bool = True) -> None:
    """One line per model (``Verification`` by name), its problems beneath; then what was signed by whom."""
    console = _stdout()
    for name, result in report.items():
        if result.problems:
            console.print(f"[red]✗[/] {name}: {len(result.problems)} problem(s)")
            for problem in result.problems:
                console.print(f"    {problem}", soft_wrap=True, markup=False)
        else:
            console.print(f"[green]✓[/] {name}: audit chain intact, every file matches its checksum")
        console.print(f"    signed: {_versions(result.signed_versions)}; {_entries(result.signed_entries)} "
                      f"(key {', '.join(result.key_ids) or '–'})", soft_wrap=True)
        if result.unsigned_versions or result.unsigned_entries:
            console.print(f"    unsigned: {_versions(result.unsigned_versions)}; {_entries(result.unsigned_entries)}",
                          soft_wrap=True)
    if not anchored:
        console.print("[yellow]![/] no trusted key configured: signatures were checked only against keys the "
                      "registry itself publishes; pin them with DRIFTLOOP_TRUSTED_KEY_IDS or DRIFTLOOP_VERIFY_KEY",
                      soft_wrap=True)


def _versions(versions: list[int]) -> str:
    return " ".join(f"v{v}" for v in versions) if versions else "no versions"


def _entries(count: int) -> str:
    return f"{count} audit {'entry' if count == 1 else 'entries'}"


def print_reproduction(outcome) -> None:
    console = _stdout()
    table = Table(title=f"reproducing {outcome.name} v{outcome.version}")
    for column in ("metric", "registered", "reproduced"):
        table.add_column(column, justify="right")
    for metric, (registered, again) in outcome.metrics.items():
        table.add_row(metric, f"{registered:.6f}", "–" if again is None else f"{again:.6f}")
    console.print(table)
    console.print(f"  data {'unchanged' if outcome.data_matches else '[red]changed[/]'}: {outcome.data_uri}")
    if outcome.max_prediction_diff is not None:
        console.print(f"  largest prediction difference on the holdout: {outcome.max_prediction_diff:.3g}")
    if outcome.reproduced:
        console.print("[green]reproduced[/]: same metrics and predictions")
    for problem in outcome.problems:
        console.print(f"[red]differs[/]: {problem}")


def print_rollout_step(step) -> None:
    mark = {"pass": "[green]✓[/]", "fail": "[red]✗[/]", "inconclusive": "[yellow]?[/]"}[step.verdict]
    _stdout().print(f"  {mark} canary at {step.percent:>3}%: {step.verdict} — {'; '.join(step.reasons)}")


def print_drift(result) -> None:
    console = _stdout()
    table = Table(title=f"drift: {result.n_current} current rows vs {result.n_reference} reference rows")
    for column in ("feature", "kind", "method", "score", "threshold", "drift"):
        table.add_column(column, justify="right" if column in ("score", "threshold") else "left")
    for f in result.features:
        table.add_row(f.column, f.kind, f.method, f"{f.score:.4f}", f"{f.threshold:g}",
                      "[red]drift[/]" if f.drifted else "[green]ok[/]")
    console.print(table)
    verdict = "[red]DATASET DRIFT[/]" if result.dataset_drift else "[green]no dataset drift[/]"
    console.print(f"{verdict}: {len(result.drifted_features)} of {len(result.features)} features drifted "
                  f"({result.drift_share:.0%}; threshold {result.config['drift_share']:.0%})")
    if result.report_path:
        console.print(f"report: {result.report_path}", soft_wrap=True)


def print_monitor_status(status: dict, url: str) -> None:
    """The monitor's latest windows per model: drift, prediction drift, realised quality, trigger state. A status
    read from the store (``offline``) has the windows as last written, without the live counters."""
    console = _stdout()
    if status.get("offline"):
        console.print(f"[bold]driftloop monitor store[/] {status['store']} (read offline: windows as last written, "
                      "realised accuracy as of then)")
    else:
        console.print(f"[bold]driftloop monitor[/] {url}: {status['events_received']} events, {status['rows_stored']} "
                      f"rows stored, {status['labels']} labels, {status['events_rejected']} rejected")
    if ingest := status.get("ingest"):
        console.print(f"ingest log: record {ingest['applied']} applied, checkpoint {ingest['checkpoint']}, "
                      f"{ingest['replayed_at_start']} replayed at start, {ingest['pending_halves']} halves waiting")
    for model, state in status["models"].items():
        aliases = ", ".join(f"{a} v{v}" for a, v in sorted(state["aliases"].items())) or "nothing serving"
        open_rows = state.get("open_window_rows")
        title = (f"{model}: the last {len(state['windows'])} windows in the store" if status.get("offline")
                 else f"{model} ({aliases}); {open_rows} rows in the open window")
        table = Table(title=title)
        for column in ("window", "rows", "ref", "drift share", "drifted features", "prediction", "accuracy",
                       "decision", "report"):
            table.add_column(column, overflow="fold")  # long values wrap onto more lines, never cut
        for w in state["windows"]:
            quality = w.get("quality") or {}
            accuracy = quality.get("accuracy")
            prediction = w.get("prediction_drift") or {}
            share = "-" if w["drift_share"] is None else f"{w['drift_share']:.2f}"
            table.add_row(
                str(w["id"]), str(w["n_rows"]), _v(w["reference_version"]),
                f"[red]{share}[/]" if w.get("dataset_drift") else share,
                ", ".join(w["drifted_features"][:4]) + (" …" if len(w["drifted_features"]) > 4 else "")
                or (w.get("error") or "-"),
                f"{prediction['score']:.3f}{' ✗' if prediction.get('drifted') else ''}" if prediction else "-",
                "-" if accuracy is None else f"{accuracy:.3f} ({quality['labelled']})",
                (w.get("decision") or {}).get("action", "-"), w.get("report") or "-",
            )
        console.print(table)
        trigger = state.get("trigger") or {}
        if trigger.get("stopped"):
            console.print(f"[red]retraining stopped[/] after {trigger['consecutive_failures']} failed retrains")
        for r in state["retrains"]:
            console.print(f"  retrain {r.get('key', '')}: {r['state']}"
                          + (f" → v{r['version']}" if r.get("version") else "")
                          + (f" ({r['error']})" if r.get("error") else ""))


_SOURCE_STYLE = {"demo": "bold", "monitor": "cyan", "registry": "magenta"}


def print_demo_event(event) -> None:
    """One line of the demo's live timeline."""
    console = Console(file=sys.stderr, highlight=False)
    style = _SOURCE_STYLE.get(event.source, "")
    console.print(f"[dim]{event.seconds:7.1f}s[/] [{style}]{event.source:>8}[/] {event.text}")


def print_demo_summary(summary) -> None:
    """The demo's end: versions, triggers and the time from drift onset to a promoted version."""
    console = Console(file=sys.stderr, highlight=False)
    table = Table(title="driftloop demo: versions")
    for column in ("version", "aliases", "triggered by", "parent", "roc_auc", "accuracy"):
        table.add_column(column)
    for v in summary.versions:
        table.add_row(f"v{v['version']}", ", ".join(v["aliases"]) or "-", str(v["triggered_by"] or "-"),
                      _v(v["parent_version"]), _fmt(v["roc_auc"]), _fmt(v["accuracy"]))
    console.print(table)
    loop = Table(title="the loop")
    loop.add_column("what")
    loop.add_column("value")
    loop.add_row("outcome", f"[green]{summary.outcome}[/]" if summary.outcome == "promoted" else f"[red]{summary.outcome}[/]")
    counts = Counter(t["action"].removeprefix("retrain-") for t in summary.triggers)
    loop.add_row("triggers", ", ".join(f"{n} {action}" for action, n in counts.items()) or "none")
    loop.add_row("drift onset → promoted", "-" if summary.onset_to_promotion_seconds is None
                 else f"{summary.onset_to_promotion_seconds:.1f} s")
    if summary.after_promotion:
        shares = ", ".join("-" if w["drift_share"] is None else f"{w['drift_share']:.2f}"
                           for w in summary.after_promotion)
        quiet = not any(w["signal"] for w in summary.after_promotion) and not summary.retrains_after_promotion
        loop.add_row("after promotion", f"drift share {shares}; "
                     + ("[green]alarm cleared, no further retrain[/]" if quiet else
                        f"[red]still signalling ({summary.retrains_after_promotion} further retrains)[/]"))
    traffic = summary.traffic or {}
    loop.add_row("traffic", f"{traffic.get('sent', 0)} rows at {traffic.get('rate', 0)}/s, "
                            f"{traffic.get('errors', 0)} errors, {traffic.get('labels_posted', 0)} labels")
    console.print(loop)
    console.print(f"summary: {summary.summary_path}")
    console.print(f"next: driftloop models history churn --registry {summary.registry}")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"
