"""What a request asks to be answered, and the KServe V1/V2 response that answers it.

Predictions are always answered: a classifier's class labels, a regression's numbers. Class probabilities are
answered on request:

- V1: ``"parameters": {"probabilities": true}`` in the body (KServe's V1 ignores keys it does not know); the
  response adds ``"probabilities"`` ([[p per class], ...]) and ``"classes"`` (their order);
- V2: ``"parameters": {"probabilities": true}``, or a requested output named ``probabilities``; the response adds
  an FP64 output ``probabilities`` of shape [n, k] whose ``parameters.classes`` is the JSON list of the classes.
  A request that names its outputs gets those alone (KServe's rule); the predictions are ``output-0``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.utils import get_predict_response

from driftloop.serving.labels import jsonable
from driftloop.serving.versions import Scores, ServedVersion

PROBABILITIES = "probabilities"  # the request parameter, the V1 key and the V2 output
CLASSES = "classes"  # the V1 key and the V2 output parameter naming the probabilities' columns


def wants_probabilities(payload: dict | InferRequest | Any) -> bool:
    """Whether the request asks for class probabilities; raises InvalidInput when its parameter is not a boolean."""
    if isinstance(payload, InferRequest):
        parameters = payload.parameters or {}
        named = any(output.name == PROBABILITIES for output in payload.request_outputs or ())
    elif isinstance(payload, dict):
        parameters, named = payload.get("parameters") or {}, False
    else:
        return False
    if not isinstance(parameters, dict):
        raise InvalidInput('"parameters" must be an object')
    value = parameters.get(PROBABILITIES, False)
    if not isinstance(value, bool):
        raise InvalidInput(f'parameters.{PROBABILITIES} must be true or false, got {json.dumps(value)[:40]}')
    return value or named


def predict_response(payload: dict | InferRequest, scores: Scores, version: ServedVersion,
                     model_name: str) -> dict | InferResponse:
    """The V1 or V2 response carrying ``scores`` (its probabilities, when it has them, as this module says)."""
    response = get_predict_response(payload, scores.predictions, model_name)
    if isinstance(response, InferResponse):
        response.model_version = str(version.version)
    if scores.probabilities is None:
        return response
    classes = jsonable(version.classes)
    if isinstance(response, dict):
        response[PROBABILITIES] = scores.probabilities.tolist()
        response[CLASSES] = classes
        return response
    output = InferOutput(PROBABILITIES, list(scores.probabilities.shape), "FP64",
                         parameters={CLASSES: json.dumps(classes)})
    output.set_data_from_numpy(np.asarray(scores.probabilities, dtype=np.float64),
                               binary_data=payload.use_binary_outputs)
    response.outputs.append(output)
    return response


def logged_response(response: dict | InferResponse) -> dict:
    """The response as the payload log sends it: JSON, with every output and the predictions first (the monitor
    reads a V2 response's first output), whatever outputs the caller asked for or in whichever encoding."""
    if not isinstance(response, InferResponse):
        return response
    complete = InferResponse(response.id, response.model_name, response.outputs, use_binary_outputs=False,
                             model_version=response.model_version)
    body, _ = complete.to_rest()
    return body
