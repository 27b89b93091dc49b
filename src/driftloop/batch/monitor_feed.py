"""A scored table fed to the drift monitor, so batch use is watched for drift as live traffic is.

The monitor takes rows through one door: ``POST /events``, KServe's payload-log CloudEvents, on disk before
they are acknowledged (monitor/ingest.py). A scored table goes through the same door, with no second path
into the monitor to keep in step: each chunk of rows becomes a request event (the features, as KServe V1
column lists) and a response event (the predictions as the gateway answers them: a classifier's labels, a
regression's numbers) sharing one
``ce-id``, naming the version that scored them (``ce-modelversion``) and the endpoint ``batch``. From there the
monitor's windows, drift tests, reports and trigger treat them as they treat served rows.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath

import httpx
import orjson
import pandas as pd

from driftloop import storage
from driftloop.batch.score import PREDICTION_COLUMN, VERSION_COLUMN
from driftloop.batch.tables import TableReader, local_copy
from driftloop.data import DatasetSpec
from driftloop.errors import DataError, UnavailableError
from driftloop.registry import ModelRegistry
from driftloop.serving.labels import jsonable, served_classes
from driftloop.serving.payload_logger import REQUEST_TYPE, RESPONSE_TYPE, LoggedEvent

BATCH_ENDPOINT = "batch"  # the endpoint batch rows are stored under (served rows are "default" or "canary")
EVENT_ROWS = 1000  # rows per event pair: well under the monitor's body limit and its request-size limit


@dataclass(frozen=True)
class FeedSummary:
    """What was posted to the monitor."""

    model: str
    rows: int
    events: int  # request/response pairs
    versions: list[int]
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def feed_monitor(table_uri: str, model: str, registry: ModelRegistry, monitor_url: str, *,
                 token: str | None = None, event_rows: int = EVENT_ROWS, s3: storage.S3Settings | None = None,
                 timeout: float = 30.0) -> FeedSummary:
    """Posts a scored table (``driftloop score --with-features``) to the monitor at ``monitor_url``.

    Args:
        registry: Where the scoring versions' specs are (to pick the features and give each prediction as the
            gateway answers it).
        token: The monitor's events token (``DRIFTLOOP_EVENTS_TOKEN``), if it requires one.

    Raises:
        DataError: the table is not a scored table with features, or holds a prediction the version cannot have
            made (a class it does not know, a regression's prediction that is not a number).
        UnavailableError: the monitor refused an event or cannot be reached (what was acknowledged stays).
    """
    started = time.perf_counter()
    specs: dict[int, DatasetSpec] = {}
    batch = uuid.uuid4().hex[:12]
    rows = events = 0
    with local_copy(table_uri, s3) as path, httpx.Client(base_url=monitor_url, timeout=timeout) as client:
        reader = TableReader.open(path, table_uri)
        missing = [c for c in (PREDICTION_COLUMN, VERSION_COLUMN) if c not in reader.columns]
        if missing:
            raise DataError(f"{table_uri} is not a scored table (no {', '.join(missing)} column): score it with "
                            "'driftloop score' first")
        def spec_of(version: int) -> DatasetSpec:
            if version not in specs:
                specs[version] = DatasetSpec.from_json(registry.read_file(model, version, "spec.json").decode())
            return specs[version]

        # Categories are read as the text the scorer wrote ("007" stays "007"), as the gateway was sent them.
        first_version = int(next(reader.chunks([VERSION_COLUMN], 1))[VERSION_COLUMN].iloc[0])
        text = spec_of(first_version).names_of("categorical")
        for chunk in reader.chunks(reader.columns, event_rows, text=text):
            for version, rows_of_version in chunk.groupby(VERSION_COLUMN, sort=True):
                version = int(version)
                request, response = _event_bodies(rows_of_version, spec_of(version), model, version, table_uri)
                event_id = f"batch-{batch}-{events:06d}"
                for event_type, body in ((REQUEST_TYPE, request), (RESPONSE_TYPE, response)):
                    _post(client, LoggedEvent(event_id, event_type, model, BATCH_ENDPOINT, body, version), token,
                          table_uri)
                events += 1
                rows += len(rows_of_version)
    return FeedSummary(model, rows, events, sorted(specs), time.perf_counter() - started)


def _event_bodies(rows: pd.DataFrame, spec: DatasetSpec, model: str, version: int, uri: str) -> tuple[bytes, bytes]:
    """The request (features as KServe's column lists) and the response (the predictions) of one event pair."""
    missing = [name for name in spec.feature_names if name not in rows.columns]
    if missing:
        raise DataError(f"{uri} holds no feature columns {', '.join(missing)}: score it with --with-features so "
                        "the monitor can compare them with the training data")
    features = rows[spec.feature_names].astype(object)
    columns = {name: features[name].where(features[name].notna(), None).tolist() for name in spec.feature_names}
    request = orjson.dumps({"instances": [columns]}, option=orjson.OPT_SERIALIZE_NUMPY)
    predictions = _predictions(rows[PREDICTION_COLUMN], spec, model, version, uri)
    response = orjson.dumps({"model_name": model, "predictions": predictions})
    return request, response


def _predictions(column: pd.Series, spec: DatasetSpec, model: str, version: int, uri: str) -> list:
    """The scored table's predictions as the gateway answers them. A table read back from CSV may spell a label
    in another type (``1`` for ``True``, ``7`` for ``"7"``): each is matched by its text to the version's class."""
    if not spec.is_classification:
        numbers = pd.to_numeric(column, errors="coerce")
        if numbers.isna().any():
            bad = column[numbers.isna()].iloc[0]
            raise DataError(f"{uri}: prediction {bad!r} of {model} v{version}, a regression model, is not a number")
        return numbers.astype(float).tolist()
    classes = jsonable(served_classes(spec))
    label_of = {str(c): c for c in classes}
    try:
        return [label_of[str(label)] for label in column.tolist()]
    except KeyError as exc:
        raise DataError(f"{uri}: prediction {exc.args[0]!r} is not a class of {model} v{version} "
                        f"({', '.join(label_of)})") from None


def _post(client: httpx.Client, event: LoggedEvent, token: str | None, uri: str) -> None:
    from driftloop.http_guard import bearer

    source = f"driftloop-batch/{PurePosixPath(uri).name}"
    try:
        headers = event.headers(namespace="driftloop-batch", source=source) | bearer(token)
        answer = client.post("/events", content=event.body, headers=headers)
    except httpx.HTTPError as exc:
        raise UnavailableError(f"cannot reach the monitor at {client.base_url}: {type(exc).__name__}") from None
    if answer.status_code >= 300:
        try:
            reason = answer.json().get("error", answer.text)
        except ValueError:
            reason = answer.text
        raise UnavailableError(f"the monitor refused event {event.event_id} ({answer.status_code}): {reason}")
