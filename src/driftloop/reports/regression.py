"""The regression sections of the evaluation report: the error against a model that ignores the features,
predicted against actual (with the diagonal a perfect model lies on), the residuals against the prediction, and
the error by decile of the prediction (where the model is wrong: its largest predictions too low, say)."""

from __future__ import annotations

from driftloop.evaluation import Evaluation
from driftloop.reports.html import (
    CANDIDATE_COLOUR,
    CHAMPION_COLOUR,
    amount,
    count,
    e,
    number,
    percent,
    table,
    td,
)
from driftloop.reports.svg import Bars, Points, bar_chart, scatter_chart


def sections(evaluation: Evaluation, champion: Evaluation | None, champion_label: str, target: str) -> list[str]:
    """The page's regression part, after the scores."""
    name = target or "target"
    predicted = evaluation.residuals.get("predicted", [])
    actual = evaluation.residuals.get("actual", [])
    residual = [a - p for p, a in zip(predicted, actual)]
    sample = (f"{count(len(predicted))} holdout rows, an even sample" if len(predicted) < _holdout(evaluation)
              else f"all {count(len(predicted))} holdout rows")
    figures = [
        ("Predicted against actual",
         scatter_chart([Points(f"candidate ({sample})", predicted, actual, CANDIDATE_COLOUR)],
                       f"predicted {name}", f"actual {name}", guide="diagonal", title="predicted against actual"),
         "Dashed diagonal: a perfect model. Points above it were predicted too low, below it too high."),
        ("Residuals",
         scatter_chart([Points(f"candidate ({sample})", predicted, residual, CANDIDATE_COLOUR)],
                       f"predicted {name}", "residual (actual − predicted)", guide="zero", title="residuals"),
         "Centred on the dashed zero line everywhere when the model is unbiased; a funnel means its error grows "
         "with the prediction."),
    ]
    out = [_context(evaluation, name), "<h2>Predicted against actual</h2>", '<div class="charts">' + "".join(
        f'<figure><figcaption>{e(caption)}</figcaption>{svg}<div class="note">{e(note)}</div></figure>'
        for caption, svg, note in figures) + "</div>"]
    return out + _deciles(evaluation, champion, champion_label, name)


def _holdout(evaluation: Evaluation) -> int:
    n = evaluation.metrics.get("n_holdout")
    return int(n) if isinstance(n, (int, float)) else 0


def _context(evaluation: Evaluation, name: str) -> str:
    metrics = evaluation.metrics
    rmse, baseline, r2 = metrics.get("rmse"), metrics.get("baseline_rmse"), metrics.get("r2")
    parts = []
    if isinstance(rmse, (int, float)) and isinstance(baseline, (int, float)) and baseline > 0:
        lower = (baseline - rmse) / baseline
        parts.append(f"Predicting the holdout's mean {e(name)} for every row — a model that ignores the features "
                     f"— has an RMSE of {amount(baseline)}; the candidate's, {amount(rmse)}, is "
                     f"<strong>{percent(abs(lower))} {'lower' if lower >= 0 else 'higher'}</strong>.")
    if isinstance(r2, (int, float)):
        parts.append(f"R² {number(r2)}: the share of the target's variance the model explains (0 is no better "
                     "than the mean, 1 is perfect).")
    bias = _bias(evaluation)
    if bias is not None:
        parts.append(f"On average it predicts {amount(abs(bias), like=rmse)} too {'low' if bias > 0 else 'high'}.")
    return f"<p>{' '.join(parts)}</p>" if parts else ""


def _bias(evaluation: Evaluation) -> float | None:
    """Mean actual minus mean predicted over the whole holdout, from the deciles (which cover every row)."""
    rows = sum(d.get("count", 0) for d in evaluation.error_by_decile)
    if not rows:
        return None
    return sum(d["count"] * (d["mean_actual"] - d["mean_predicted"]) for d in evaluation.error_by_decile) / rows


def _deciles(evaluation: Evaluation, champion: Evaluation | None, champion_label: str, name: str) -> list[str]:
    deciles = evaluation.error_by_decile
    if not deciles:
        return []
    rows = [[td(str(d["decile"]), "num"), td(f"{amount(d['low'])} – {amount(d['high'])}", "num"),
             td(amount(d["mean_predicted"]), "num"), td(amount(d["mean_actual"]), "num"),
             td(amount(d["mean_actual"] - d["mean_predicted"], sign=True, like=d["mae"]), "num"), td(amount(d["mae"]), "num"),
             td(count(d["count"]), "num")] for d in deciles]
    head = ['<span class="num">decile</span>', f'<span class="num">predicted {e(name)}</span>',
            '<span class="num">mean predicted</span>', '<span class="num">mean actual</span>',
            '<span class="num">actual − predicted</span>', '<span class="num">MAE</span>',
            '<span class="num">rows</span>']
    labels = [f"decile {d['decile']}" for d in deciles]
    series = [Bars("candidate", [d["mae"] for d in deciles], CANDIDATE_COLOUR)]
    note = "Mean absolute error per tenth of the rows, sorted by prediction."
    if champion is not None and len(champion.error_by_decile) == len(deciles):
        series.append(Bars(champion_label, [d["mae"] for d in champion.error_by_decile], CHAMPION_COLOUR))
        note += " Each model's rows are sorted by its own predictions."
    return ["<h2>Error by decile of the prediction</h2>",
            '<p class="note">The holdout sorted by the candidate\'s prediction and cut in ten: where its error '
            "lies, and whether it runs high or low there.</p>",
            table(head, rows),
            '<figure class="wide"><figcaption>MAE by decile</figcaption>'
            + bar_chart(labels, series, value_text=amount, title="MAE by decile of the prediction")
            + f'<div class="note">{e(note)}</div></figure>']
