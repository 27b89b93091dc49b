"""Requests that arrive together are scored together, and every caller still gets exactly its own answer."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest
from kserve.errors import InvalidInput
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from driftloop import synthetic
from driftloop.serving.batching import Batching
from driftloop.serving.scoring import INLINE_MAX_ROWS, ModelFailed, ScoringWorker, score_request
from driftloop.serving.versions import Scores, ServedVersion
from driftloop.tasks import MULTICLASS, REGRESSION

from ..task_tables import task_frame, trained

POISON_AGE = -999.0  # a row the model below refuses, though it decodes fine


class _GatedModel:
    """The trained Pipeline behind a gate: the first call waits until the test has queued every other request
    (so they arrive together, deterministically), rows of age POISON_AGE make it raise, and each call's row
    count is recorded."""

    def __init__(self, pipeline) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls: list[int] = []

        def guard(frame):
            self.calls.append(len(frame))
            self.entered.set()
            self.release.wait(timeout=30)
            if (frame["age"] == POISON_AGE).any():
                raise ValueError("age out of the model's domain")
            return frame

        self.pipeline = Pipeline([("guard", FunctionTransformer(guard)), ("model", pipeline)])


def _requests(validated, n: int, frame=None) -> list[dict]:
    """n V1 requests of distinct rows, one to three rows each, in assorted body shapes."""
    frame = synthetic.generate(3 * n, seed=21) if frame is None else frame
    rows = json.loads(frame[validated.spec.feature_names].to_json(orient="records"))
    bodies = []
    for i in range(n):
        chunk = rows[3 * i: 3 * i + 1 + i % 3]
        if i % 2:  # KServe's column lists, several rows in one instance
            bodies.append({"instances": [{k: [r[k] for r in chunk] for k in chunk[0]}]})
        else:
            bodies.append({"instances": chunk})
    return bodies


async def _score_together(worker: ScoringWorker, gated: _GatedModel, version: ServedVersion, bodies: list) -> list:
    """Starts the first request, holds the model until every other request is queued, then lets all finish."""
    first = asyncio.ensure_future(worker.score(version, bodies[0]))
    await asyncio.to_thread(gated.entered.wait, 30)
    rest = [asyncio.ensure_future(worker.score(version, body)) for body in bodies[1:]]
    await asyncio.sleep(0.05)  # every request is on the worker's queue, behind the held one
    gated.release.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


@pytest.fixture
def gated_version(trained_lr, validated):
    gated = _GatedModel(trained_lr.model)
    version = ServedVersion("churn", 1, validated.spec, gated.pipeline)
    worker = ScoringWorker(Batching(max_rows=64))
    yield gated, version, worker
    gated.release.set()
    worker.shutdown()


def test_requests_scored_together_each_get_their_own_predictions(gated_version, trained_lr, validated) -> None:
    gated, version, worker = gated_version
    bodies = _requests(validated, 12)
    alone = [score_request(ServedVersion("churn", 1, validated.spec, trained_lr.model), body).predictions.tolist()
             for body in bodies]

    answers = asyncio.run(_score_together(worker, gated, version, bodies))

    assert [a.predictions.tolist() for a in answers] == alone
    assert [len(a) for a in answers] == [1 + i % 3 for i in range(12)]
    # The first request went alone; the eleven queued behind it went through the model in one call.
    assert gated.calls == [1, sum(1 + i % 3 for i in range(1, 12))]


def test_a_bad_request_in_a_batch_fails_only_its_caller(gated_version, trained_lr, validated) -> None:
    gated, version, worker = gated_version
    bodies = _requests(validated, 8)
    poisoned = json.loads(json.dumps(bodies[3]))
    poisoned["instances"][0]["age"] = [POISON_AGE] if isinstance(poisoned["instances"][0]["age"], list) \
        else POISON_AGE
    malformed = {"instances": [{"age": "fifty"}]}
    bodies = [*bodies[:3], poisoned, malformed, *bodies[4:]]
    plain = ServedVersion("churn", 1, validated.spec, trained_lr.model)

    answers = asyncio.run(_score_together(worker, gated, version, bodies))

    assert isinstance(answers[3], ModelFailed) and "ValueError" in str(answers[3])
    assert isinstance(answers[4], InvalidInput)
    for i, (body, answer) in enumerate(zip(bodies, answers)):
        if i not in (3, 4):
            assert isinstance(answer, Scores), answer
            assert answer.predictions.tolist() == score_request(plain, body).predictions.tolist()


def test_batching_off_scores_every_request_alone(trained_lr, validated) -> None:
    gated = _GatedModel(trained_lr.model)
    version = ServedVersion("churn", 1, validated.spec, gated.pipeline)
    worker = ScoringWorker()  # the default
    try:
        answers = asyncio.run(_score_together(worker, gated, version, _requests(validated, 4)))
    finally:
        gated.release.set()
        worker.shutdown()
    assert len(answers) == 4 and gated.calls == [1, 2, 3, 1]


@pytest.mark.parametrize(("max_rows", "wait_us"), [(0, 0), (8, -1)])
def test_a_nonsensical_batching_policy_is_refused(max_rows: int, wait_us: int) -> None:
    with pytest.raises(ValueError, match="batch"):
        Batching(max_rows=max_rows, wait_us=wait_us)


def test_in_a_batch_only_the_requests_that_ask_get_probabilities_and_a_regression_refuses_them() -> None:
    tickets, bills = trained(MULTICLASS, "logistic_regression"), trained(REGRESSION, "ridge")
    bodies = _requests(tickets, 8, task_frame(MULTICLASS, 24, seed=21))
    asking = {1, 2, 5}
    for i in asking:
        bodies[i]["parameters"] = {"probabilities": True}
    plain = ServedVersion("tickets", 1, tickets.spec, tickets.model)
    gated = _GatedModel(tickets.model)
    version = ServedVersion("tickets", 1, tickets.spec, gated.pipeline)
    regression = ServedVersion("bills", 1, bills.spec, bills.model)
    worker = ScoringWorker(Batching(max_rows=64))

    async def scenario() -> tuple[list, object]:
        answers = _score_together(worker, gated, version, bodies)
        refused = worker.score(regression, {**bodies[0], "parameters": {"probabilities": True}})
        return await asyncio.gather(answers, refused, return_exceptions=True)

    try:
        answers, refused = asyncio.run(scenario())
    finally:
        gated.release.set()
        worker.shutdown()
    assert gated.calls[1] == sum(1 + i % 3 for i in range(1, 8))  # seven requests in one call, three asking
    for i, (body, answer) in enumerate(zip(bodies, answers)):
        alone = score_request(plain, body)
        assert answer.predictions.tolist() == alone.predictions.tolist()
        assert set(answer.predictions.tolist()) <= set(tickets.spec.target_classes)
        if i in asking:
            np.testing.assert_allclose(answer.probabilities, alone.probabilities, rtol=0, atol=1e-12)
            assert answer.probabilities.shape == (len(answer), 4)
        else:
            assert answer.probabilities is None
    assert isinstance(refused, InvalidInput)
    assert str(refused) == "bills v1 is a regression model: a regression model has no class probabilities"


class _ThreadRecording:
    """A version's real fast-path scorer or Pipeline that notes the thread each call runs on."""

    def __init__(self, model) -> None:
        self.model, self.threads = model, []

    def predict(self, rows):
        return self._noted(self.model.predict, rows)

    def predict_proba(self, rows):
        return self._noted(self.model.predict_proba, rows)

    def _noted(self, call, rows):
        self.threads.append(threading.get_ident())
        return call(rows)


