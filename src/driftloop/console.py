"""Terminal output of every command: live task progress, and tables and lines through :mod:`driftloop.tables`."""

from __future__ import annotations

import sys
from collections import Counter
from typing import TYPE_CHECKING, TextIO

from rich.console import Console

from driftloop.tables import (
    EMPTY,
    Cell,
    Column,
    Table,
    cell_text,
    metric,
    moment,
    number,
    print_lines,
    print_table,
    print_wrapped,
    signed,
)

if TYPE_CHECKING:  # keeps `driftloop models …` from importing scikit-learn just to print a table
    from driftloop.data import DatasetSpec
    from driftloop.runners.local import RunSummary, TaskEvent

_MARK = {"running": "[cyan]…[/]", "succeeded": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[yellow]–[/]"}


class Progress:
    """Prints one line per task event to the terminal (stderr by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.console = Console(file=stream or sys.stderr, highlight=False, soft_wrap=True)

    def __call__(self, event: TaskEvent) -> None:
        if event.state == "running":
            self.console.print(f"  {_MARK['running']} {event.task}")
        elif event.state == "skipped":
            self.console.print(f"  {_MARK['skipped']} {event.task} skipped (gate did not pass)")
        else:
            self.console.print(f"  {_MARK[event.state]} {event.task} [dim]{event.seconds:.1f}s[/]")


def print_summary(summaries: list[RunSummary], stream: TextIO | None = None) -> None:
    """Per run: what it made and where it went, its metrics against the champion, the gate's reasons, and the
    artifacts it wrote. A run that failed before it evaluated anything shows only what it wrote; its error is
    the caller's one ``driftloop: error:`` line."""
    stream = stream or sys.stdout
    for index, s in enumerate(summaries, 1):
        if s.state != "SUCCEEDED" and s.version is None and not s.metrics:  # nothing to tabulate: what it wrote
            print_lines([f"CT run #{index} {s.run_name} (model {s.model_name}) FAILED after {s.seconds:.0f} s"],
                        stream)
            _print_artifacts(s, stream)
            continue
        state = Cell(s.state, "green" if s.state == "SUCCEEDED" else "red")
        overview = Table(f"CT run #{index} {s.run_name}", [
            Column("state"), Column("model", wrap=True), Column("version"), Column("gate"), Column("deploy"),
            Column("time", right=True)])
        gate = None if s.gate_passed is None else Cell("passed", "green") if s.gate_passed else Cell("failed", "red")
        overview.add_row(state, s.model_name, _v(s.version), gate, s.deploy_action, f"{s.seconds:.0f} s")
        print_table(overview, stream)
        if s.metrics:
            champion = s.champion_metrics or {}
            print_table(metrics_table(s.metrics, champion, "candidate", "champion" if champion else ""), stream)
            _print_reasons("gate", s.gate_reasons, stream)
        _print_artifacts(s, stream)


def _print_artifacts(summary: RunSummary, stream: TextIO) -> None:
    artifacts = Table("", [Column("artifact"), Column("path", wrap=True)], spaced=False)
    for label, path in summary.artifacts.items():
        artifacts.add_row(label, path)
    artifacts.add_row("log", summary.log_path)
    print_table(artifacts, stream)


def metrics_table(candidate: dict, champion: dict, name: str, champion_name: str, title: str = "") -> Table:
    """Metrics side by side, with the difference and whether it is better or worse — lower is better for errors
    (log loss, Brier, RMSE, MAE: marked ↓); an error in the target's units also gets its difference relative to
    the champion's, as the gate judges it. The baselines of a model that ignores the features (``baseline_rmse``)
    come last, not compared."""
    from driftloop.tasks import IN_TARGET_UNITS, higher_is_better

    columns = [Column("metric"), Column(name, right=True)]
    if champion:
        columns += [Column(champion_name, right=True), Column("Δ", right=True), Column("")]
    table = Table(title, columns)
    scores = {k: v for k, v in candidate.items()
              if not k.startswith("n_") and isinstance(v, (int, float))}  # counts (n_holdout) are no metric
    baselines = {k: v for k, v in scores.items() if k.startswith(BASELINE_PREFIX)}
    for metric_name, value in scores.items():
        if metric_name in baselines:
            continue
        row: list = [metric_name + ("" if higher_is_better(metric_name) else " ↓"), metric(value)]
        if champion:
            other = champion.get(metric_name)
            if other is None:
                row += [None, None, None]
            else:
                delta = value - other
                better = delta if higher_is_better(metric_name) else -delta
                verdict = Cell("better", "green") if better > 0 else Cell("worse", "red") if better < 0 else "same"
                relative = f" ({delta / other:+.1%})" if metric_name in IN_TARGET_UNITS and other > 0 else ""
                row += [metric(other), Cell(signed(delta) + relative, getattr(verdict, "style", None)), verdict]
        table.add_row(*row)
    for metric_name, value in baselines.items():
        row = [Cell(metric_name, "dim"), metric(value)]
        table.add_row(*(row + [None, None, None] if champion else row))
    return table


# A metric the evaluation reports for a model that ignores the features: ``baseline_rmse`` is the holdout mean's.
BASELINE_PREFIX = "baseline_"


def _print_reasons(label: str, reasons: list[str], stream: TextIO) -> None:
    print_wrapped([f"{label}:"] + [f"  - {reason}" for reason in reasons], stream)


def print_spec(spec: DatasetSpec, stream: TextIO | None = None, source: str = "") -> None:
    """The spec as a table, and every note inference left (a column it was unsure about)."""
    stream = stream or sys.stdout
    table = Table(f"{source + ' ' if source else ''}dataset spec (target: {spec.target})",
                  [Column("column", wrap=True), Column("role", wrap=True)])
    for feature in spec.features:
        table.add_row(feature.name, feature.kind)
    for name, role in ((spec.id_column, "id"), (spec.timestamp_column, "timestamp")):
        if name:
            table.add_row(name, role)
    for name, reason in spec.ignored.items():
        table.add_row(name, Cell(f"ignored: {reason}", "yellow"))
    print_table(table, stream)
    from driftloop.tasks import describe_task

    how = f" — inferred from {spec.target}; declare another with --task" if source == "inferred" else ""
    print_wrapped([f"task: {describe_task(spec.task, spec.target_classes)}{how}"]
                  + [f"note {name}: {note}" for name, note in spec.notes.items()], stream)


def print_models(rows: list[dict], registry_uri: str) -> None:
    table = Table(f"models in {registry_uri}", [
        Column("model", wrap=True), Column("task"), Column("versions", right=True), Column("production"),
        Column("canary"), Column("other aliases", wrap=True), Column("last change", wrap=True, fold=False)])
    for row in rows:
        aliases = dict(row["aliases"])
        production, canary = aliases.pop("production", None), aliases.pop("canary", None)
        table.add_row(row["name"], row.get("task"), row["versions"], _v(production), _v(canary),
                      ", ".join(f"{a}→v{n}" for a, n in sorted(aliases.items())) or None,
                      f"{row['last_action']} at {moment(row['last_change'])}" if row["last_change"] else None)
    print_table(table)


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else EMPTY


def gate_metric(version: dict) -> str | None:
    """The metric a version's gate judged (its lineage's gate record); ``roc_auc`` for a binary version registered
    before the gate was recorded; None when neither says."""
    recorded = ((version.get("lineage") or {}).get("gate") or {}).get("thresholds", {}).get("metric")
    return recorded or ("roc_auc" if "roc_auc" in (version.get("metrics") or {}) else None)


def print_versions(name: str, rows: list[dict], policy=None, now: float = 0.0, task: str = "") -> None:
    """The versions table — with the score each version's gate judged — then the approval policy and what
    waits for approval; ``task`` (the newest version's, in words) heads the table."""
    gates = [gate_metric(row) for row in rows]
    shared = gates[0] if gates and all(g == gates[0] for g in gates) else None
    table = Table(f"versions of {name}" + (f" ({task})" if task else ""), [
        Column("version"), Column("created", wrap=True, fold=False), Column("estimator", wrap=True),
        Column(shared or "gate metric", right=True), Column("aliases", wrap=True), Column("data", below=True),
        Column("run", below=True)])
    for row, gate in zip(rows, gates):
        lineage = row["lineage"]
        aliases = ", ".join(row["aliases"]) + (" (archived)" if row["archived"] else "")
        if row.get("pending_approval"):
            aliases += " (pending approval)"
        score = metric(row["metrics"].get(gate)) if gate else None
        table.add_row(f"v{row['version']}", moment(row["created_at"]), str(lineage.get("estimator", "?")),
                      score if shared or not gate else f"{gate} {score}", aliases.strip() or None,
                      str(lineage.get("data_uri", "?")), str(lineage.get("run_name") or lineage.get("run_id") or "?"))
    print_table(table)
    lines = [f"policy: {policy.describe() if policy else 'promotions need no approval'}"]
    lines += [f"pending: {_waiting(row['pending_approval'], now)}" for row in rows if row.get("pending_approval")]
    print_lines(lines)


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
    print_lines([f"{name}: {policy.describe() if policy else 'promotions need no approval'}{done}"])


def print_pending(waiting: list, expired: list, now: float) -> None:
    """What waits for approval, and what this call rolled back because its time was up."""
    lines = [f"expired: {p.model} v{p.version} rolled back (deadline {p.expires_at})" for p in expired]
    lines += [f"pending: {_waiting(p.to_dict(), now)}" for p in waiting]
    print_lines(lines or ["nothing waits for approval"])


def print_version(version: dict, decision: dict | None = None, task: str = "") -> None:
    """One version: where it is stored, its metrics against the champion it was judged with, the gate's decision
    in words, its lineage and its files.

    Args:
        decision: The gate decision of the version's evaluation (``evaluation.json``: candidate and champion
            metrics, thresholds, reasons); without it, the lineage's gate record is shown.
        task: The version's task in words (``multiclass (3 classes: …)``), from its spec.
    """
    lineage = dict(version["lineage"])
    gate = decision or lineage.get("gate") or {}
    lineage.pop("gate", None)
    metrics = version["metrics"]
    about = Table(f"{version['name']} v{version['version']}", [Column("field"), Column("value", wrap=True)],
                  spaced=False, header=False)
    about.add_row("created", moment(version["created_at"]))
    about.add_row("storage", version["storage_uri"])
    about.add_row("format", version["model_format"])
    if task:
        about.add_row("task", task)
    if "n_holdout" in metrics:
        about.add_row("holdout", f"{number(metrics['n_holdout'])} rows")
    print_table(about)
    if decision and decision.get("recent_candidate") and decision.get("recent_champion"):
        print_table(metrics_table(decision["recent_candidate"], decision["recent_champion"], f"v{version['version']}",
                                  f"champion v{decision.get('champion_version')}",
                                  f"on the {decision.get('n_recent')} most recent rows (the gate compared here)"))
    champion = (decision or {}).get("champion") or {}
    champion_name = f"champion v{decision['champion_version']}" if decision and decision.get("champion_version") \
        else "champion"
    print_table(metrics_table(metrics, champion, f"v{version['version']}", champion_name,
                              f"metrics against {champion_name} on the same holdout" if champion else "metrics"))
    if gate:
        print_gate(gate)
    table = Table("lineage", [Column("field"), Column("value", wrap=True)], spaced=False)
    for key, value in sorted(lineage.items()):
        table.add_row(key, _readable(value))
    print_table(table)
    files = Table("files", [Column("file"), Column("sha256", wrap=True)], spaced=False)
    for rel, digest in sorted(version["files"].items()):
        files.add_row(rel, digest)
    print_table(files)


def print_gate(gate: dict) -> None:
    """The gate's decision in words: passed or failed, the rule, each reason (differences with their sign)."""
    from driftloop.tasks import higher_is_better

    thresholds = gate.get("thresholds") or {}
    rule = ""
    if thresholds and higher_is_better(thresholds["metric"]):
        rule = (f" ({thresholds['metric']} at least {metric(thresholds['min_value'])}, at most "
                f"{metric(thresholds['max_regression'])} below the champion)")
    elif thresholds:  # an error: held to a model that ignores the features, compared relatively
        rule = (f" ({thresholds['metric']} below the baseline's, at most {thresholds['max_regression']:.1%} "
                "above the champion's)")
    verdict = Cell("PASSED", "green") if gate.get("passed") else Cell("FAILED", "red")
    from rich.console import Console
    from rich.text import Text

    Console(file=sys.stdout, highlight=False).print(Text.assemble("gate: ", (verdict.text, verdict.style),
                                                                  rule), soft_wrap=True)
    print_wrapped([f"  - {reason}" for reason in gate.get("reasons") or []])


def _readable(value) -> str:
    """A lineage value as a person reads it: numbers formatted, mappings as ``key value`` pairs, lists one by one."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else cell_text(value)
    if isinstance(value, str):
        return value or EMPTY
    if isinstance(value, dict):
        if {"estimator", "value"} <= set(value):  # a leaderboard entry
            chosen = " (chosen)" if value.get("chosen") else ""
            return f"{value['estimator']} {value.get('metric', '')} {number(value['value'])}{chosen}"
        return ", ".join(f"{k} {_readable(v)}" for k, v in value.items()) or EMPTY
    if isinstance(value, list):
        return "; ".join(_readable(item) for item in value) or EMPTY
    return str(value)


def print_audit_entry(entry) -> None:
    print_lines([f"{entry.action}: {entry.model} {entry.alias or ''} {_v(entry.from_version)} → "
                 f"{_v(entry.to_version)} (entry {entry.seq}, by {entry.actor})"])


def print_history(name: str, entries: list) -> None:
    table = Table(f"audit trail of {name}", [
        Column("#", right=True), Column("when", wrap=True, fold=False), Column("who", wrap=True), Column("action"),
        Column("alias", wrap=True), Column("change"), Column("reason", below=True)])
    for e in entries:
        table.add_row(e.seq, moment(e.at), e.actor, e.action, e.alias, f"{_v(e.from_version)} → {_v(e.to_version)}",
                      e.reason or None)
    print_table(table)


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


def _stdout() -> Console:
    return Console(file=sys.stdout, highlight=False)


def _versions(versions: list[int]) -> str:
    return " ".join(f"v{v}" for v in versions) if versions else "no versions"


def _entries(count: int) -> str:
    return f"{count} audit {'entry' if count == 1 else 'entries'}"


def print_reproduction(outcome) -> None:
    table = Table(f"reproducing {outcome.name} v{outcome.version}", [
        Column("metric"), Column("registered", right=True), Column("reproduced", right=True)])
    for name, (registered, again) in outcome.metrics.items():
        table.add_row(name, f"{registered:.6f}", None if again is None else f"{again:.6f}")
    print_table(table)
    console = _stdout()
    console.print(f"  data {'unchanged' if outcome.data_matches else '[red]changed[/]'}: {outcome.data_uri}",
                  soft_wrap=True)
    if outcome.max_prediction_diff is not None:
        console.print(f"  largest prediction difference on the holdout: {outcome.max_prediction_diff:.3g}")
    if outcome.reproduced:
        console.print("[green]reproduced[/]: same metrics and predictions")
    for problem in outcome.problems:
        console.print(f"[red]differs[/]: {problem}", soft_wrap=True)


def print_rollout_step(step) -> None:
    mark = {"pass": "[green]✓[/]", "fail": "[red]✗[/]", "inconclusive": "[yellow]?[/]"}[step.verdict]
    _stdout().print(f"  {mark} canary at {step.percent:>3}%: {step.verdict} — {'; '.join(step.reasons)}",
                    soft_wrap=True)


def print_drift(result) -> None:
    table = Table(f"drift: {result.n_current} current rows vs {result.n_reference} reference rows", [
        Column("feature", wrap=True), Column("kind"), Column("method"), Column("score", right=True),
        Column("threshold", right=True), Column("drift")])
    for f in result.features:
        table.add_row(f.column, f.kind, f.method, metric(f.score), number(f.threshold),
                      Cell("drift", "red") if f.drifted else Cell("ok", "green"))
    print_table(table)
    verdict = "[red]DATASET DRIFT[/]" if result.dataset_drift else "[green]no dataset drift[/]"
    console = _stdout()
    console.print(f"{verdict}: {len(result.drifted_features)} of {len(result.features)} features drifted "
                  f"({result.drift_share:.0%}; threshold {result.config['drift_share']:.0%})", soft_wrap=True)
    if result.report_path:
        console.print(f"report: {result.report_path}", soft_wrap=True, markup=False)


def print_monitor_status(status: dict, url: str) -> None:
    """The monitor's latest windows per model: drift, prediction drift, realised quality, trigger state. A status
    read from the store (``offline``) has the windows as last written, without the live counters."""
    from driftloop.tasks import BINARY, QUALITY_REPORTED

    console = _stdout()
    if status.get("offline"):
        header = [f"driftloop monitor store {status['store']} (read offline: windows as last written, realised "
                  "quality as of then)"]
    else:
        header = [f"driftloop monitor {url}: {status['events_received']} events, {status['rows_stored']} rows stored, "
                  f"{status['labels']} labels, {status['events_rejected']} rejected"]
    if ingest := status.get("ingest"):
        header.append(f"ingest log: record {ingest['applied']} applied, checkpoint {ingest['checkpoint']}, "
                      f"{ingest['replayed_at_start']} replayed at start, {ingest['pending_halves']} halves waiting")
    print_wrapped(header)
    for model, state in status["models"].items():
        aliases = ", ".join(f"{a} v{v}" for a, v in sorted(state["aliases"].items())) or "nothing serving"
        open_rows = state.get("open_window_rows")
        title = (f"{model}: the last {len(state['windows'])} windows in the store" if status.get("offline")
                 else f"{model} ({aliases}); {open_rows} rows in the open window")
        # Realised quality in the task's metrics (the newest window's task), the first with its labelled rows.
        reported = QUALITY_REPORTED[(state["windows"] or [{}])[-1].get("task", BINARY)]
        table = Table(title, [
            Column("window"), Column("rows", right=True), Column("ref"), Column("drift share", right=True),
            Column("prediction", right=True), *(Column(m.replace("_", " "), right=True) for m in reported),
            Column("decision", wrap=True), Column("drifted features", below=True), Column("report", below=True)])
        unseen = Counter()
        for w in state["windows"]:
            quality = w.get("quality") or {}
            unseen.update(quality.get("unseen_classes") or {})
            prediction = w.get("prediction_drift") or {}
            share = None if w["drift_share"] is None else metric(w["drift_share"])
            table.add_row(
                w["id"], w["n_rows"], _v(w["reference_version"]),
                Cell(share, "red") if w.get("dataset_drift") and share else share,
                f"{metric(prediction['score'])}{' ✗' if prediction.get('drifted') else ''}" if prediction else None,
                *(None if quality.get(m) is None else metric(quality[m]) + (f" ({quality['labelled']})" if i == 0 else "")
                  for i, m in enumerate(reported)),
                (w.get("decision") or {}).get("action"),
                ", ".join(w["drifted_features"]) or w.get("error") or None, w.get("report"),
            )
        print_table(table)
        if unseen:
            console.print(f"[yellow]unseen classes[/]: {unseen.total()} labels name classes the serving version never "
                          f"learned ({', '.join(f'{label} {n}' for label, n in sorted(unseen.items()))}); kept, "
                          "counted as wrong predictions", soft_wrap=True)
        trigger = state.get("trigger") or {}
        if trigger.get("stopped"):
            console.print(f"[red]retraining stopped[/] after {trigger['consecutive_failures']} failed retrains")
        for r in state["retrains"]:
            console.print(f"  retrain {r.get('key', '')}: {r['state']}"
                          + (f" → v{r['version']}" if r.get("version") else "")
                          + (f" ({r['error']})" if r.get("error") else ""), soft_wrap=True, markup=False)


_SOURCE_STYLE = {"demo": "bold", "monitor": "cyan", "registry": "magenta"}


def print_demo_event(event) -> None:
    """One line of the demo's live timeline."""
    console = Console(file=sys.stderr, highlight=False)
    style = _SOURCE_STYLE.get(event.source, "")
    console.print(f"[dim]{event.seconds:7.1f}s[/] [{style}]{event.source:>8}[/] {event.text}", soft_wrap=True)


def print_demo_summary(summary) -> None:
    """The demo's end: versions, triggers and the time from drift onset to a promoted version."""
    table = Table(f"driftloop demo: versions of {summary.model} ({summary.task})", [
        Column("version"), Column("aliases", wrap=True), Column("triggered by", wrap=True), Column("parent"),
        *(Column(name, right=True) for name in summary.metrics)])
    for v in summary.versions:
        table.add_row(f"v{v['version']}", ", ".join(v["aliases"]) or None, v["triggered_by"] or None,
                      _v(v["parent_version"]), *(metric(v.get(name)) for name in summary.metrics))
    print_table(table, sys.stderr)
    loop = Table("the loop", [Column("what"), Column("value", wrap=True)], spaced=False)
    loop.add_row("outcome", Cell(summary.outcome, "green" if summary.outcome == "promoted" else "red"))
    counts = Counter(t["action"].removeprefix("retrain-") for t in summary.triggers)
    loop.add_row("triggers", ", ".join(f"{n} {action}" for action, n in counts.items()) or "none")
    loop.add_row("drift onset → promoted", None if summary.onset_to_promotion_seconds is None
                 else f"{summary.onset_to_promotion_seconds:.1f} s")
    if summary.after_promotion:
        shares = ", ".join("-" if w["drift_share"] is None else f"{w['drift_share']:.2f}"
                           for w in summary.after_promotion)
        quiet = not any(w["dataset_drift"] for w in summary.after_promotion) and not summary.retrains_after_promotion
        # One style for the cell: a table's cells are text, not markup.
        loop.add_row("after promotion", Cell(f"drift share {shares}; " + (
            "alarm cleared, no further retrain" if quiet else
            f"still signalling ({summary.retrains_after_promotion} further retrains)"), "green" if quiet else "red"))
    traffic = summary.traffic or {}
    loop.add_row("traffic", f"{traffic.get('sent', 0)} rows at {traffic.get('rate', 0)}/s, "
                            f"{traffic.get('errors', 0)} errors, {traffic.get('labels_posted', 0)} labels")
    print_table(loop, sys.stderr)
    print_lines([f"summary: {summary.summary_path}",
                 f"next: driftloop models history {summary.model} --registry {summary.registry}"], sys.stderr)
