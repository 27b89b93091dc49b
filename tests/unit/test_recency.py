"""Drift-aware retraining: the new world's weight is chosen on the recent slice, which is never trained on."""

from __future__ import annotations

import pandas as pd

from driftloop import synthetic
from driftloop.data import LIVE, REFERENCE, SOURCE_COLUMN, infer_spec
from driftloop.recency import LIVE_WEIGHTS, REFERENCE_WINDOWS, train_for_recent
from driftloop.validation import validate_table


def _retrain_table() -> tuple[pd.DataFrame, pd.DataFrame, object]:
    reference = synthetic.generate(3000, seed=1).assign(**{SOURCE_COLUMN: REFERENCE})
    drifted = synthetic.generate(900, seed=2, covariate_shift=0.8, concept_shift=0.9, id_offset=10_000)
    live, recent = drifted.iloc[:600].assign(**{SOURCE_COLUMN: LIVE}), drifted.iloc[600:]
    table = pd.concat([reference, live], ignore_index=True)
    spec = infer_spec(table, synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN)
    clean, _, spec = validate_table(table, spec)
    recent_clean, _, _ = validate_table(recent, spec)
    return clean, recent_clean, spec


def test_the_recent_slice_chooses_the_weighting_and_never_reaches_training() -> None:
    table, recent, spec = _retrain_table()
    result, strategies = train_for_recent(table, spec, recent, "logistic_regression", None, 0.25, 7, "roc_auc")
    assert len(strategies) == len(LIVE_WEIGHTS) * len(REFERENCE_WINDOWS)
    [chosen] = [s for s in strategies if s.chosen]
    assert chosen.value == max(s.value for s in strategies)
    trained_ids = set(result.train_frame[synthetic.ID_COLUMN]) | set(result.holdout_frame[synthetic.ID_COLUMN])
    assert not trained_ids & set(recent[synthetic.ID_COLUMN])
    # After a concept shift the new world must weigh more than its share of rows: plain mixing is not chosen.
    assert (chosen.live_weight, chosen.reference_window) != (1.0, "all")
    plain = next(s for s in strategies if (s.live_weight, s.reference_window) == (1.0, "all"))
    assert chosen.value > plain.value + 0.01
