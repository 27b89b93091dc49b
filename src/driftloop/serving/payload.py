"""Turning KServe V1 and V2 request payloads into a typed feature DataFrame, or a clear 400.

V1 ``{"instances": [...]}`` takes dicts (feature name → value; KServe turns these into a DataFrame)
or lists in the spec's feature order. V2 (Open Inference Protocol) takes ``parameters.content_type: pd``
with one input per feature, or a single 2-D numeric tensor in feature order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from driftloop.data import DatasetSpec

MAX_INSTANCES = 10_000


def frame_from_payload(payload: dict | InferRequest, spec: DatasetSpec) -> pd.DataFrame:
    """The request's rows as a DataFrame with the spec's features, typed; raises InvalidInput."""
    if isinstance(payload, InferRequest):
        frame = _frame_from_v2(payload, spec)
    elif isinstance(payload, dict):
        frame = _frame_from_v1(payload, spec)
    else:
        raise InvalidInput("request body must be a JSON object")
    if frame.empty:
        raise InvalidInput("empty batch: send at least one instance")
    if len(frame) > MAX_INSTANCES:
        raise InvalidInput(f"batch of {len(frame)} instances is larger than the limit of {MAX_INSTANCES}")
    return _typed(frame, spec)


def _frame_from_v1(payload: dict, spec: DatasetSpec) -> pd.DataFrame:
    key = "instances" if "instances" in payload else "inputs" if "inputs" in payload else None
    if key is None:
        raise InvalidInput('V1 requests need "instances": a list of feature dicts or feature lists')
    instances = payload[key]
    if not isinstance(instances, list):
        raise InvalidInput(f'"{key}" must be a list')
    if not instances:
        raise InvalidInput("empty batch: send at least one instance")
    if all(isinstance(row, dict) for row in instances):
        return pd.DataFrame.from_records(instances)
    if all(isinstance(row, list) for row in instances):
        names = spec.feature_names
        for i, row in enumerate(instances):
            if len(row) != len(names):
                raise InvalidInput(f"instance {i} has {len(row)} values; the model takes {len(names)}: {', '.join(names)}")
        return pd.DataFrame(instances, columns=names)
    raise InvalidInput("each instance must be an object (feature → value) or a list in feature order, not mixed")


def _frame_from_v2(payload: InferRequest, spec: DatasetSpec) -> pd.DataFrame:
    content_type = (payload.parameters or {}).get("content_type")
    if content_type == "pd" or len(payload.inputs) > 1:
        try:
            return payload.as_dataframe()
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"cannot build a table from the inputs: {exc}") from None
    if not payload.inputs:
        raise InvalidInput("V2 request has no inputs")
    tensor = payload.inputs[0]
    try:
        array = tensor.as_numpy()
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"input '{tensor.name}': {exc}") from None
    if array.ndim != 2 or array.shape[1] != len(spec.features):
        raise InvalidInput(
            f"input '{tensor.name}' has shape {list(array.shape)}; expected [n, {len(spec.features)}] in feature "
            f"order, or one input per feature with parameters.content_type \"pd\""
        )
    return pd.DataFrame(array, columns=spec.feature_names)


def _typed(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    missing = [name for name in spec.feature_names if name not in frame.columns]
    if missing:
        raise InvalidInput(f"missing feature(s): {', '.join(missing)}")
    unknown = [str(c) for c in frame.columns if c not in spec.feature_names]
    if unknown:
        raise InvalidInput(f"unknown feature(s): {', '.join(unknown[:10])}")
    out = {}
    for feature in spec.features:
        column = frame[feature.name]
        if feature.kind == "numeric":
            out[feature.name] = [_number(v, feature.name) for v in column]
        elif feature.kind == "boolean":
            out[feature.name] = [_boolean(v, feature.name) for v in column]
        else:
            out[feature.name] = [_category(v, feature.name) for v in column]
    typed = pd.DataFrame(out, columns=spec.feature_names)
    for feature in spec.features:
        if feature.kind == "numeric":
            typed[feature.name] = typed[feature.name].astype(float)
    return typed


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: Any, name: str) -> float:
    if _is_null(value):
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInput(f"feature '{name}' expects a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise InvalidInput(f"feature '{name}' has a non-finite value ({value}); send null for a missing value")
    return float(value)


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
