"""Turning KServe V1 and V2 request payloads into a typed feature DataFrame, or a clear 400.

V1 ``{"instances": [...]}`` takes records (feature name → value), KServe's column lists (feature name → list
of values, as KServe's sklearn runtime requires), lists of records, or lists in the spec's feature order. V2 (Open Inference Protocol) takes one input per feature (with ``parameters.content_type: pd``
or without), or a single row-major 2-D numeric tensor in feature order.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from driftloop.data import DatasetSpec

MAX_INSTANCES = 10_000


def frame_from_payload(payload: dict | InferRequest, spec: DatasetSpec) -> pd.DataFrame:
    """The request's rows as a DataFrame with the spec's features, typed; raises InvalidInput."""
    return pd.DataFrame(columns_from_payload(payload, spec), columns=spec.feature_names)


def columns_from_payload(payload: dict | InferRequest, spec: DatasetSpec) -> dict[str, Any]:
    """The request's rows as typed columns, feature name → values (what a DataFrame would be built from; the
    fast scoring path takes them as they are); raises InvalidInput."""
    if isinstance(payload, InferRequest):
        frame = _frame_from_v2(payload, spec)
        _check_size(len(frame))
        columns, n_rows = frame.to_dict(orient="list"), len(frame)
    elif isinstance(payload, dict):
        columns, n_rows = _columns_from_v1(payload, spec)
    else:
        raise InvalidInput("request body must be a JSON object")
    return _typed(columns, n_rows, spec)


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
        raise InvalidInput(f"instance {i}: unknown feature(s): {', '.join(sorted(unknown)[:10])}")


def _frame_from_v2(payload: InferRequest, spec: DatasetSpec) -> pd.DataFrame:
    """V2 inputs as a table: one input per feature (``content_type: pd``, or simply named by feature), or one
    row-major ``[n, features]`` tensor in the spec's order. Sizes are checked before anything is decoded."""
    if not payload.inputs:
        raise InvalidInput("V2 request has no inputs")
    for tensor in payload.inputs:
        rows = int(tensor.shape[0]) if tensor.shape else 0
        if rows > MAX_INSTANCES:
            raise InvalidInput(f"input '{tensor.name}' has {rows} rows; the limit is {MAX_INSTANCES}")
    content_type = (payload.parameters or {}).get("content_type")
    by_name = len(payload.inputs) > 1 or payload.inputs[0].name in spec.feature_names
    if content_type == "pd" or by_name:
        unknown = sorted(t.name for t in payload.inputs if t.name not in spec.feature_names)
        if unknown:
            raise InvalidInput(f"unknown feature(s): {', '.join(unknown[:10])}")
        repeated = sorted(name for name, count in Counter(t.name for t in payload.inputs).items() if count > 1)
        if repeated:  # a table keeps one of them, silently: which value would be scored is anyone's guess
            raise InvalidInput(f"input(s) given more than once: {', '.join(repeated[:10])}")
        try:
            return payload.as_dataframe()
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"cannot build a table from the inputs: {exc}") from None
    tensor = payload.inputs[0]
    try:
        array = tensor.as_numpy()
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"input '{tensor.name}': {exc}") from None
    if array.ndim != 2 or array.shape[1] != len(spec.features):
        raise InvalidInput(
            f"input '{tensor.name}' has shape {list(array.shape)}; expected [n, {len(spec.features)}] in feature "
            f"order, or one input per feature (named by it)"
        )
    return pd.DataFrame(array, columns=spec.feature_names)


def _typed(columns: dict[str, list], n_rows: int, spec: DatasetSpec) -> dict[str, Any]:
    missing = [name for name in spec.feature_names if name not in columns]
    if missing:
        raise InvalidInput(f"missing feature(s): {', '.join(missing)}")
    unknown = [str(c) for c in columns if c not in spec.feature_names]
    if unknown:
        raise InvalidInput(f"unknown feature(s): {', '.join(sorted(unknown)[:10])}")
    convert = {"numeric": _number, "boolean": _boolean, "categorical": _category}
    typed = {}
    for feature in spec.features:
        to_value = convert[feature.kind]
        values = [to_value(v, feature.name) for v in columns[feature.name]]
        typed[feature.name] = np.asarray(values, dtype=np.float64) if feature.kind == "numeric" else values
    return typed


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: Any, name: str) -> float:
    if _is_null(value):
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInput(f"feature '{name}' expects a number, got {value!r}")
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
    raise InvalidInput(f"feature '{name}' expects true or false, got {value!r}")


def _category(value: Any, name: str):
    if _is_null(value):
        return None
    if isinstance(value, (str, int, np.integer)) and not isinstance(value, bool):
        return str(value)
    raise InvalidInput(f"feature '{name}' expects a category (text), got {value!r}")
