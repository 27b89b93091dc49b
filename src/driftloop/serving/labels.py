"""What a served version answers in: a classifier's class indices turned into the labels users know.

A classification Pipeline predicts indices into ``DatasetSpec.target_classes`` (the model contract in
:mod:`driftloop.tasks`); serving, batch scoring and the batch feed to the monitor all answer with the labels
those indices stand for, through this one module, so the rule for a spec without classes lives in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from driftloop.data import DatasetSpec

# A spec written before validation recorded the target's classes is a binary one (nothing else existed), whose
# model predicts 0 and 1: those are its labels.
UNRECORDED_BINARY_CLASSES = (0, 1)


def served_classes(spec: DatasetSpec) -> tuple:
    """The labels a version's class indices stand for, in index order; empty for a regression."""
    if not spec.is_classification:
        return ()
    return tuple(spec.target_classes) or UNRECORDED_BINARY_CLASSES


def class_array(classes: Sequence) -> np.ndarray:
    """The labels as an array indices can pick from: numbers and booleans keep their numpy type (V2 answers them
    as INT64, FP64 or BOOL), text and mixed labels are Python objects (V2's BYTES)."""
    array = np.asarray(list(classes))
    return array if array.dtype.kind in "biuf" else np.asarray(list(classes), dtype=object)


def labels_of(indices: np.ndarray, classes: Sequence) -> np.ndarray:
    """The labels of class indices (``tasks.class_label`` for a whole array)."""
    return class_array(classes)[np.asarray(indices, dtype=np.int64)]


def jsonable(classes: Sequence) -> list:
    """The labels as JSON carries them (numpy scalars become Python's)."""
    return [c.item() if isinstance(c, np.generic) else c for c in classes]
