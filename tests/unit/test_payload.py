"""Every V1 body KServe's runtimes accept decodes to the same typed rows; bad bodies get one clear 400."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kserve.errors import InvalidInput

from driftloop.data import DatasetSpec, FeatureSpec
from driftloop.serving.payload import (
    MAX_INSTANCES,
    columns_from_payload,
    frame_from_payload,
    logged_request,
    rows_at_most,
)

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


_COLUMNS = [{"name": "age", "shape": [2], "datatype": "FP64", "data": [53, 61.5]},
            {"name": "region", "shape": [2], "datatype": "BYTES", "data": ["west", None]},
            {"name": "has_autopay", "shape": [2], "datatype": "BOOL", "data": [True, False]}]
_N_BY_1 = [{**tensor, "shape": [2, 1], "data": [[v] for v in tensor["data"]]} for tensor in _COLUMNS]
_PD = {"parameters": {"content_type": "pd"}}


@pytest.mark.parametrize("body", [
    {"inputs": _COLUMNS, **_PD}, {"inputs": _COLUMNS}, {"inputs": _N_BY_1, **_PD}, {"inputs": _N_BY_1},
    {"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "BYTES",
                 "data": [[53, "west", True], [61.5, None, False]]}]},
], ids=["pd", "tensor-per-column", "n-by-1-pd", "n-by-1", "row-major-mixed"])
def test_mixed_type_v2_bodies_give_the_rows_v1_records_give(body) -> None:
    from kserve.protocol.infer_type import InferRequest

    frame = frame_from_payload(InferRequest.from_inference_request(_rest_request(body), "m"), SPEC)
    pd.testing.assert_frame_equal(frame, frame_from_payload({"instances": ROWS}, SPEC))


def test_v2_inputs_of_different_lengths_are_refused() -> None:
    from kserve.protocol.infer_type import InferRequest

    body = {"inputs": [{"name": "age", "shape": [2], "datatype": "FP64", "data": [53, 61.5]},
                       {"name": "income", "shape": [1], "datatype": "FP64", "data": [1000]}]}
    with pytest.raises(InvalidInput, match="different numbers of rows"):
        frame_from_payload(InferRequest.from_inference_request(_rest_request(body), "m"), NUMERIC)


def _through_arrays(request):
    """The request with every input's data as a tuple: the decoder then reads each input as a numpy array, as it
    did before it took JSON data as sent (the reference the shortcut must match)."""
    for tensor in request.inputs:
        tensor.data = tuple(tensor.data)
    return request


def _decoded(request, spec):
    try:
        return columns_from_payload(request, spec)
    except InvalidInput as exc:
        return f"InvalidInput: {exc}"


_ONE = [{"name": "age", "shape": [1], "datatype": "FP64", "data": [53]},
        {"name": "region", "shape": [1], "datatype": "BYTES", "data": ["west"]},
        {"name": "has_autopay", "shape": [1], "datatype": "BOOL", "data": [True]}]


def _with(tensors: list[dict], name: str, **changes) -> list[dict]:
    return [{**t, **changes} if t["name"] == name else t for t in tensors]


@pytest.mark.parametrize("inputs", [
    _COLUMNS, _N_BY_1, _ONE,
    [{**t, "shape": [1, 1], "data": [t["data"]]} for t in _ONE],  # [1, 1], nested
    [{**t, "shape": [2, 1]} for t in _COLUMNS],  # [n, 1] with flat data
    [{**t, "shape": [2]} for t in _N_BY_1],  # [n] with nested data
    _with(_ONE, "age", data=[None]), _with(_ONE, "age", data=[True]), _with(_ONE, "age", data=["53"]),
    _with(_ONE, "age", data=["six"]), _with(_ONE, "age", datatype="FP32", data=[0.1]),
    _with(_ONE, "age", datatype="INT64", data=[53]), _with(_ONE, "age", datatype="BYTES", data=[53]),
    _with(_ONE, "has_autopay", data=[None]), _with(_ONE, "has_autopay", data=[1]),
    _with(_ONE, "has_autopay", data=["false"]), _with(_ONE, "region", data=[7]), _with(_ONE, "region", data=[None]),
    _with(_ONE, "region", data=[True]), _with(_ONE, "region", data=[["west", "east"]]),
    _with(_ONE, "region", shape=[2]), _with(_ONE, "region", shape=[1, 2]), _with(_ONE, "region", data=[]),
    _with(_COLUMNS, "age", data=[53, None]),  # more than one number: decoded as one array either way
    [{"name": "input-0", "shape": [2, 3], "datatype": "BYTES", "data": [[53, "west", True], [61.5, None, False]]}],
    [{"name": "input-0", "shape": [1, 3], "datatype": "BYTES", "data": [[53, "west", "yes"]]}],
    [{"name": "input-0", "shape": [2, 3], "datatype": "BYTES", "data": [53, "west", True, 61.5, None, False]}],
    [{"name": "input-0", "shape": [1, 2], "datatype": "BYTES", "data": [[53, "west"]]}],
    [{"name": "input-0", "shape": [2, 3], "datatype": "BYTES", "data": [[53, "west", True], [61.5, None]]}],
], ids=lambda inputs: "-".join(f"{t['datatype']}{t['shape']}{t['data']}"[:40] for t in inputs))
def test_v2_json_data_decodes_as_its_arrays_would(inputs) -> None:
    """The decoder takes a V2 input's JSON data as sent when that is exactly what its array gives: the same
    columns, values and types, or the same refusal, as through numpy, for every shape and edge of the data."""
    from kserve.protocol.infer_type import InferRequest

    def request():
        return InferRequest.from_inference_request(_rest_request({"inputs": inputs}), "m")

    direct, through_arrays = _decoded(request(), SPEC), _decoded(_through_arrays(request()), SPEC)
    if isinstance(through_arrays, str):
        assert direct == through_arrays
        return
    assert list(direct) == list(through_arrays)
    for name, values in through_arrays.items():
        expected = values.tolist() if isinstance(values, np.ndarray) else values
        got = direct[name].tolist() if isinstance(direct[name], np.ndarray) else direct[name]
        assert [type(v) for v in got] == [type(v) for v in expected]
        assert pd.Series(got, dtype=object).equals(pd.Series(expected, dtype=object)), name


_EDGES = {"age": [53, 61.5, 0, -0.0, 10**400, float("nan"), float("inf"), None, True, "53", [53]],
          "region": ["west", "", None, 7, True, 1.5],
          "has_autopay": [True, False, None, 1, "true"]}


@pytest.mark.parametrize("feature", sorted(_EDGES))
def test_a_single_row_decodes_as_the_same_row_inside_a_batch(feature) -> None:
    """One row takes a shortcut (plain JSON values, one numpy call): it must give what the value-by-value checks
    give the same row beside another, types and refusals included."""
    for value in _EDGES[feature]:
        row = {**ROWS[0], feature: value}
        alone, in_batch = _decoded_v1([row]), _decoded_v1([row, ROWS[1]])
        if isinstance(in_batch, str):
            assert alone == in_batch, value
            continue
        assert list(alone) == list(in_batch) == SPEC.feature_names
        for name, values in in_batch.items():
            got, expected = list(alone[name]), list(values)[:1]
            assert [type(v) for v in got] == [type(v) for v in expected], (name, value)
            assert pd.Series(got, dtype=object).equals(pd.Series(expected, dtype=object)), (name, value)


def _decoded_v1(instances: list) -> dict | str:
    try:
        return columns_from_payload({"instances": instances}, SPEC)
    except InvalidInput as exc:
        return f"InvalidInput: {exc}"


def _bodies_of(n: int) -> dict[str, object]:
    """A body of ``n`` rows in every V1 and V2 shape the decoder takes."""
    from kserve.protocol.infer_type import InferRequest

    rows = [{"age": 20 + i, "region": "west", "has_autopay": True} for i in range(n)]
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    datatypes = {"age": "FP64", "region": "BYTES", "has_autopay": "BOOL"}
    per_column = [{"name": k, "shape": [n], "datatype": datatypes[k], "data": v} for k, v in columns.items()]
    n_by_1 = [{**t, "shape": [n, 1], "data": [[v] for v in t["data"]]} for t in per_column]
    nested = [list(row.values()) for row in rows]
    v2 = {"pd": {"inputs": per_column, **_PD}, "n-by-1": {"inputs": n_by_1},
          "row-major": {"inputs": [{"name": "x", "shape": [n, 3], "datatype": "BYTES", "data": nested}]},
          "row-major-flat": {"inputs": [{"name": "x", "shape": [n, 3], "datatype": "BYTES",
                                         "data": [v for row in nested for v in row]}]}}
    return {"records": {"instances": rows}, "columns": {"instances": [columns]},
            "list-of-records": {"instances": [rows]}, "positional": {"instances": nested},
            **{f"v2-{k}": InferRequest.from_inference_request(_rest_request(b), "m") for k, b in v2.items()}}


@pytest.mark.parametrize("shape", list(_bodies_of(1)))
def test_rows_are_counted_in_every_shape_without_decoding(shape: str) -> None:
    body = _bodies_of(5)[shape]
    assert rows_at_most(body, 5) and not rows_at_most(body, 4)
    assert len(frame_from_payload(body, SPEC)) == 5  # the count is the decoder's


def test_a_v2_body_whose_data_outgrows_its_declared_shape_counts_as_large() -> None:
    from kserve.protocol.infer_type import InferRequest

    lying = {"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "data": [1.0] * 100}]}
    assert not rows_at_most(InferRequest.from_inference_request(_rest_request(lying), "m"), 32)


@pytest.mark.parametrize("shape", [["40"], [1, "3"], [None], [[1]], "xy", {}, 5, [1, 1, 1], [7] * 10_000],
                         ids=["text", "text-width", "null", "nested", "string", "object", "number", "three-dims",
                              "ten-thousand-dims"])
def test_a_v2_shape_the_decoder_does_not_take_counts_as_large_and_never_raises(shape) -> None:
    """Where a request is scored must not fail it, nor take long: such a shape goes to the decoder, off the
    event loop, which refuses it with a 400."""
    from kserve.protocol.infer_type import InferInput, InferRequest

    request = InferRequest(model_name="m", infer_inputs=[InferInput("age", shape, "FP64", [1.0])])
    assert not rows_at_most(request, 32)


@pytest.mark.parametrize("datatype, data", [("INT64", [2 ** 63, 1]), ("INT32", [2 ** 31, 1]), ("UINT8", [-1, 1])])
def test_a_v2_value_its_datatype_cannot_hold_is_refused_naming_the_input(datatype, data) -> None:
    """numpy raises OverflowError for an integer the tensor's type cannot hold: the sender's mistake (a 400 in the
    servers, a refused pair in the monitor), never an error of the server."""
    from kserve.protocol.infer_type import InferRequest

    body = {"inputs": [{"name": "age", "shape": [2], "datatype": datatype, "data": data},
                       {"name": "income", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}]}
    request = InferRequest.from_inference_request(_rest_request(body), "m")
    with pytest.raises(InvalidInput, match="input 'age'"):
        columns_from_payload(request, NUMERIC)


def test_logged_bodies_are_read_as_v2_only_when_their_inputs_are_tensors() -> None:
    """A payload log carries a V2 request as its REST JSON: it decodes to the rows the same request sent as V1
    records gives. V1's ``inputs`` (another name for ``instances``) stays V1, and a V2 body KServe would refuse is
    refused."""
    from kserve.protocol.infer_type import InferRequest

    v2 = {"parameters": {"content_type": "pd"}, "inputs": _COLUMNS}  # the rows of ROWS, one tensor per feature
    assert isinstance(logged_request(v2), InferRequest)
    logged, as_v1_records = columns_from_payload(logged_request(v2), SPEC), columns_from_payload({"instances": ROWS},
                                                                                                 SPEC)
    assert list(logged) == list(as_v1_records)
    for name in SPEC.feature_names:
        assert list(logged[name]) == list(as_v1_records[name])
    v1 = {"inputs": ROWS}
    assert logged_request(v1) is v1
    assert columns_from_payload(logged_request(v1), SPEC)["region"] == ["west", None]
    with pytest.raises(InvalidInput, match="V2 request does not decode"):
        logged_request({"inputs": [{**_COLUMNS[0], "shape": ["two"]}]})


_ODD_VALUES = [0, 1, -1, 1.5, -0.0, 2 ** 63, -2 ** 63 - 1, 2 ** 64, 10 ** 30, 10 ** 400, 1e308, float("nan"),
               float("inf"), None, True, False, "a", "1", "", "nan", [1], [[1]], [], {"a": 1}]


def _random_v2_body(rng) -> dict:
    n = rng.choice([1, 2, 3])
    inputs = [{"name": name, "shape": rng.choice([[n], [n, 1], [n + 1], [1, n]]),
               "datatype": rng.choice(["FP64", "FP32", "FP16", "INT64", "INT32", "INT8", "UINT8", "UINT64", "BOOL",
                                       "BYTES", "XX"]),
               "data": [rng.choice(_ODD_VALUES) for _ in range(n)]} for name in ("age", "region", "has_autopay")]
    return {"inputs": inputs, **({"parameters": {"content_type": "pd"}} if rng.random() < 0.5 else {})}


def _random_v1_body(rng) -> dict:
    names = ["age", "region", "has_autopay", "other", "name", "shape", "datatype", "data"]

    def instance(depth: int = 0):
        pick = rng.random()
        if pick < 0.4:
            return {rng.choice(names): rng.choice(_ODD_VALUES) for _ in range(rng.randint(0, 4))}
        if pick < 0.6:
            return {k: [rng.choice(_ODD_VALUES) for _ in range(rng.randint(0, 3))] for k in rng.sample(names, 3)}
        if pick < 0.8:
            return [rng.choice(_ODD_VALUES) for _ in range(rng.randint(0, 4))]
        return [instance(depth + 1) for _ in range(2)] if depth < 2 else rng.choice(_ODD_VALUES)

    return {rng.choice(["instances", "inputs"]): [instance() for _ in range(rng.randint(0, 3))]}


@pytest.mark.parametrize("protocol", ["V1", "V2"])
def test_no_body_however_odd_raises_anything_but_invalid_input(protocol) -> None:
    """Seeded random bodies of every shape, datatype and odd value (huge integers, NaN, nesting, wrong shapes),
    as a client sends them or a payload log carries them: each decodes or is refused with InvalidInput (a 400),
    never another exception (a 500 in the servers, a pair that fails after it was logged in the monitor)."""
    import random

    rng = random.Random(15)
    make = _random_v1_body if protocol == "V1" else _random_v2_body
    escaped = []
    for _ in range(3000):
        body = make(rng)
        try:
            columns_from_payload(logged_request(body), SPEC)
        except InvalidInput:
            continue
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            escaped.append(f"{type(exc).__name__}: {exc} in {str(body)[:200]}")
    assert escaped == []


def test_a_logged_body_is_read_as_the_servers_read_it_when_it_carries_both_keys() -> None:
    """The servers read ``instances`` first: a body that also carries V2-looking ``inputs`` was scored as V1, so
    the monitor must store those rows, not the ``inputs`` (which could hold anything)."""
    v2_inputs = [{**_COLUMNS[0], "data": [999, 999]}, *_COLUMNS[1:]]
    body = {"instances": ROWS, "inputs": v2_inputs}
    assert logged_request(body) is body
    assert columns_from_payload(logged_request(body), SPEC)["age"].tolist() == [53.0, 61.5]


def test_an_oversized_logged_v2_body_is_refused_before_it_is_validated() -> None:
    """Validating a V2 body costs per input (pydantic, then an InferInput each): too many inputs, or an input of
    too many rows, is refused from the JSON alone, as V1's instances are counted first."""
    wide = {"inputs": [{"name": f"f{i}", "shape": [1], "datatype": "FP64", "data": [1]} for i in range(5000)]}
    with pytest.raises(InvalidInput, match="5000 inputs; the limit is"):
        logged_request(wide)
    long = {"inputs": [{"name": "age", "shape": [MAX_INSTANCES + 1], "datatype": "FP64", "data": [1]}]}
    with pytest.raises(InvalidInput, match=f"input 'age' has {MAX_INSTANCES + 1} rows"):
        logged_request(long)


def test_names_a_request_chose_are_cut_short_and_escaped_in_error_messages() -> None:
    """An unknown name of megabytes, or one holding a line break, would make a megabyte answer or forge a line of
    the log the refusal goes to: the message shows at most NAME_SHOWN characters, escaped."""
    from kserve.protocol.infer_type import InferRequest

    for forged in ("x" * 100_000, "x\nINFO monitor: all is well"):
        for request in ({"instances": [{**ROWS[0], forged: 1}]},
                        InferRequest.from_inference_request(_rest_request({"inputs": [
                            *_COLUMNS, {"name": forged, "shape": [2], "datatype": "FP64", "data": [1, 2]}]}), "m")):
            with pytest.raises(InvalidInput) as refused:
                columns_from_payload(request, SPEC)
            message = str(refused.value)
            assert "unknown feature(s)" in message and "\n" not in message and len(message) < 200
    with pytest.raises(InvalidInput) as refused:
        columns_from_payload({"instances": [{**ROWS[0], "age": "y" * 100_000}]}, SPEC)
    assert "expects a number" in str(refused.value) and len(str(refused.value)) < 200
