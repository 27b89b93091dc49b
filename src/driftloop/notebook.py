"""What the notebooks show inline: driftloop's pages embedded whole, and charts of a version and of the monitor.

A version's chart is in its task's terms (:func:`comparison`): ROC and precision–recall curves for a binary
classifier, recall per class and the confusion matrix for a multi-class one, predicted against actual values and
the error by decile for a regression — each against the champion on the same holdout.

Pages are embedded as ``<iframe srcdoc>``, so they show wherever their files lie (a temporary home, an S3
registry): Jupyter serves only files under the notebook's directory, and an exported notebook (nbconvert's HTML)
carries no files at all. Charts are PNG images (matplotlib, from the ``notebooks`` extra), which every front end
and GitHub render. IPython and matplotlib are imported when called, so the package works without them.
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import driftloop
from driftloop.reports.evaluation import CANDIDATE_COLOUR, CHAMPION_COLOUR, EvaluationPage
from driftloop.reports.facts import class_balance
from driftloop.settings import DEFAULT_HOME, Settings
from driftloop.tasks import MULTICLASS, QUALITY_REPORTED, REGRESSION, higher_is_better

if TYPE_CHECKING:
    from IPython.display import HTML, Image
    from matplotlib.figure import Figure

    from driftloop.evaluation import Evaluation
    from driftloop.registry import ModelRegistry

EVALUATION_FILE = "evaluation.json"  # the evaluation page's content, stored with every registered version
SIGNAL_COLOUR, ACCURACY_COLOUR, MUTED = "#cf222e", "#1a7f37", "#8c959f"
# Realised quality a window may carry (the monitor reports tasks.QUALITY_REPORTED of the model's task).
REALISED = tuple(dict.fromkeys(name for names in QUALITY_REPORTED.values() for name in names))


def default_home(home: str = "") -> Path:
    """driftloop's working directory for a notebook, independent of the directory the kernel started in.

    ``home`` when given; else ``DRIFTLOOP_HOME``; else, in a source checkout, its ``.driftloop`` (where
    ``make demo`` and the CLI keep their state when run from the repository root); else the CLI's default.
    """
    if home:
        return Path(home).expanduser().resolve()
    if os.environ.get("DRIFTLOOP_HOME"):
        return Settings.resolve().home
    checkout = Path(driftloop.__file__).resolve().parents[2]  # src/driftloop/__init__.py in a checkout
    if (checkout / "pyproject.toml").is_file() and (checkout / "src" / "driftloop").is_dir():
        return checkout / DEFAULT_HOME
    return Settings.resolve().home


def embed(page: str | bytes | os.PathLike, height: int = 640) -> HTML:
    """A whole HTML page shown inline, in an iframe of its own.

    Args:
        page: The page's HTML (text or bytes), or its file (a path, or a string without markup).
        height: Of the frame, in pixels.

    Scripts run only for pages that have them (Evidently's reports draw with JavaScript), and then in a sandbox
    without the notebook's origin.
    """
    from IPython.display import HTML

    if isinstance(page, os.PathLike) or (isinstance(page, str) and "<" not in page):
        page = Path(page).read_bytes()
    document = page.decode() if isinstance(page, bytes) else page
    sandbox = "allow-scripts" if "<script" in document else ""
    # In a <div>: IPython warns about a bare <iframe> (it means one with a src, for which IFrame is meant).
    return HTML(f'<div><iframe srcdoc="{html.escape(document)}" sandbox="{sandbox}" width="100%" '
                f'height="{height}" style="border: 1px solid #d1d9e0; border-radius: 6px"></iframe></div>')


def evaluation_page(registry: ModelRegistry, model: str, version: int) -> EvaluationPage:
    """What the evaluation report of a registered version shows: metrics, curves, the champion's, the gate."""
    import json

    page = EvaluationPage.from_dict(json.loads(registry.read_file(model, version, EVALUATION_FILE)))
    page.facts.version = version  # measured before the version had its number (as the registry's page does)
    return page


def comparison(page: EvaluationPage) -> Image:
    """The version against its champion on the same holdout, in its task's terms: :func:`roc_comparison`
    (binary), :func:`class_comparison` (multi-class) or :func:`residual_comparison` (regression)."""
    task = page.evaluation.task
    if task == MULTICLASS:
        return class_comparison(page)
    if task == REGRESSION:
        return residual_comparison(page)
    return roc_comparison(page)


def roc_comparison(page: EvaluationPage) -> Image:
    """ROC and precision–recall curves of the candidate and, when there was one, the champion on the same
    holdout, with each curve's AUC (average precision) in the legend."""
    figure = _figure(10, 4.8)
    roc, pr = figure.subplots(1, 2)
    curves = _compared(page)
    for label, evaluation, colour, style in curves:
        auc, ap = evaluation.metrics.get("roc_auc"), evaluation.metrics.get("average_precision")
        roc.plot(evaluation.roc_curve.get("fpr", []), evaluation.roc_curve.get("tpr", []), style, color=colour,
                 lw=2, label=f"{label}: AUC {_score(auc)}")
        if evaluation.pr_curve:
            pr.plot(evaluation.pr_curve.get("recall", []), evaluation.pr_curve.get("precision", []), style,
                    color=colour, lw=2, label=f"{label}: AP {_score(ap)}")
    roc.plot([0, 1], [0, 1], ":", color=MUTED, label="chance")
    positives, rows = class_balance(page.evaluation)
    if rows:
        share = positives / rows
        pr.axhline(share, ls=":", color=MUTED, label=f"chance (positive share {share:.1%})")
    for axes, x, y, title in ((roc, "false positive rate", "true positive rate", "ROC"),
                              (pr, "recall", "precision", "Precision–recall")):
        axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel=x, ylabel=y, title=title, aspect="equal")
        axes.grid(alpha=0.3)
        axes.legend(loc="lower right" if axes is roc else "lower left", fontsize=9)
    figure.suptitle(_comparison_title(page, rows), fontsize=12)
    return _png(figure)


