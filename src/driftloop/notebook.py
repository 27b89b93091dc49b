"""What the notebooks show inline: driftloop's pages embedded whole, and charts of a version and of the monitor.

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

if TYPE_CHECKING:
    from IPython.display import HTML, Image
    from matplotlib.figure import Figure

    from driftloop.registry import ModelRegistry

EVALUATION_FILE = "evaluation.json"  # the evaluation page's content, stored with every registered version
SIGNAL_COLOUR, ACCURACY_COLOUR, MUTED = "#cf222e", "#1a7f37", "#8c959f"


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


def roc_comparison(page: EvaluationPage) -> Image:
    """ROC and precision–recall curves of the candidate and, when there was one, the champion on the same
    holdout, with each curve's AUC (average precision) in the legend."""
    figure = _figure(10, 4.8)
    roc, pr = figure.subplots(1, 2)
    champion = (f"champion v{page.decision.champion_version}" if page.decision.champion_version is not None
                else "champion")
    numbered = page.facts.version is not None
    curves = [(f"v{page.facts.version} (candidate)" if numbered else "candidate", page.evaluation, CANDIDATE_COLOUR,
               "-")]
    if page.champion_evaluation is not None:
        curves.append((champion, page.champion_evaluation, CHAMPION_COLOUR, "--"))
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
    name = f"{page.facts.model} v{page.facts.version}" if numbered else f"{page.facts.model} (candidate)"
    against = f"against {champion} on the same holdout" if len(curves) > 1 else "on the holdout (no champion)"
    title = f"{name} {against}: {rows} rows"
    decision = page.decision
    if decision.recent_candidate and decision.recent_champion:  # a drift retrain: the recent rows decided
        metric = decision.metric
        title += (f"\nthe gate decided on the {decision.n_recent} most recent rows: {metric} "
                  f"{_score(decision.recent_candidate.get(metric))} vs "
                  f"{_score(decision.recent_champion.get(metric))}")
    figure.suptitle(title, fontsize=12)
    return _png(figure)


def drift_trend(summaries: Sequence[dict], drift_share: float | None = None) -> Image:
    """The drift monitor's windows over time: the share of drifted features, the prediction drift score and the
    realised accuracy (when labels arrived), the windows that signalled and those that triggered a retrain.

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
    accuracy = [((w.get("quality") or {}).get("accuracy")) for w in windows]
    axes.plot(at, _floats(share), "o-", color=CANDIDATE_COLOUR, lw=2, label="share of features drifted")
    axes.plot(at, _floats(prediction), "s--", color=CHAMPION_COLOUR, lw=1.5, label="prediction drift score")
    if any(a is not None for a in accuracy):
        axes.plot(at, _floats(accuracy), "^-", color=ACCURACY_COLOUR, lw=1.5, label="realised accuracy")
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
    axes.set(ylim=(0, 1.05), ylabel="share / score / accuracy", xlabel="window closed (UTC)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)
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