@pytest.mark.parametrize("batching", [Batching(), Batching(max_rows=64)], ids=["batching-off", "batching-on"])
def test_small_fast_path_requests_are_scored_on_the_event_loop_and_the_rest_on_the_worker(
        batching, trained_lr, validated) -> None:
    from driftloop.fastpath.agreement import compile_fast_path
    from driftloop.fastpath.scorer import OnnxScorer

    graph, record = compile_fast_path(trained_lr.model, validated.spec, {
        "holdout": trained_lr.holdout_frame, "reference_sample": trained_lr.train_frame.sample(300, random_state=0)})
    assert record.accepted, record.reason
    scorer = _ThreadRecording(OnnxScorer(graph, validated.spec))
    fast = ServedVersion("churn", 1, validated.spec, trained_lr.model, scorer)
    plain = ServedVersion("churn", 1, validated.spec, _ThreadRecording(trained_lr.model))
    n = INLINE_MAX_ROWS
    rows = json.loads(synthetic.generate(n + 1, seed=5)[validated.spec.feature_names].to_json(orient="records"))
    bodies = [{"instances": rows[:1]}, {"instances": [{k: [r[k] for r in rows[:n]] for k in rows[0]}]},
              {"instances": rows[:n + 1]}]  # 1 row, the most scored on the loop, one more
    worker = ScoringWorker(batching)

    async def score_each() -> tuple[int, list[Scores], list[Scores], Exception]:
        fast_answers = [await worker.score(fast, body) for body in bodies]
        plain_answers = [await worker.score(plain, body) for body in bodies]
        try:
            await worker.score(fast, {"instances": [{**rows[0], "age": "fifty"}]})
        except InvalidInput as exc:  # a caller's mistake on the loop is the same 400 as on the worker
            refused = exc
        return threading.get_ident(), fast_answers, plain_answers, refused

    try:
        loop_thread, fast_answers, plain_answers, refused = asyncio.run(score_each())
    finally:
        worker.shutdown()
    assert [t == loop_thread for t in scorer.threads] == [not batching.enabled] * 2 + [False]
    assert len(plain.pipeline.threads) == 3 and loop_thread not in plain.pipeline.threads  # the Pipeline: the worker
    assert "feature 'age' expects a number" in str(refused)
    for body, fast_answer, plain_answer in zip(bodies, fast_answers, plain_answers):
        expected = score_request(ServedVersion("churn", 1, validated.spec, trained_lr.model), body)
        assert fast_answer.predictions.tolist() == plain_answer.predictions.tolist() == expected.predictions.tolist()
