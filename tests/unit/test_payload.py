"""Every V1 body KServe's runtimes accept decodes to the same typed rows; bad bodies get one clear 400."""

from __future__ import annotations

import pandas as pd
import pytest
from kserve.errors import InvalidInput

from driftloop.data import DatasetSpec, FeatureSpec
from driftloop.serving.payload import MAX_INSTANCES, frame_from_payload

SPEC = DatasetSpec("churned", (FeatureSpec("age", "numeric"), FeatureSpec("region", "categorical"),
                               FeatureSpec("has_autopay", "boolean")))
ROWS = [{"age": 53, "region": "west", "has_autopay": True}, {"age": 61.5, "region": None, "has_autopay": False}]


@pytest.mark.parametrize("instances", [
    ROWS,  # records
    [{"age": [53, 61.5], "region": ["west", None], "has_autopay": [True, False]}],  # KServe's column lists
    [{"age": [53], "region": ["west"], "has_autopay": [True]},
     {"age": [61.5], "region": [None], "has_autopay": [False]}],  # one column-list dict per row
    [ROWS],  # a list of records, as KServe's get_predict_input also takes
    [[53, "west", True], [61.5, None, False]],  # positional, in the spec's order
], ids=["records", "columns", "columns-per-row", "list-of-records", "positional"])
def test_every_v1_shape_gives_the_same_rows(instances) -> None:
    frame = frame_from_payload({"instances": instances}, SPEC)
    expected = frame_from_payload({"instances": ROWS}, SPEC)
    pd.testing.assert_frame_equal(frame, expected)
    assert frame["age"].tolist() == [53.0, 61.5] and frame["region"].tolist() == ["west", None]


@pytest.mark.parametrize(("instances", "message"), [
    ([{"age": [53, 60], "region": ["west"], "has_autopay": [True, True]}], "not a mix"),
    ([{"age": [53], "region": "west", "has_autopay": [True]}], "not a mix"),
    ([{"age": 53, "region": "w", "has_autopay": True, "extra": 1}], "instance 0: unknown feature(s): extra"),
    ([{"age": 53, "has_autopay": True}], "missing feature(s): region"),
    ([[53, "west"]], "instance 0 has 2 values; the model takes 3"),
    (["53,west,true"], "instance 0 must be an object"),
    ([], "empty batch"),
])
def test_malformed_v1_bodies_are_refused_with_the_reason(instances, message) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        frame_from_payload({"instances": instances}, SPEC)


def test_an_oversized_batch_is_refused_before_any_column_is_built() -> None:
    # Distinct unknown keys in every instance: the refusal must come from the count, cheaply.
    instances = [{f"k{i}": i} for i in range(MAX_INSTANCES + 1)]
    with pytest.raises(InvalidInput, match="larger than the limit"):
        frame_from_payload({"instances": instances}, SPEC)
    columns = [{"age": [1.0] * (MAX_INSTANCES + 1), "region": ["a"] * (MAX_INSTANCES + 1),
                "has_autopay": [True] * (MAX_INSTANCES + 1)}]
    with pytest.raises(InvalidInput, match="larger than the limit"):
        frame_from_payload({"instances": columns}, SPEC)


NUMERIC = DatasetSpec("y", (FeatureSpec("age", "numeric"), FeatureSpec("income", "numeric")))


@pytest.mark.parametrize("body", [
    {"inputs": [{"name": "age", "shape": [2], "datatype": "FP64", "data": [53, 61.5]},
                {"name": "income", "shape": [2], "datatype": "FP64", "data": [1000, 2000]}],
     "parameters": {"content_type": "pd"}},
    {"inputs": [{"name": "age", "shape": [2], "datatype": "FP64", "data": [53, 61.5]},
                {"name": "income", "shape": [2], "datatype": "FP64", "data": [1000, 2000]}]},  # no content_type
    {"inputs": [{"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [53, 1000, 61.5, 2000]}]},
], ids=["pd", "tensor-per-column", "row-major"])
def test_every_v2_shape_gives_the_same_rows(body) -> None:
    from kserve.protocol.infer_type import InferRequest

    request = InferRequest.from_inference_request(_rest_request(body), "m")
    frame = frame_from_payload(request, NUMERIC)
    assert frame["age"].tolist() == [53.0, 61.5] and frame["income"].tolist() == [1000.0, 2000.0]


def test_v2_refuses_an_unknown_or_repeated_input_and_an_oversized_one_before_decoding() -> None:
    from kserve.protocol.infer_type import InferRequest

    unknown = {"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "data": [1]},
                          {"name": "zip", "shape": [1], "datatype": "FP64", "data": [1]}]}
    with pytest.raises(InvalidInput, match="unknown feature\\(s\\): zip"):
        frame_from_payload(InferRequest.from_inference_request(_rest_request(unknown), "m"), NUMERIC)
    repeated = {"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "data": [1]},
                           {"name": "income", "shape": [1], "datatype": "FP64", "data": [1]},
                           {"name": "age", "shape": [1], "datatype": "FP64", "data": [99]}]}
    with pytest.raises(InvalidInput, match="input\\(s\\) given more than once: age"):
        frame_from_payload(InferRequest.from_inference_request(_rest_request(repeated), "m"), NUMERIC)
    huge = {"inputs": [{"name": "age", "shape": [MAX_INSTANCES + 1], "datatype": "FP64", "data": [1.0]}]}
    with pytest.raises(InvalidInput, match="the limit is"):
        frame_from_payload(InferRequest.from_inference_request(_rest_request(huge), "m"), NUMERIC)


def _rest_request(body: dict):
    from kserve.protocol.rest.v2_datamodels import InferenceRequest

    return InferenceRequest(**body)
