"""Turning KServe V1 and V2 request payloads into a typed feature DataFrame, or a clear 400.

V1 ``{"instances": [...]}`` takes records (feature name → value), KServe's column lists (feature name → list
of values, as KServe's sklearn runtime requires), lists of records, or lists in the spec's feature order. V2 (Open Inference Protocol) takes one input per feature (with ``parameters.content_type: pd``
or without, shape ``[n]`` or ``[n, 1]``), or a single row-major ``[n, features]`` tensor in feature order.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from pydantic import ValidationError

from driftloop.data import DatasetSpec

MAX_INSTANCES = 10_000
MAX_WIDTH = 1_024  # features in one V2 row a request may carry and still count as small (rows_at_most)
NAME_SHOWN = 60  # characters of a request's feature or input name an error message shows


def frame_from_payload(payload: dict | InferRequest, spec: DatasetSpec) -> pd.DataFrame:
    """The request's rows as a DataFrame with the spec's features, typed; raises InvalidInput."""
    return pd.DataFrame(columns_from_payload(payload, spec), columns=spec.feature_names)


def columns_from_payload(payload: dict | InferRequest, spec: DatasetSpec) -> dict[str, Any]:
    """The request's rows as typed columns, feature name → values (what a DataFrame would be built from; the
    fast scoring path takes them as they are); raises InvalidInput."""
    if isinstance(payload, InferRequest):
        columns, n_rows = _columns_from_v2(payload, spec)
    elif isinstance(payload, dict):
        columns, n_rows = _columns_from_v1(payload, spec)
    else:
        raise InvalidInput("request body must be a JSON object")
    return _typed(columns, n_rows, spec)


def logged_request(body: Any) -> Any:
    """A request body as a payload log carries it, in the form :func:`columns_from_payload` takes.

    KServe's agent logs the JSON a client sent, and driftloop's gateway logs a V2 request as its REST JSON: a V2
    (Open Inference Protocol) body, whose ``inputs`` are tensors (each with a name, shape, datatype and data),
    becomes the InferRequest KServe's server would have made of it. Anything else is returned as it is: V1
    ``instances`` (which the servers read first, so a body carrying both is V1, as it was scored), or ``inputs`` as
    V1's other name for them.

    Raises:
        InvalidInput: a V2 body with more inputs or rows than a request may have (refused before it is validated,
            which costs per input), or one KServe's own validation refuses.
    """
    inputs = body.get("inputs") if isinstance(body, dict) and "instances" not in body else None
    if not (isinstance(inputs, list) and inputs
            and all(isinstance(t, dict) and _V2_TENSOR_KEYS.issubset(t) for t in inputs)):
        return body
    if len(inputs) > MAX_WIDTH:
        raise InvalidInput(f"V2 request has {len(inputs)} inputs; the limit is {MAX_WIDTH}")
    for tensor in inputs:
        shape = tensor["shape"]
        if isinstance(shape, list) and shape and type(shape[0]) is int and shape[0] > MAX_INSTANCES:
            raise InvalidInput(f"input {_shown(tensor['name'], quoted=True)} has {shape[0]} rows; the limit is "
                               f"{MAX_INSTANCES}")
    try:
        return InferRequest.from_inference_request(InferenceRequest(**body), "")
    except (ValidationError, ValueError, TypeError) as exc:
        problem = " ".join(str(exc).split()).split(" [type=")[0]  # pydantic's words, without the value it quotes
        raise InvalidInput(f"V2 request does not decode: {problem[:300]}") from None


def _value_shown(value: Any) -> str:
    """A value a request sent, as an error message shows it: its repr, cut short (as :func:`_shown` cuts a
    name)."""
    text = repr(value[:NAME_SHOWN + 1] if isinstance(value, str) else value)
    return text if len(text) <= NAME_SHOWN else text[:NAME_SHOWN] + "…"


def _shown(name: Any, quoted: bool = False) -> str:
    """A name a request chose, as an error message shows it (quoted when ``quoted``): as it is when short and
    printable, else as a repr cut short (a name may be megabytes, or hold a line break that would forge a line of
    the log the message goes to)."""
    text = str(name)
    if len(text) <= NAME_SHOWN and text.isprintable():
        return f"'{text}'" if quoted else text
    return repr(text[:NAME_SHOWN] + "…")


_V2_TENSOR_KEYS = frozenset(("name", "shape", "datatype", "data"))


def rows_at_most(payload: Any, limit: int) -> bool:
    """Whether the request holds at most ``limit`` rows (and, in V2, values for at most ``limit`` rows of
    :data:`MAX_WIDTH` features), counted without decoding a value: what decides where a request is scored. A
    body the decoder will refuse at once (not an object, no instances) counts as small."""
    if isinstance(payload, InferRequest):
        return all(_tensor_rows_at_most(tensor, limit) for tensor in payload.inputs or ())
    if not isinstance(payload, dict):
        return True
    instances = payload.get("instances", payload.get("inputs"))
    if not isinstance(instances, list):
        return True
    if len(instances) > limit:
        return False
    rows = 0
    for instance in instances:
        if isinstance(instance, dict):  # a record, or KServe's column lists
            rows += max((len(v) for v in instance.values() if isinstance(v, list)), default=1)
        elif isinstance(instance, list) and instance and isinstance(instance[0], dict):  # a list of records
            rows += len(instance)
        else:  # values in feature order
            rows += 1
        if rows > limit:
            return False
    return True


def _tensor_rows_at_most(tensor: InferInput, limit: int) -> bool:
    """A V2 input's declared shape is one the decoder takes (``[n]``, ``[n, 1]`` or ``[n, features]``, integers)
    with at most ``limit`` rows, and its data holds no more values than that shape. Any other shape counts as
    large: the decoder refuses it, off the event loop."""
    shape = tensor.shape
    if not (isinstance(shape, (list, tuple)) and 1 <= len(shape) <= 2 and all(type(size) is int for size in shape)):
        return False
    rows, width = shape[0], (shape[1] if len(shape) == 2 else 1)
    if not (0 <= rows <= limit and 0 <= width <= MAX_WIDTH):
        return False
    return not isinstance(tensor.data, list) or len(tensor.data) <= limit * max(width, 1)


def _check_size(n_rows: int) -> None:
    if n_rows == 0:
        raise InvalidInput("empty batch: send at least one instance")
    if n_rows > MAX_INSTANCES:
        raise InvalidInput(f"batch of {n_rows} rows is larger than the limit of {MAX_INSTANCES}")


def _columns_from_v1(payload: dict, spec: DatasetSpec) -> tuple[dict[str, list], int]:
    """Column lists from V1 instances, in every shape KServe's runtimes take.

    An instance is a record (``{"age": 53, …}``), KServe's column lists (``{"age": [53, 61], …}``, one or more
    rows — what KServe's sklearn runtime requires for mixed types), a list of records, or a list of values in
    the spec's feature order. The row count and every key are checked before any column is built, so a huge
    or malformed body is refused cheaply.
    """
    key = "instances" if "instances" in payload else "inputs" if "inputs" in payload else None
    if key is None:
        raise InvalidInput('V1 requests need "instances": a list of feature dicts or feature lists')
    instances = payload[key]
    if not isinstance(instances, list):
        raise InvalidInput(f'"{key}" must be a list')
    _check_size(len(instances))  # at least one row per instance
    names = spec.feature_names
    known = set(names)
    blocks: list[tuple[str, Any, int]] = []  # (shape, instance, rows)
    n_rows = 0
    seen: set[str] = set()  # a feature no row names at all is a client's mistake, not a missing value
    for i, instance in enumerate(instances):
        if isinstance(instance, dict):
            _check_keys(instance, known, i)
            seen.update(instance)
            lengths = {len(v) for v in instance.values() if isinstance(v, list)}
            if not lengths:
                blocks.append(("record", instance, 1))
                n_rows += 1
            elif len(lengths) == 1 and all(isinstance(v, list) for v in instance.values()):
                rows = lengths.pop()
                blocks.append(("columns", instance, rows))
                n_rows += rows
            else:
                raise InvalidInput(f"instance {i}: give every feature one value, or every feature a list of the same "
                                   "length (KServe's column format), not a mix")
        elif isinstance(instance, list) and instance and all(isinstance(r, dict) for r in instance):
            for record in instance:
                _check_keys(record, known, i)
                seen.update(record)
            blocks.append(("records", instance, len(instance)))
            n_rows += len(instance)
        elif isinstance(instance, list):
            if len(instance) != len(names):
                raise InvalidInput(f"instance {i} has {len(instance)} values; the model takes {len(names)}: "
                                   f"{', '.join(names)}")
            blocks.append(("values", instance, 1))
            n_rows += 1
            seen.update(known)
        else:
            raise InvalidInput(f"instance {i} must be an object (feature → value or feature → list of values) or "
                               "a list of values in feature order")
        if n_rows > MAX_INSTANCES:
            break
    _check_size(n_rows)
    missing = [name for name in names if name not in seen]
    if missing:
        raise InvalidInput(f"missing feature(s): {', '.join(missing)}")
    columns: dict[str, list] = {name: [] for name in names}
    for shape, instance, rows in blocks:
        for j, name in enumerate(names):
            column = columns[name]
            if shape == "record":
                column.append(instance.get(name))  # absent is missing, as pandas would make it
            elif shape == "columns":
                column.extend(instance[name] if name in instance else [None] * rows)
            elif shape == "records":
                column.extend(record.get(name) for record in instance)
            else:
                column.append(instance[j])
    return columns, n_rows


def _check_keys(record: dict, known: set[str], i: int) -> None:
    unknown = [str(k) for k in record if k not in known]
    if unknown:
        raise InvalidInput(f"instance {i}: unknown feature(s): {', '.join(map(_shown, sorted(unknown)[:10]))}")


def _columns_from_v2(payload: InferRequest, spec: DatasetSpec) -> tuple[dict[str, Any], int]:
    """Columns from V2 inputs: one input per feature (``content_type: pd``, or simply named by feature; shape
    ``[n]`` or ``[n, 1]``), or one row-major ``[n, features]`` tensor in the spec's order (``BYTES`` when the
    features mix types). Each tensor is decoded as one array, never through a DataFrame, so a batch costs no more
    per row than V1. Sizes are checked before anything is decoded."""
    if not payload.inputs:
        raise InvalidInput("V2 request has no inputs")
    for tensor in payload.inputs:
        rows = int(tensor.shape[0]) if tensor.shape else 0
        if rows > MAX_INSTANCES:
            raise InvalidInput(f"input {_shown(tensor.name, quoted=True)} has {rows} rows; the limit is "
                               f"{MAX_INSTANCES}")
    names = spec.feature_names
    content_type = (payload.parameters or {}).get("content_type")
    if content_type == "pd" or len(payload.inputs) > 1 or payload.inputs[0].name in names:
        given = [t.name for t in payload.inputs]
        unknown = sorted(set(given).difference(names))
        if unknown:
            raise InvalidInput(f"unknown feature(s): {', '.join(map(_shown, unknown[:10]))}")
        if len(set(given)) < len(given):  # only one of them would be scored, silently: which one is anyone's guess
            repeated = sorted(name for name, count in Counter(given).items() if count > 1)
            raise InvalidInput(f"input(s) given more than once: {', '.join(map(_shown, repeated[:10]))}")
        columns = {tensor.name: _tensor_column(tensor) for tensor in payload.inputs}
        lengths = {len(column) for column in columns.values()}
        if len(lengths) > 1:
            raise InvalidInput(f"inputs hold different numbers of rows ({', '.join(map(str, sorted(lengths)))}); "
                               "every feature needs one value per row")
        n_rows = lengths.pop()
        _check_size(n_rows)
        return columns, n_rows
    tensor = payload.inputs[0]
    rows = _json_rows(tensor, len(names))
    if rows is not None:
        _check_size(len(rows))
        return {name: list(column) for name, column in zip(names, zip(*rows), strict=True)}, len(rows)
    array = _tensor_array(tensor)
    if array.ndim != 2 or array.shape[1] != len(names):
        raise InvalidInput(
            f"input {_shown(tensor.name, quoted=True)} has shape {list(array.shape)}; expected [n, {len(names)}] in "
            "feature order, or one input per feature (named by it)"
        )
    _check_size(array.shape[0])
    return {name: _text(array[:, j]) for j, name in enumerate(names)}, array.shape[0]


def _tensor_array(tensor) -> np.ndarray:
    try:
        return tensor.as_numpy()
    except (ValueError, TypeError, OverflowError) as exc:  # OverflowError: an integer its datatype cannot hold
        raise InvalidInput(f"input {_shown(tensor.name, quoted=True)}: {exc}") from None


def _tensor_column(tensor) -> np.ndarray | list:
    """One feature's values from its input, shape ``[n]`` or ``[n, 1]``."""
    values = _json_column(tensor)
    if values is not None:
        return values
    array = _tensor_array(tensor)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise InvalidInput(f"input {_shown(tensor.name, quoted=True)} has shape {list(array.shape)}; a feature's "
                           "input is [n] or [n, 1]")
    return _text(array)


