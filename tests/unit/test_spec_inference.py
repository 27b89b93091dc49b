"""Spec inference a data scientist would sign: the file's own types win, identifiers and times stay out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from driftloop.data import infer_spec, load_table


def _census_like(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "id": np.arange(10_000, 10_000 + n),                      # unique, counting up
        "timestamp": pd.date_range("2026-01-01", periods=n, freq="h").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "age": rng.integers(18, 90, n),
        "hours_per_week": rng.integers(1, 99, n).astype(float),
        "education": pd.Categorical(rng.integers(1, 16, n)),      # numeric codes, declared categorical
        "relationship": pd.Categorical(rng.choice(["husband", "wife", "own-child"], n)),
        "num_children": rng.integers(0, 5, n),                    # a few distinct integers
        "income_usd": rng.permutation(np.arange(n) * 37 + 20_000),  # unique integers, not an id
        "label": rng.integers(0, 2, n),
    })
    return frame


def test_columns_the_file_declares_categorical_are_categorical_even_with_numeric_codes(tmp_path) -> None:
    # Through a Parquet file, as a user's table arrives: the file's pandas metadata says "categorical" even where
    # Arrow gives integer codes back as plain integers.
    path = tmp_path / "census.parquet"
    _census_like().to_parquet(path, index=False)
    assert pd.read_parquet(path)["education"].dtype == "int64"  # what a naive reader sees
    frame, _ = load_table(str(path))
    spec = infer_spec(frame, "label")
    kinds = {f.name: f.kind for f in spec.features}
    assert kinds["education"] == "categorical" and kinds["relationship"] == "categorical"
    assert kinds["age"] == "numeric" and kinds["hours_per_week"] == "numeric"


def test_identifiers_are_left_out_with_the_reason_and_unique_amounts_are_not() -> None:
    spec = infer_spec(_census_like(), "label")
    assert "id" not in spec.feature_names and "unique integers counting up" in spec.ignored["id"]
    assert "income_usd" in spec.feature_names  # unique, but neither a range nor named like an id


def test_an_iso_time_column_becomes_the_timestamp_column() -> None:
    spec = infer_spec(_census_like(), "label")
    assert spec.timestamp_column == "timestamp" and "timestamp" not in spec.feature_names
    assert "taken as the timestamp column" in spec.notes["timestamp"]
    declared = infer_spec(_census_like(), "label", timestamp_column="timestamp")
    assert declared.timestamp_column == "timestamp" and "timestamp" not in declared.notes


def test_a_few_distinct_integers_are_noted_as_likely_codes() -> None:
    spec = infer_spec(_census_like(), "label")
    assert "declare the column categorical" in spec.notes["num_children"]
    assert {f.name: f.kind for f in spec.features}["num_children"] == "numeric"  # noted, not changed


def test_notes_survive_the_json_round_trip() -> None:
    from driftloop.data import DatasetSpec

    spec = infer_spec(_census_like(), "label")
    assert DatasetSpec.from_json(spec.to_json()) == spec
