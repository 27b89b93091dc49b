"""Loading tables (CSV/Parquet), inferring a dataset spec, the spec's JSON form, and type coercion."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop import synthetic
from driftloop.data import DatasetSpec, FeatureSpec, coerce_to_spec, infer_spec, load_table
from driftloop.errors import DataError, DataValidationError


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- load_table ----------------------------------------------------------------------------------


def test_load_table_reads_csv_and_hashes_the_file(tmp_path: Path, churn_frame: pd.DataFrame) -> None:
    path = tmp_path / "churn.csv"
    churn_frame.to_csv(path, index=False)

    frame, sha = load_table(str(path))

    assert list(frame.columns) == list(churn_frame.columns)
    assert len(frame) == len(churn_frame)
    assert frame["customer_id"].tolist() == churn_frame["customer_id"].tolist()
    assert frame["support_calls"].sum() == pytest.approx(churn_frame["support_calls"].sum())
    assert sha == _sha256(path)


@pytest.mark.parametrize("suffix", [".parquet", ".pq", ".PARQUET"])
def test_load_table_reads_parquet_with_its_types(tmp_path: Path, churn_frame: pd.DataFrame, suffix: str) -> None:
    path = tmp_path / f"churn{suffix}"
    churn_frame.to_parquet(path, index=False)

    frame, sha = load_table(str(path))

    assert frame.dtypes.to_dict() == churn_frame.dtypes.to_dict()
    # Parquet reads missing text back as None rather than NaN; both are missing.
    assert frame["channel"].isna().equals(churn_frame["channel"].isna())
    pd.testing.assert_frame_equal(frame.drop(columns="channel"), churn_frame.drop(columns="channel"))
    assert sha == _sha256(path)


def test_load_table_accepts_file_uri(tmp_path: Path, churn_frame: pd.DataFrame) -> None:
    path = tmp_path / "churn.csv"
    churn_frame.head(50).to_csv(path, index=False)

    frame, _ = load_table(f"file://{path}")

    assert len(frame) == 50


def test_same_bytes_give_same_hash_and_changed_bytes_another(tmp_path: Path, churn_frame: pd.DataFrame) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    churn_frame.head(100).to_csv(a, index=False)
    churn_frame.head(100).to_csv(b, index=False)
    _, sha_a = load_table(str(a))
    _, sha_b = load_table(str(b))
    churn_frame.head(101).to_csv(b, index=False)
    _, sha_changed = load_table(str(b))

    assert sha_a == sha_b
    assert sha_changed != sha_a


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nowhere" / "churn.csv"


def _directory(tmp_path: Path) -> Path:
    path = tmp_path / "folder.csv"
    path.mkdir()
    return path


def _binary_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.parquet"
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8)))
    return path


def _csv_in_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "really_csv.parquet"
    path.write_text("a,b\n1,2\n")
    return path


def _truncated_parquet(tmp_path: Path) -> Path:
    source = tmp_path / "whole.parquet"
    pd.DataFrame({"a": range(100), "b": ["x"] * 100}).to_parquet(source)
    data = source.read_bytes()
    path = tmp_path / "truncated.parquet"
    path.write_bytes(data[: len(data) // 2])
    return path


def _binary_csv(tmp_path: Path) -> Path:
    path = tmp_path / "binary.csv"
    path.write_bytes(bytes(range(256)) * 4)
    return path


def _empty_csv(tmp_path: Path) -> Path:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    return path


def _blank_lines_csv(tmp_path: Path) -> Path:
    path = tmp_path / "blank.csv"
    path.write_text("\n\n\n")
    return path


def _header_only_csv(tmp_path: Path) -> Path:
    path = tmp_path / "header.csv"
    path.write_text("age,churned\n")
    return path


def _unterminated_quote_csv(tmp_path: Path) -> Path:
    path = tmp_path / "quote.csv"
    path.write_text('age,churned\n1,"0\n')
    return path


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "churn.txt"
    path.write_text("age,churned\n1,0\n")
    return path


def _no_extension(tmp_path: Path) -> Path:
    path = tmp_path / "churn"
    path.write_text("age,churned\n1,0\n")
    return path


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_missing, "file not found"),
        (_directory, "expected a file, got a directory"),
        (_binary_parquet, "as Parquet"),
        (_csv_in_parquet, "as Parquet"),
        (_truncated_parquet, "as Parquet"),
        (_binary_csv, "as CSV"),
        (_empty_csv, "file is empty"),
        (_blank_lines_csv, "as CSV"),
        (_header_only_csv, "no rows"),
        (_unterminated_quote_csv, "as CSV"),
        (_text_file, "unsupported file type '.txt'"),
        (_no_extension, "unsupported file type '(none)'"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_unusable_file_raises_data_error_naming_file_and_problem(tmp_path: Path, make, expected: str) -> None:
    path = make(tmp_path)

    with pytest.raises(DataError) as caught:
        load_table(str(path))

    message = str(caught.value)
    assert expected in message
    assert path.name in message
    assert "\n" not in message  # the CLI prints it as one line


# -- infer_spec ----------------------------------------------------------------------------------


@pytest.fixture
def mixed_frame() -> pd.DataFrame:
    n = 120
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "user": [f"u{i:05d}" for i in range(n)],
            "amount": rng.normal(50, 10, n),
            "visits": rng.integers(0, 9, n),
            "flag01": rng.integers(0, 2, n),
            "city": rng.choice(["paris", "rome", "oslo"], n),
            "subscribed": rng.choice(["yes", "no", "Yes", None], n),
            "active": rng.random(n) < 0.5,
            "zip_code": rng.integers(10_000, 10_010, n),
            "note": [f"free text {i}" for i in range(n)],
            "label": rng.integers(0, 2, n),
        }
    )


def test_infer_spec_types_each_column(mixed_frame: pd.DataFrame) -> None:
    spec = infer_spec(mixed_frame, "label", id_column="user", categorical=["zip_code"], exclude=["note"])

    kinds = {f.name: f.kind for f in spec.features}
    assert kinds == {
        "amount": "numeric",
        "visits": "numeric",
        "flag01": "numeric",  # 0/1 integers stay numbers
        "city": "categorical",
        "subscribed": "boolean",  # yes/no text, any case, with nulls
        "active": "boolean",  # bool dtype
        "zip_code": "categorical",  # forced by the user
    }
    assert spec.target == "label"
    assert spec.id_column == "user"
    assert "label" not in spec.feature_names and "user" not in spec.feature_names
    assert "note" not in spec.ignored  # excluded on request, not guessed


def test_infer_spec_leaves_out_identifier_like_text_with_a_reason(mixed_frame: pd.DataFrame) -> None:
    spec = infer_spec(mixed_frame, "label")

    assert "user" not in spec.feature_names
    assert "note" not in spec.feature_names
    assert "identifier" in spec.ignored["user"]
    assert "identifier" in spec.ignored["note"]
    assert "city" in spec.feature_names  # low-cardinality text is a feature


def test_infer_spec_reads_numbers_stored_as_text_as_numeric() -> None:
    values = [str(v) for v in range(100)] + ["oops"]
    frame = pd.DataFrame({"x": values, "y": [0, 1] * 50 + [0]})

    spec = infer_spec(frame, "y")

    assert spec.features == (FeatureSpec("x", "numeric"),)


def test_infer_spec_on_the_churn_table(churn_spec: DatasetSpec) -> None:
    kinds = {f.name: f.kind for f in churn_spec.features}

    assert kinds["age"] == kinds["income"] == kinds["support_calls"] == "numeric"
    assert kinds["region"] == kinds["plan"] == kinds["channel"] == "categorical"
    assert kinds["has_autopay"] == kinds["is_promo"] == kinds["paperless"] == "boolean"
    assert {synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN, synthetic.TARGET}.isdisjoint(churn_spec.feature_names)


def test_infer_spec_types_yes_no_text_loaded_from_csv_as_boolean(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"vip": ["yes", "no", "no", ""] * 10, "y": [0, 1] * 20}).to_csv(path, index=False)
    frame, _ = load_table(str(path))

    spec = infer_spec(frame, "y")

    assert spec.features == (FeatureSpec("vip", "boolean"),)


def test_infer_spec_without_the_target_names_it_and_lists_columns(mixed_frame: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError) as caught:
        infer_spec(mixed_frame, "churned")

    assert caught.value.column == "churned"
    assert "target column not found" in str(caught.value)
    assert "amount" in str(caught.value)


@pytest.mark.parametrize("role", ["id_column", "timestamp_column"])
def test_infer_spec_with_a_missing_id_or_timestamp_column_names_it(mixed_frame: pd.DataFrame, role: str) -> None:
    with pytest.raises(DataValidationError, match="'customer_no'") as caught:
        infer_spec(mixed_frame, "label", **{role: "customer_no"})
    assert caught.value.column == "customer_no"


def test_infer_spec_with_only_a_target_raises() -> None:
    with pytest.raises(DataValidationError, match="no feature columns"):
        infer_spec(pd.DataFrame({"y": [0, 1]}), "y")


# -- DatasetSpec JSON ----------------------------------------------------------------------------


def test_spec_json_round_trip_keeps_everything(churn_spec: DatasetSpec) -> None:
    spec = DatasetSpec(
        target=churn_spec.target,
        features=churn_spec.features,
        id_column=churn_spec.id_column,
        timestamp_column=churn_spec.timestamp_column,
        target_classes=(np.int64(0), np.int64(1)),  # as validation finds them in a frame
        ignored={"notes": "looks like an identifier"},
    )

    text = spec.to_json()
    back = DatasetSpec.from_json(text)

    assert json.loads(text)["target_classes"] == [0, 1]
    assert back == spec
    assert back.feature_names == spec.feature_names
    assert back.names_of("boolean") == ["has_autopay", "is_promo", "paperless"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "invalid dataset spec JSON"),
        ('{"features": []}', "missing or malformed field"),
        ('{"target": "y", "features": [{"name": "a"}]}', "missing or malformed field"),
        ('{"target": "y", "features": [{"name": "a", "kind": "date"}]}', "feature 'a' has unknown kind 'date'"),
    ],
)
def test_invalid_spec_json_raises_data_error(text: str, expected: str) -> None:
    with pytest.raises(DataError) as caught:
        DatasetSpec.from_json(text)
    assert expected in str(caught.value)


# -- coerce_to_spec -------------------------------------------------------------------------------


def test_coerce_types_numbers_text_and_booleans() -> None:
    spec = DatasetSpec(
        "y",
        (FeatureSpec("n", "numeric"), FeatureSpec("c", "categorical"), FeatureSpec("b", "boolean")),
    )
    frame = pd.DataFrame({"n": ["1", "2.5", None], "c": [3, None, "x"], "b": ["Yes", "n", None], "y": [0, 1, 0]})

    out = coerce_to_spec(frame, spec)

    assert out["n"].dtype == float
    assert out["n"].iloc[:2].tolist() == [1.0, 2.5] and np.isnan(out["n"].iloc[2])
    assert out["c"].iloc[0] == "3" and pd.isna(out["c"].iloc[1]) and out["c"].iloc[2] == "x"
    assert out["b"].tolist() == [True, False, None]
    assert frame["n"].tolist() == ["1", "2.5", None]  # the input is left alone


def test_coerce_reports_a_bad_boolean_value_with_its_column() -> None:
    spec = DatasetSpec("y", (FeatureSpec("vip", "boolean"),))
    frame = pd.DataFrame({"vip": ["yes", "maybe"], "y": [0, 1]})

    with pytest.raises(DataValidationError) as caught:
        coerce_to_spec(frame, spec)

    assert caught.value.column == "vip"
    assert "'maybe'" in str(caught.value)


def test_coerce_reports_a_missing_feature_column() -> None:
    spec = DatasetSpec("y", (FeatureSpec("age", "numeric"),))

    with pytest.raises(DataValidationError, match="column 'age': column is missing"):
        coerce_to_spec(pd.DataFrame({"y": [0, 1]}), spec)