# JSON scalars, and the element types of a tensor's JSON data a column can take as they are: decoding them through
# an array gives the same values (text and mixed BYTES stay Python objects; BOOL only from true/false, as numpy would
# turn null or 1 into a boolean; FP64 from numbers or null, one row, as more rows are checked as one array).
_SCALARS = frozenset((str, int, float, bool, type(None)))
_AS_SENT = {"BYTES": _SCALARS, "BOOL": frozenset((bool,))}
_ONE_NUMBER = frozenset((int, float, type(None)))


def _json_column(tensor) -> list | None:
    """A feature's values straight from its input's JSON data, without an array per input (the cost of a single
    V2 row), when that gives exactly what decoding the array gives; None otherwise."""
    data = tensor.data
    if not isinstance(data, list) or not data:
        return None
    n = len(data)
    # Which values may be taken as sent is known before any is looked at: a batch of numbers goes straight to
    # its array, without a pass over its values first.
    allowed = _AS_SENT.get(tensor.datatype) or (_ONE_NUMBER if n == 1 and tensor.datatype == "FP64" else None)
    if allowed is None or list(tensor.shape) not in ([n], [n, 1]):
        return None
    if allowed.issuperset(map(type, data)):  # type(), not isinstance(): True is not a number here
        return data
    if all(type(v) is list and len(v) == 1 and type(v[0]) in allowed for v in data):
        return [v[0] for v in data]
    return None


