"""The validation report: a verdict first, then what is wrong, then every feature against the reference.

Written for failed validations too (the load step writes it before it raises), so the Kubeflow dashboard shows
why a run stopped, not only a log.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from driftloop.data import DatasetSpec
from driftloop.profile import FeatureProfile, ReferenceProfile
from driftloop.reports.html import banner, count, e, facts, number, page, percent, signed, table, td
from driftloop.reports.svg import CURRENT_COLOUR, REFERENCE_COLOUR, box_pair, share_bars
from driftloop.tasks import BINARY, MULTICLASS, REGRESSION, TASK_LABELS
from driftloop.validation import Check, ValidationReport

_SEVERITY = {"fail": 2, "warn": 1, "pass": 0}
TOP_CATEGORIES = 3


@dataclass
class ValidationPage:
    """What the validation report shows.

    Attributes:
        data_uri: The table that was validated.
        report: Every check run (up to the failure, for a failed validation).
        spec: The dataset spec applied; ``spec_source`` says where it came from (declared, production's, inferred).
        current: The profile of the validated table (as far as it could be read, when validation failed).
        reference: The production version's profile the table was judged against, if any.
        reference_version: That version's number.
        model: The model the data is for.
        error: The failure that stopped the run ("" when validation passed).
        at: When it ran (ISO-8601 UTC).
    """

    data_uri: str
    report: ValidationReport
    spec: DatasetSpec
    current: ReferenceProfile | None = None
    reference: ReferenceProfile | None = None
    reference_version: int | None = None
    model: str = ""
    error: str = ""
    spec_source: str = ""
    at: str = ""

    @property
    def file_name(self) -> str:
        """The data's file name (``churn.csv`` of ``s3://bucket/a/long/prefix/churn.csv``)."""
        return PurePosixPath(self.data_uri.split("?")[0].rstrip("/")).name or self.data_uri


def validation_report_html(view: ValidationPage) -> str:
    """The self-contained HTML page of one validation."""
    report = view.report
    failed = bool(view.error or report.failures)
    title = f"Data validation: {view.file_name}"
    subtitle = [f"<code>{e(view.data_uri)}</code>"]
    if view.model:
        subtitle.append(f"for model {e(view.model)}")
    if view.at:
        subtitle.append(e(view.at[:16].replace("T", " ") + " UTC"))
    body = [f"<h1>{e(title)}</h1>", f'<p class="subtitle">{" · ".join(subtitle)}</p>', _verdict(view, failed),
            _header(view)]
    problems = [c for c in report.checks if c.status != "pass"]
    problems.sort(key=lambda c: -_SEVERITY.get(c.status, 0))
    if problems:
        body += ["<h2>Problems</h2>", _checks_table(problems)]
    body += _balance_section(view)
    body += _features_section(view)
    body += [f"<details><summary>All {len(report.checks)} checks</summary>{_checks_table(report.checks)}</details>"]
    if view.spec.ignored:
        body += ["<h2>Columns left out of the model</h2>",
                 "<ul>" + "".join(f"<li><code>{e(k)}</code>: {e(v)}</li>" for k, v in view.spec.ignored.items())
                 + "</ul>"]
    return page(title, "\n".join(body))


def _verdict(view: ValidationPage, failed: bool) -> str:
    report = view.report
    if failed:
        first = report.failures[0] if report.failures else None
        reason = view.error or (f"{first.column}: {first.detail}" if first else "")
        return banner("fail", "Validation FAILED — the run stops here", e(reason))
    warnings = report.warnings
    if warnings:
        listed = "; ".join(f"{c.column or c.check}: {c.detail}" for c in warnings[:3])
        more = f" (and {len(warnings) - 3} more)" if len(warnings) > 3 else ""
        return banner("warn", f"Validation PASSED with {len(warnings)} warning{'s' if len(warnings) > 1 else ''}",
                      e(listed + more))
    return banner("pass", f"Validation PASSED — all {len(report.checks)} checks")


def _header(view: ValidationPage) -> str:
    report, spec = view.report, view.spec
    rows = f"{count(report.n_rows)} read"
    if report.n_rows_used != report.n_rows:
        rows += f", {count(report.n_rows_used)} used"
    reference = (f"production v{view.reference_version} ({count(view.reference.n_rows)} rows)"
                 if view.reference is not None and view.reference_version is not None
                 else "its profile" if view.reference is not None else "none (a first version: nothing to compare)")
    items = [("Rows", e(rows)), ("Target", f"<code>{e(spec.target)}</code> ({e(_target_text(spec))})"),
             ("Task", e(TASK_LABELS.get(spec.task, spec.task))), *_target_facts(view),
             ("Features", e(f"{len(spec.features)}")), ("Reference", e(reference))]
    if view.spec_source:
        items.append(("Spec", e(view.spec_source)))
    return facts(items)


def _target_text(spec: DatasetSpec) -> str:
    """The target's classes (a few named), or its kind for a regression."""
    if not spec.is_classification:
        return "a number"
    classes = [str(c) for c in spec.target_classes]
    if not classes:
        return "–"
    if len(classes) <= 2:
        return ", ".join(classes)
    return f"{len(classes)} classes: " + ", ".join(classes[:6]) + (", …" if len(classes) > 6 else "")


def _target_facts(view: ValidationPage) -> list[tuple[str, str]]:
    """The header's one-line summary of the target: the positive share, the largest class, or the range."""
    if view.spec.task == BINARY:
        return [("Positive share", e(_balance_text(view)))]
    target = view.current.target if view.current else None
    if target is None:
        return []
    if view.spec.task == MULTICLASS and target.categories:
        largest, share = max(target.categories.items(), key=lambda kv: kv[1])
        return [("Largest class", e(f"{largest} ({percent(share)})"))]
    if target.minimum is not None:
        return [("Target range", e(f"{_g(target.minimum)} to {_g(target.maximum)}, median "
                                   f"{_g(target.quantiles.get('p50'))}"))]
    return []


def _balance_text(view: ValidationPage) -> str:
    current = view.current.positive_rate if view.current else None
    reference = view.reference.positive_rate if view.reference else None
    text = percent(current)
    if reference is not None and current is not None:
        text += f" (reference {percent(reference)})"
    return text


def _balance_section(view: ValidationPage) -> list[str]:
    """The target in the task's terms: the positive share (binary), the class shares (multi-class), the
    distribution (regression) — each against the reference's when there is one."""
    if view.spec.task == MULTICLASS:
        return _class_shares_section(view)
    if view.spec.task == REGRESSION:
        return _distribution_section(view)
    return _positive_share_section(view)


def _class_shares_section(view: ValidationPage) -> list[str]:
    current = view.current.target if view.current else None
    if current is None or not current.categories:
        return []
    reference = view.reference.target if view.reference and view.reference.target else None
    ref = reference.categories if reference else {}
    names = sorted(set(current.categories) | set(ref), key=lambda k: -current.categories.get(k, 0))
    head = ["class", '<span class="num">share</span>'] + (
        ['<span class="num">reference</span>', '<span class="num">Δ points</span>'] if reference else [])
    rows = []
    for name in names:
        share = current.categories.get(name, 0.0)
        cells = [td(e(name)), td(percent(share), "num")]
        if reference:
            cells += [td(percent(ref.get(name, 0.0)), "num"), td(signed((share - ref.get(name, 0.0)) * 100, 1), "num")]
        rows.append(cells)
    key = (f'<p class="note"><span class="key" style="background:{REFERENCE_COLOUR}"></span> reference '
           f'<span class="key" style="background:{CURRENT_COLOUR}"></span> current</p>') if reference else ""
    return [f"<h2>Target classes ({len(current.categories)})</h2>", table(head, rows), key,
            share_bars(ref, current.categories, most=len(names), width=360)]


def _distribution_section(view: ValidationPage) -> list[str]:
    current = view.current.target if view.current else None
    if current is None or not current.quantiles:
        return []
    reference = view.reference.target if view.reference and view.reference.target else None
    stats = [("minimum", "minimum"), ("1st percentile", "p01"), ("25th percentile", "p25"), ("median", "p50"),
             ("75th percentile", "p75"), ("99th percentile", "p99"), ("maximum", "maximum"), ("mean", "mean")]

    def value(profile: FeatureProfile, key: str):
        return getattr(profile, key) if key in ("minimum", "maximum", "mean") else profile.quantiles.get(key)

    rows = [[td(e(label)), td(_g(value(current, key)), "num")]
            + ([td(_g(value(reference, key)), "num")] if reference else []) for label, key in stats]
    head = ["", '<span class="num">current</span>'] + (['<span class="num">reference</span>'] if reference else [])
    key = (f'<p class="note"><span class="key" style="background:{REFERENCE_COLOUR}"></span> reference '
           f'<span class="key" style="background:{CURRENT_COLOUR}"></span> current (box: 25th to 75th '
           "percentile, whiskers: 1st to 99th)</p>")
    return [f"<h2>Target distribution (<code>{e(view.spec.target)}</code>)</h2>", table(head, rows), key,
            box_pair(reference.quantiles if reference else None, current.quantiles, width=360)]


def _positive_share_section(view: ValidationPage) -> list[str]:
    """The positive share against the reference's, with its check; a large move stands out as a warning."""
    current = view.current.positive_rate if view.current else None
    reference = view.reference.positive_rate if view.reference else None
    if current is None or reference is None:
        return []
    check = next((c for c in view.report.checks if c.check == "balance"), None)
    status = check.status if check else "pass"
    positive = view.spec.target_classes[-1] if view.spec.target_classes else "1"
    bars = _balance_bars(reference, current)
    text = (f"{percent(current)} of the rows are {view.spec.target} = {positive}, against {percent(reference)} in the "
            f"reference ({signed((current - reference) * 100, 1)} points).")
    out = ["<h2>Target balance</h2>"]
    out.append(banner("warn", "The positive share moved", e(check.detail if check else text))
               if status == "warn" else f"<p>{e(text)}</p>")
    return [*out, bars]


def _balance_bars(reference: float, current: float) -> str:
    width = 420
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="46" viewBox="0 0 {width} 46" '
             'role="img" aria-label="positive share against the reference" font-family="system-ui, sans-serif">']
    for i, (label, share, colour) in enumerate((("reference", reference, REFERENCE_COLOUR),
                                               ("current", current, CURRENT_COLOUR))):
        y = 4 + i * 21
        parts.append(f'<text x="66" y="{y + 12}" font-size="12" text-anchor="end">{label}</text>')
        parts.append(f'<rect x="72" y="{y}" width="{280 * share:.1f}" height="15" fill="{colour}"/>')
        parts.append(f'<rect x="72" y="{y}" width="280" height="15" fill="none" stroke="#d1d9e0"/>')
        parts.append(f'<text x="358" y="{y + 12}" font-size="12">{percent(share)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _features_section(view: ValidationPage) -> list[str]:
    if view.current is None:
        return []
    by_column: dict[str, list[Check]] = {}
    for check in view.report.checks:
        by_column.setdefault(check.column, []).append(check)
    reference = view.reference.features if view.reference else {}
    head = ["feature", "kind", '<span class="num">nulls</span>', "current", "reference" if reference else "",
            "distribution" + (f' <span class="note"><span class="key" style="background:{REFERENCE_COLOUR}"></span>'
                              f' reference <span class="key" style="background:{CURRENT_COLOUR}"></span> current'
                              "</span>" if reference else ""), "checks"]
    rows, classes = [], []
    for feature in view.spec.features:
        cur = view.current.features.get(feature.name)
        ref = reference.get(feature.name)
        checks = by_column.get(feature.name, [])
        worst = max((c.status for c in checks), key=lambda s: _SEVERITY.get(s, 0), default="pass")
        rows.append([
            td(f"<code>{e(feature.name)}</code>"), td(e(feature.kind)), td(_nulls(cur, ref), "num"),
            td(_stats(cur)), td(_stats(ref) if reference else ""), td(_plot(cur, ref)),
            td(e(worst) + (f": {e('; '.join(c.detail for c in checks if c.status != 'pass'))}"
                           if worst != "pass" else "")),
        ])
        classes.append(worst if worst != "pass" else "")
    title = "Features against the reference" if reference else "Features (no reference: a first version)"
    return [f"<h2>{title}</h2>", table(head, rows, row_classes=classes)]


def _nulls(current: FeatureProfile | None, reference: FeatureProfile | None) -> str:
    if current is None:
        return "–"
    text = percent(current.null_rate)
    if reference is not None:
        text += f'<br><span class="note">ref {percent(reference.null_rate)}</span>'
    return text


def _stats(profile: FeatureProfile | None) -> str:
    """Mean and quartiles of a numeric feature, or its top category shares."""
    if profile is None:
        return "–"
    if profile.kind == "numeric" and profile.quantiles:
        q = profile.quantiles
        return (f"mean {_g(profile.mean)}<br>median {_g(q.get('p50'))}<br>"
                f'<span class="note">p25–p75 {_g(q.get("p25"))} – {_g(q.get("p75"))}</span>')
    if profile.categories:
        top = sorted(profile.categories.items(), key=lambda kv: -kv[1])[:TOP_CATEGORIES]
        more = len(profile.categories) - len(top)
        return "<br>".join(f"{e(k)} {percent(v)}" for k, v in top) + (
            f'<br><span class="note">+{more} more</span>' if more > 0 else "")
    return "–"


def _plot(current: FeatureProfile | None, reference: FeatureProfile | None) -> str:
    if current is None:
        return ""
    if current.kind == "numeric":
        return box_pair(reference.quantiles if reference else None, current.quantiles)
    return share_bars(reference.categories if reference else {}, current.categories)


def _g(value) -> str:
    """A statistic as a person reads it: whole numbers with grouped thousands from 1000 up, else four
    significant digits."""
    if value is None:
        return number(value)
    return count(round(value)) if abs(value) >= 1000 else e(f"{value:.4g}")


def _checks_table(checks: list[Check]) -> str:
    rows = [[td(e(c.column) or "–"), td(e(c.check)), td(e(c.status)), td(e(c.detail))] for c in checks]
    return table(["column", "check", "status", "detail"], rows, row_classes=[c.status for c in checks])