def class_comparison(page: EvaluationPage) -> Image:
    """A multi-class version against its champion: recall per class side by side (macro-F1 in the legend), and
    the version's confusion matrix as shares of each true class."""
    figure = _figure(11, 4.8)
    bars, matrix = figure.subplots(1, 2, width_ratios=[1.2, 1])
    classes = [str(c) for c in page.evaluation.classes]
    support = {label: int(scores.get("support", 0)) for label, scores in page.evaluation.per_class.items()}
    compared = _compared(page)
    width = 0.8 / len(compared)
    for i, (label, evaluation, colour, _) in enumerate(compared):
        recall = [(evaluation.per_class.get(c) or {}).get("recall", float("nan")) for c in classes]
        bars.bar([x + (i - (len(compared) - 1) / 2) * width for x in range(len(classes))], recall, width,
                 color=colour, alpha=0.85 if i == 0 else 0.6,
                 label=f"{label}: macro-F1 {_score(evaluation.metrics.get('f1_macro'))}")
    bars.set_xticks(range(len(classes)), [f"{c}\n({support.get(c, 0)} rows)" for c in classes], fontsize=9)
    bars.set(ylim=(0, 1.05), ylabel="recall (share of the class found)", title="Recall per class")
    bars.grid(axis="y", alpha=0.3)
    bars.legend(loc="upper right", fontsize=9)
    counts = [[int(v) for v in row] for row in page.evaluation.confusion_matrix]
    shares = [[v / max(sum(row), 1) for v in row] for row in counts]
    matrix.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for r, row in enumerate(counts):
        for c, value in enumerate(row):
            matrix.text(c, r, f"{value}\n{shares[r][c]:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if shares[r][c] > 0.6 else "black")
    matrix.set_xticks(range(len(classes)), classes, rotation=30, ha="right", fontsize=9)
    matrix.set_yticks(range(len(classes)), classes, fontsize=9)
    matrix.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix of {compared[0][0]}")
    figure.suptitle(_comparison_title(page, sum(map(sum, counts))), fontsize=12)
    return _png(figure)


def residual_comparison(page: EvaluationPage) -> Image:
    """A regression version against its champion: predicted against actual values (an even sample of the
    holdout; RMSE in the legend), and the mean absolute error per tenth of each model's predictions."""
    figure = _figure(11, 4.8)
    scatter, deciles = figure.subplots(1, 2)
    compared = _compared(page)
    low, high = float("inf"), float("-inf")
    width = 0.8 / len(compared)
    for i, (label, evaluation, colour, _) in enumerate(reversed(compared)):  # the candidate's points on top
        predicted, actual = evaluation.residuals.get("predicted", []), evaluation.residuals.get("actual", [])
        if predicted:
            low, high = min(low, *predicted, *actual), max(high, *predicted, *actual)
        scatter.scatter(actual, predicted, s=9, alpha=0.55, color=colour, edgecolors="none",
                        label=f"{label}: RMSE {_amount(evaluation.metrics.get('rmse'))}")
        tenths = evaluation.error_by_decile
        offset = (len(compared) - 1 - i - (len(compared) - 1) / 2) * width
        deciles.bar([d["decile"] + offset for d in tenths], [d["mae"] for d in tenths], width, color=colour,
                    alpha=0.85 if i == len(compared) - 1 else 0.6,
                    label=f"{label}: MAE {_amount(evaluation.metrics.get('mae'))}")
    if low < high:
        scatter.plot([low, high], [low, high], ":", color=MUTED, label="perfect prediction")
    handles, labels = scatter.get_legend_handles_labels()
    scatter.legend(handles[::-1], labels[::-1], loc="upper left", fontsize=9)
    scatter.set(xlabel="actual", ylabel="predicted", title="Predicted against actual")
    scatter.grid(alpha=0.3)
    handles, labels = deciles.get_legend_handles_labels()
    deciles.legend(handles[::-1], labels[::-1], loc="upper left", fontsize=9)
    deciles.set(xlabel="tenth of the predictions (1: the lowest)", ylabel="mean absolute error",
                title="Error by decile of the prediction")
    deciles.set_xticks(sorted({d["decile"] for _, e, _, _ in compared for d in e.error_by_decile}))
    deciles.grid(axis="y", alpha=0.3)
    figure.suptitle(_comparison_title(page, int(page.evaluation.metrics.get("n_holdout", 0))), fontsize=12)
    return _png(figure)


def _compared(page: EvaluationPage) -> list[tuple[str, Evaluation, str, str]]:
    """The candidate and, when there was one, the champion: label, evaluation, colour, line style."""
    numbered = page.facts.version is not None
    compared = [(f"v{page.facts.version} (candidate)" if numbered else "candidate", page.evaluation,
                 CANDIDATE_COLOUR, "-")]
    if page.champion_evaluation is not None:
        compared.append((_champion(page), page.champion_evaluation, CHAMPION_COLOUR, "--"))
    return compared


def _champion(page: EvaluationPage) -> str:
    version = page.decision.champion_version
    return f"champion v{version}" if version is not None else "champion"


def _comparison_title(page: EvaluationPage, rows: int) -> str:
    """What was compared on how many rows, and, for a drift retrain, what the gate saw on the recent rows."""
    numbered = page.facts.version is not None
    name = f"{page.facts.model} v{page.facts.version}" if numbered else f"{page.facts.model} (candidate)"
    against = (f"against {_champion(page)} on the same holdout" if page.champion_evaluation is not None
               else "on the holdout (no champion)")
    title = f"{name} {against}: {rows} rows"
    decision = page.decision
    if decision.recent_candidate and decision.recent_champion:  # a drift retrain: the recent rows decided
        metric = decision.metric
        shown = _score if higher_is_better(metric) else _amount
        title += (f"\nthe gate decided on the {decision.n_recent} most recent rows: {metric} "
                  f"{shown(decision.recent_candidate.get(metric))} vs "
                  f"{shown(decision.recent_champion.get(metric))}")
    return title


def drift_trend(summaries: Sequence[dict], drift_share: float | None = None) -> Image:
    """The drift monitor's windows over time: the share of drifted features, the prediction drift score and the
    realised quality (when labels arrived: accuracy and macro-F1 on the left axis, a regression's RMSE and MAE in
    the target's units on the right), the windows that signalled and those that triggered a retrain.

    Args:
        summaries: Window summaries as the monitor writes them (``<store>/windows/<model>.jsonl``).
        drift_share: The share of drifted features at which a window counts as drifted, drawn as a line
            (default: the threshold the newest window was judged by, when its summary records it).
    """
    windows = sorted((w for w in summaries if w.get("closed_at") is not None), key=lambda w: w["closed_at"])
    if not windows:
        raise ValueError("no closed windows to plot")
    drift_share = drift_share if drift_share is not None else windows[-1].get("drift_threshold")
    figure = _figure(11, 4.2)
    axes = figure.subplots()
    at = [datetime.fromtimestamp(w["closed_at"], UTC) for w in windows]
    share = [w.get("drift_share") for w in windows]
    prediction = [(w.get("prediction_drift") or {}).get("score") for w in windows]
    axes.plot(at, _floats(share), "o-", color=CANDIDATE_COLOUR, lw=2, label="share of features drifted")
    axes.plot(at, _floats(prediction), "s--", color=CHAMPION_COLOUR, lw=1.5, label="prediction drift score")
    errors = None  # the right-hand axis, for error metrics in the target's units
    for name, style in zip(REALISED, ("^-", "v:", "^-", "v:")):
        values = [(w.get("quality") or {}).get(name) for w in windows]
        if all(v is None for v in values):
            continue
        if higher_is_better(name):
            target = axes
        else:
            if errors is None:
                errors = axes.twinx()
            target = errors
        target.plot(at, _floats(values), style, color=ACCURACY_COLOUR, lw=1.5, label=f"realised {name}")
    if drift_share is not None:
        axes.axhline(drift_share, ls=":", color=MUTED, label=f"dataset drift at share ≥ {drift_share:g}")
    signalled = [(t, s) for t, s, w in zip(at, share, windows) if w.get("signal") or w.get("dataset_drift")]
    if signalled:
        axes.scatter(*zip(*signalled), s=140, facecolors="none", edgecolors=SIGNAL_COLOUR, lw=1.5, zorder=3,
                     label="window signalled (drift or quality drop)")
    triggers = [t for t, w in zip(at, windows) if (w.get("decision") or {}).get("action") == "trigger"]
    for i, t in enumerate(triggers):
        axes.axvline(t, color=SIGNAL_COLOUR, lw=1, alpha=0.7, label="retrain triggered" if i == 0 else None)
    for i, (t, w) in enumerate(zip(at, windows)):
        if i and w.get("reference_version") != windows[i - 1].get("reference_version"):
            axes.annotate(f"v{w.get('reference_version')} in production", (t, 1.0), fontsize=9, ha="center",
                          va="bottom", color=MUTED)
    axes.set(ylim=(0, 1.05), ylabel="share / score", xlabel="window closed (UTC)")
    axes.grid(alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    if errors is not None:
        errors.set(ylim=(0, None), ylabel="realised error (target's units)")
        more = errors.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    # Outside the plot, and past the error axis's labels when there is one.
    axes.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.08 if errors else 1.01, 1), fontsize=9)
    model = windows[-1].get("model", "")
    figure.suptitle(f"Drift of {model}: {len(windows)} windows, against production "
                    f"v{windows[-1].get('reference_version')}", fontsize=12)
    from matplotlib.dates import DateFormatter

    span = (at[-1] - at[0]).total_seconds()
    axes.xaxis.set_major_formatter(DateFormatter("%H:%M:%S" if span < 3600 else "%H:%M" if span < 86_400
                                                 else "%Y-%m-%d %H:%M", tz=UTC))
    figure.autofmt_xdate()
    return _png(figure)


def _figure(width: float, height: float) -> Figure:
    # Not through pyplot: a figure pyplot knows about would be shown a second time by the inline backend.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _png(figure: Figure) -> Image:
    from IPython.display import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, metadata={"Software": None})
    return Image(data=buffer.getvalue(), format="png")


def _floats(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _amount(value: float | None) -> str:
    """An error in the target's units: three significant digits (7.23, 1.24e+03)."""
    return "–" if value is None else f"{value:.3g}"