def _json_rows(tensor, width: int) -> list | None:
    """The rows of a row-major BYTES input straight from its JSON data (each value as sent, as the object array
    decoding it holds them), when its shape is ``[n, width]`` and so is its data; None otherwise."""
    data, shape = tensor.data, tensor.shape
    if tensor.datatype != "BYTES" or not isinstance(data, list) or not data or list(shape) != [len(data), width]:
        return None
    if not all(type(row) is list and len(row) == width and _SCALARS.issuperset(map(type, row)) for row in data):
        return None
    return data


def _text(array: np.ndarray) -> np.ndarray:
    """BYTES sent in binary form arrive as bytes; a category is text (KServe's ``as_dataframe`` decodes them too)."""
    if array.dtype == object and any(isinstance(v, bytes) for v in array):
        return np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in array], dtype=object)
    return array


def _typed(columns: dict[str, list], n_rows: int, spec: DatasetSpec) -> dict[str, Any]:
    names = spec.feature_names
    missing = [name for name in names if name not in columns]
    if missing:
        raise InvalidInput(f"missing feature(s): {', '.join(missing)}")
    known = set(names)
    unknown = [str(c) for c in columns if c not in known]
    if unknown:
        raise InvalidInput(f"unknown feature(s): {', '.join(map(_shown, sorted(unknown)[:10]))}")
    if n_rows == 1:
        one = _one_row(columns, spec)
        if one is not None:
            return one
    convert = {"numeric": _number, "boolean": _boolean, "categorical": _category}
    typed = {}
    for feature in spec.features:
        values = columns[feature.name]
        if feature.kind == "numeric" and isinstance(values, np.ndarray) and values.dtype.kind in "fiu" and n_rows > 1:
            typed[feature.name] = _numbers(values, feature.name)  # a V2 tensor: checked as one array
            continue
        if isinstance(values, np.ndarray):
            values = values.tolist()  # numpy scalars become Python's, as JSON gives them in V1
        plain = _plain(values, feature.kind)
        if plain is not None:
            typed[feature.name] = plain
            continue
        to_value = convert[feature.kind]
        values = [to_value(v, feature.name) for v in values]
        typed[feature.name] = np.asarray(values, dtype=np.float64) if feature.kind == "numeric" else values
    return typed


