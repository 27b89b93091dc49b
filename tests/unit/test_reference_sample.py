"""A version's drift reference: for a drift retrain, the newest of the world it was trained and judged for."""

import pandas as pd

from driftloop import synthetic
from driftloop.data import LIVE, REFERENCE, SOURCE_COLUMN
from driftloop.steps import reference_sample


def test_a_drift_retrain_is_measured_against_its_newest_rows_not_the_old_world() -> None:
    old = synthetic.generate(1000, seed=1).assign(**{SOURCE_COLUMN: REFERENCE})
    # Live rows since the first signalling window: that window opened before the drift, so the older half is
    # still the old world; the recent slice (held back from training) is the newest of the new one.
    before = synthetic.generate(200, seed=2, id_offset=10_000).assign(**{SOURCE_COLUMN: LIVE})
    after = synthetic.generate(200, seed=3, covariate_shift=0.6, id_offset=20_000).assign(**{SOURCE_COLUMN: LIVE})
    recent = synthetic.generate(150, seed=4, covariate_shift=0.6, id_offset=30_000)
    table = pd.concat([old, before, after], ignore_index=True)

    sample = reference_sample(table, recent)

    assert len(sample) == 350 and (sample[SOURCE_COLUMN] == LIVE).all()
    assert set(sample[synthetic.ID_COLUMN]) == set(after[synthetic.ID_COLUMN]) | set(recent[synthetic.ID_COLUMN])


def test_a_manual_run_is_measured_against_a_sample_of_its_training_rows() -> None:
    table = synthetic.generate(8000, seed=1)

    sample = reference_sample(table, None)

    assert len(sample) == 5000 and set(sample[synthetic.ID_COLUMN]) <= set(table[synthetic.ID_COLUMN])