_PLAIN = {"numeric": frozenset((int, float)), "boolean": frozenset((bool,)), "categorical": frozenset((str,))}
_NUMPY_FROM_ROWS = 8  # below this, numpy's per-call cost exceeds checking a few numbers one by one


def _plain(values: list, kind: str) -> Any:
    """The column as the value-by-value checks would give it when every value is already of its kind's plain
    JSON type (no nulls, booleans or other types among numbers, finite): the common case, in one step. None
    otherwise, and the checks below decide (and name the bad value)."""
    if kind == "numeric" and len(values) < _NUMPY_FROM_ROWS:
        return None
    if not _PLAIN[kind].issuperset(map(type, values)):  # type(), not isinstance(): True is not a number here
        return None
    if kind != "numeric":
        return values
    try:
        numbers = np.asarray(values, dtype=np.float64)
    except OverflowError:
        return None
    return numbers if np.isfinite(numbers).all() else None


def _one_row(columns: dict[str, Any], spec: DatasetSpec) -> dict[str, Any] | None:
    """A single row of plain JSON values (finite numbers, text, true/false) typed as the value-by-value checks
    would type it, its numbers converted in one numpy call: what most requests and every KServe agent event
    carry. None otherwise, and the checks decide (and name the bad value)."""
    typed: dict[str, Any] = {}
    numeric: list[str] = []
    numbers: list[float] = []
    try:
        for feature in spec.features:
            values = columns[feature.name]
            if type(values) is not list or type(values[0]) not in _PLAIN[feature.kind]:
                return None
            if feature.kind == "numeric":
                if not math.isfinite(values[0]):
                    return None
                numeric.append(feature.name)
                numbers.append(values[0])
                typed[feature.name] = None  # its place in the spec's order, filled below
            else:
                typed[feature.name] = values
        array = np.array(numbers, dtype=np.float64)
    except OverflowError:  # an integer no double holds
        return None
    for i, name in enumerate(numeric):
        typed[name] = array[i:i + 1]
    return typed


def _numbers(values: np.ndarray, name: str) -> np.ndarray:
    """A numeric tensor as float64; NaN (JSON null) is a missing value, infinity is refused as in V1."""
    numbers = values.astype(np.float64)
    if np.isinf(numbers).any():
        raise InvalidInput(f"feature '{name}' has a non-finite value ({numbers[np.isinf(numbers)][0]}); send null "
                           "for a missing value")
    return numbers


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: Any, name: str) -> float:
    if _is_null(value):
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInput(f"feature '{name}' expects a number, got {_value_shown(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidInput(f"feature '{name}' is out of range ({str(value)[:20]}…)") from None
    if not math.isfinite(number):
        raise InvalidInput(f"feature '{name}' has a non-finite value ({value}); send null for a missing value")
    return number


def _boolean(value: Any, name: str):
    if _is_null(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InvalidInput(f"feature '{name}' expects true or false, got {_value_shown(value)}")


def _category(value: Any, name: str):
    if _is_null(value):
        return None
    if isinstance(value, (str, int, np.integer)) and not isinstance(value, bool):
        return str(value)
    raise InvalidInput(f"feature '{name}' expects a category (text), got {_value_shown(value)}")
