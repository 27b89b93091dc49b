"""The CT pipeline's steps as plain functions: one per KFP component.

Each takes plain values and file paths and returns a small result object, so unit tests reach the
logic without KFP and the component bodies stay a few lines long.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import driftloop
from driftloop import drift_defaults
from driftloop.ct_params import default_of
from driftloop.data import LIVE, SOURCE_COLUMN, DatasetSpec, infer_spec, load_table
from driftloop.errors import DataValidationError, DriftloopError, VersionExistsError
from driftloop.evaluation import (
    Evaluation,
    GateDecision,
    GateThresholds,
    decide_gate,
    evaluate_model,
    non_finite_metrics,
)
from driftloop.model_dir import (
    FAST_PATH_KEY,
    ONNX_FILENAME,
    SKLEARN_FORMAT,
    library_versions,
    model_format_of,
)
from driftloop.profile import ReferenceProfile, build_profile
from driftloop.registry import PRODUCTION, ModelVersion, open_registry
from driftloop.registry.base import utc_now
from driftloop.reports import (
    EvaluationPage,
    RunFacts,
    ValidationPage,
    evaluation_report_html,
    model_card,
    validation_report_html,
)
from driftloop.serving.labels import served_classes
from driftloop.tasks import INFER, gate_metric_for
from driftloop.validation import Check, ValidationReport, recent_rows, validate_table

REFERENCE_SAMPLE_ROWS = 5000


@dataclass
class ValidateResult:
    spec: DatasetSpec
    data_sha256: str
    n_rows: int
    report: ValidationReport
    reference_version: int | None
    problem: str = ""  # why validation failed (only when asked not to raise)


def load_and_validate(
    data_uri: str,
    target: str,
    registry_uri: str,
    model_name: str,
    dataset_path: str,
    report_path: str,
    spec_json: str = "",
    id_column: str = "",
    timestamp_column: str = "",
    recent_uri: str = "",
    recent_path: str = "",
    raise_on_failure: bool = True,
    task: str = INFER,
) -> ValidateResult:
    """Loads the data, settles its spec, validates it and writes the clean table as Parquet.

    The spec is the declared one, else the production version's (so a retrain keeps the features),
    else inferred; ``task`` (binary, multiclass, regression) overrides the one inferred from the target. Ranges, categories and null rates are judged against the production version's
    reference profile when there is one. A drift retrain's recent slice (``recent_uri``) is validated against
    the same spec and written to ``recent_path``; without one an empty table is written there.

    The validation report goes to ``report_path`` whatever the outcome: a failed validation writes its page,
    with the failure, before :class:`~driftloop.errors.DataValidationError` is raised — or, with
    ``raise_on_failure`` False, returned as ``problem`` with empty tables, so a pipeline step can succeed and
    publish its report (KFP uploads no artifact of a failed step) and a later step fails the run.
    """
    frame, sha = load_table(data_uri)
    registry = open_registry(registry_uri)
    champion = registry.get_alias(model_name, PRODUCTION)
    spec, source = choose_spec(frame, target, registry, champion, spec_json, id_column, timestamp_column, task)
    reference = None
    if champion is not None:
        reference = ReferenceProfile.from_json(registry.read_file(model_name, champion.version, "profile.json").decode())
    page = ValidationPage(data_uri, ValidationReport(len(frame), len(frame)), spec, reference=reference,
                          reference_version=champion.version if champion else None, model=model_name,
                          spec_source=f"{source} spec", at=utc_now())
    try:
        clean, report, spec = validate_table(frame, spec, reference)
    except DataValidationError as failure:
        page.report, page.error = failure.report, str(failure)
        page.current = _profile_as_far_as_it_goes(failure.frame, spec)
        _write_text(report_path, validation_report_html(page))
        if raise_on_failure:
            raise
        for path in (dataset_path, recent_path):
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                pd.DataFrame().to_parquet(path, index=False)
        return ValidateResult(spec, sha, 0, failure.report, champion.version if champion else None, str(failure))
    page.report, page.spec, page.current = report, spec, build_profile(clean, spec)
    Path(dataset_path).parent.mkdir(parents=True, exist_ok=True)
    clean.to_parquet(dataset_path, index=False)
    if recent_path:
        recent = pd.DataFrame(columns=clean.columns)
        if recent_uri:
            try:
                recent = recent_rows(load_table(recent_uri)[0], spec)
            except DataValidationError as exc:  # the retrain goes on, judged on the holdout alone
                report.checks.append(Check(exc.column or "", "recent rows", "warn",
                                           f"the recent rows cannot be used: {exc.problem}"))
        Path(recent_path).parent.mkdir(parents=True, exist_ok=True)
        recent.to_parquet(recent_path, index=False)
    _write_text(report_path, validation_report_html(page))
    return ValidateResult(spec, sha, len(clean), report, champion.version if champion else None)


def fail_validation(problem: str) -> None:
    """The step that fails a run whose data failed validation (after the validation step published its report).

    ``problem`` is the validation step's error, already worded "data validation failed: …"; said once.
    """
    raise DataValidationError(None, problem.removeprefix("data validation failed: "))


def _profile_as_far_as_it_goes(frame: pd.DataFrame, spec: DatasetSpec) -> ReferenceProfile | None:
    """The profile of a table that failed validation, for its report; None when even that cannot be read."""
    try:
        return build_profile(frame, spec)
    except (ValueError, TypeError, KeyError):
        return None


def choose_spec(frame: pd.DataFrame, target: str, registry, champion: ModelVersion | None, spec_json: str = "",
                id_column: str = "", timestamp_column: str = "", task: str = INFER) -> tuple[DatasetSpec, str]:
    """The spec a run uses and where it comes from: the declared one, else the production version's (a retrain
    keeps the features and the task), else inferred from the table; a declared ``task`` other than the spec's
    overrides it."""
    if spec_json:
        spec, source = DatasetSpec.from_json(spec_json), "declared"
    else:
        champion_spec = _spec_of(registry, champion) if champion else None
        if champion_spec is not None and champion_spec.target == target:
            spec, source = champion_spec, f"production v{champion.version}'s"
        else:
            source = "inferred" if task == INFER else f"inferred (task declared {task})"
            return infer_spec(frame, target, id_column or None, timestamp_column or None, task=task), source
    if task != INFER and task != spec.task:
        spec, source = spec.with_task(task), f"{source} (task declared {task})"
    return spec, source


def _spec_of(registry, version: ModelVersion) -> DatasetSpec:
    return DatasetSpec.from_json(registry.read_file(version.name, version.version, "spec.json").decode())


@dataclass
class TrainStepResult:
    n_train: int
    n_holdout: int
    estimator: str  # the one fitted (what ``auto`` chose)
    model_format: str  # how driftloop's ServingRuntime knows the Pipeline (sklearn | xgboost-pipeline)
    leaderboard: list[dict]  # ``auto``'s candidates: validation score and fit time each
    strategies: list[dict]  # drift retrains: how the new world was weighed, each scored on the recent slice


def train(
    dataset_path: str,
    spec_json: str,
    model_dir: str,
    holdout_path: str,
    estimator: str = default_of("estimator"),
    params: dict | None = None,
    test_size: float = default_of("test_size"),
    seed: int = default_of("seed"),
    gate_metric: str = default_of("gate_metric"),
    recent_path: str = "",
    calibration: str = default_of("calibration"),
) -> TrainStepResult:
    """Fits the Pipeline on a seeded split (``auto``: the best candidate) and writes the model and the holdout.

    With a non-empty recent slice (a drift retrain) the new world's weight is chosen on it
    (:mod:`driftloop.recency`); the slice itself is never trained on.
    """
    from driftloop.training import save_model, train_model  # scikit-learn: only the steps that fit or score

    spec = DatasetSpec.from_json(spec_json)
    frame = pd.read_parquet(dataset_path)
    recent = _recent(recent_path)
    strategies: list[dict] = []
    if recent is not None and SOURCE_COLUMN in frame.columns:
        from dataclasses import asdict

        from driftloop.recency import train_for_recent

        result, tried = train_for_recent(frame, spec, recent, estimator, params, test_size, seed, gate_metric,
                                         calibration)
        strategies = [asdict(s) for s in tried]
    else:
        result = train_model(frame, spec, estimator, params, test_size, seed, gate_metric, calibration=calibration)
    save_model(result.model, model_dir)
    Path(holdout_path).parent.mkdir(parents=True, exist_ok=True)
    result.holdout_frame.to_parquet(holdout_path, index=False)
    return TrainStepResult(len(result.train_frame), len(result.holdout_frame), result.estimator,
                           model_format_of(result.estimator), result.leaderboard_dicts(), strategies)


def _recent(recent_path: str) -> pd.DataFrame | None:
    """The recent slice a drift retrain holds back, or None when there is none (a manual run)."""
    if not recent_path or not Path(recent_path).exists():
        return None
    recent = pd.read_parquet(recent_path)
    return recent if len(recent) else None


@dataclass
class EvaluateResult:
    evaluation: Evaluation
    decision: GateDecision
    champion_evaluation: Evaluation | None
    page: EvaluationPage | None = None  # what the report shows; the register step renders the registry's copy

    def outcome_json(self) -> str:
        """The evaluate step's output for registration: evaluation and decision, and the report's content."""
        page = self.page or EvaluationPage(RunFacts(""), self.evaluation, self.decision, self.champion_evaluation)
        return json.dumps(page.to_dict())


def evaluate(
    model_dir: str,
    holdout_path: str,
    spec_json: str,
    registry_uri: str,
    model_name: str,
    report_path: str,
    thresholds: GateThresholds = GateThresholds(INFER),
    recent_path: str = "",
    facts: RunFacts | None = None,
    trained: dict | None = None,
) -> EvaluateResult:
    """Scores the candidate and the production champion on the same holdout and applies the gate; with a recent
    slice (a drift retrain) both are also scored there, and the comparison is made there.

    ``facts`` head the report (run, data, trigger; the rest is filled in here); ``trained`` is what the train
    step recorded on the model (training rows, ``auto``'s leaderboard, a drift retrain's strategies).
    """
    from driftloop.training import load_model

    spec = DatasetSpec.from_json(spec_json)
    thresholds = dataclasses.replace(thresholds, metric=gate_metric_for(spec.task, thresholds.metric))
    holdout = pd.read_parquet(holdout_path)
    candidate = load_model(model_dir)
    evaluation = evaluate_model(candidate, holdout, spec)
    registry = open_registry(registry_uri)
    champion = registry.get_alias(model_name, PRODUCTION)
    champion_model = _champion_model(registry, champion, spec) if champion is not None else None
    champion_eval = _score_champion(champion_model, holdout, spec)
    recent = _recent(recent_path)
    recent_candidate = recent_champion = None
    if recent is not None:
        recent_candidate = evaluate_model(candidate, recent, spec).metrics
        recent_eval = _score_champion(champion_model, recent, spec)
        recent_champion = recent_eval.metrics if recent_eval else None
    decision = decide_gate(
        evaluation.metrics,
        champion_eval.metrics if champion_eval else None,
        thresholds,
        champion.version if champion_eval else None,
        recent_candidate,
        recent_champion,
        len(recent) if recent is not None else 0,
    )
    if champion is not None and champion_eval is None:
        decision.reasons.append(f"champion v{champion.version} could not score this holdout (different features, "
                                "task or classes)")
    trained = trained or {}
    facts = facts or RunFacts(model_name)
    facts.model, facts.at, facts.target = model_name, utc_now(), spec.target
    facts.classes = [str(c) for c in spec.target_classes] or facts.classes
    facts.champion_version = decision.champion_version
    facts.trigger_detail = facts.trigger_detail or trigger_detail(registry, model_name, facts.triggered_by)
    if trained.get("train_rows") is not None:
        facts.n_train = int(trained["train_rows"])
        facts.n_rows = facts.n_train + len(holdout)
    page = EvaluationPage(facts, evaluation, decision, champion_eval, _json_list(trained.get("leaderboard")),
                          _json_list(trained.get("strategies")))
    _write_text(report_path, evaluation_report_html(page))
    return EvaluateResult(evaluation, decision, champion_eval, page)


def _json_list(value) -> list:
    """A list the train step recorded as JSON text in artifact metadata (or already as a list)."""
    if isinstance(value, str):
        return json.loads(value or "[]")
    return list(value or [])


def trigger_detail(registry, model_name: str, triggered_by: str) -> str:
    """The drift monitor's reason for a drift retrain (its ``retrain-triggered`` audit entry), else ""."""
    kind, _, key = (triggered_by or "").partition(":")
    if kind != "drift" or not key:
        return ""
    try:
        history = registry.history(model_name)
    except DriftloopError:
        return ""
    entry = next((e for e in reversed(history)
                  if e.action == "retrain-triggered" and (e.evidence or {}).get("key") == key), None)
    return entry.reason if entry else ""


def run_facts(model_name: str, run_id: str, run_name: str, data_uri: str, triggered_by: str) -> RunFacts:
    """The header facts a pipeline step knows of its run (kfp.local names a task inside a dsl.If
    "<run>/<condition>"; the run's name is the first part); the run links to the KFP UI when the environment
    says where it is."""
    from driftloop.kfp_submit import run_page_from_env

    return RunFacts(model_name, run_name=str(run_name).split("/")[0], run_id=run_id,
                    run_url=run_page_from_env(run_id), data_uri=data_uri, triggered_by=triggered_by or "manual")


def _champion_model(registry, champion: ModelVersion, spec: DatasetSpec) -> tuple[object, DatasetSpec] | None:
    """The production version's model and spec, when it can score this run's rows (same target)."""
    champion_spec = _spec_of(registry, champion)
    if champion_spec.target != spec.target or champion_spec.task != spec.task or \
            (spec.is_classification and tuple(champion_spec.target_classes) != tuple(spec.target_classes)):
        return None  # its outputs would not mean the same (another task, or classes a multi-class retrain changed)
    from driftloop.training import load_model

    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(registry.fetch_model(champion.name, champion.version, Path(tmp)))
    return model, champion_spec.with_target_classes(spec.target_classes)


def _score_champion(champion: tuple[object, DatasetSpec] | None, rows: pd.DataFrame,
                    spec: DatasetSpec) -> Evaluation | None:
    if champion is None or not set(champion[1].feature_names) <= set(rows.columns):
        return None
    return evaluate_model(champion[0], rows, champion[1])


def register(
    model_dir: str,
    dataset_path: str,
    spec_json: str,
    evaluation_json: str,
    registry_uri: str,
    model_name: str,
    lineage: dict,
    actor: str = "ct-pipeline",
    trained: dict | None = None,
    holdout_path: str = "",
    recent_path: str = "",
) -> tuple[ModelVersion, str]:
    """Registers the candidate as a new immutable version with its spec, profile, sample and card.

    A drift retrain's reference sample — what the monitor measures drift against once the version serves — is
    the new world it was trained and judged for (:func:`reference_sample`, with the recent slice at
    ``recent_path``), so the alarm that triggered it clears.

    ``trained`` is what the train step recorded about the model (its artifact's metadata): the estimator
    fitted, the format it is served as, and ``auto``'s leaderboard; they go into lineage.

    The Pipeline is also compiled for the fast scoring path (:mod:`driftloop.fastpath`) and checked against
    itself on the holdout (``holdout_path``) and the reference sample: an agreeing graph is stored as
    ``model.onnx`` beside ``model.joblib``, covered by the manifest's hashes and signature, and lineage's
    ``fast_path`` (hence the manifest) holds the agreement figures, or why the version serves the Pipeline.

    Idempotent per pipeline run: when ``lineage["run_id"]`` already registered a version (a retried
    step whose first attempt published before it died), that version is returned, not a second one.

    The version and its audit entry are signed with the step's signing key (:mod:`driftloop.signing`): in a
    cluster a Kubernetes Secret, given to this step as ``DRIFTLOOP_SIGNING_KEY`` (PEM) or mounted as the file
    ``DRIFTLOOP_SIGNING_KEY_FILE`` names; locally the key file (created on first use). Without one, an S3
    registry gets unsigned versions and a warning, and refuses once its trail is signed or signatures are
    required.

    The version's model card (``model_card.md``) and evaluation report (``evaluation.html``) name its number:
    they are rendered for the number it is published under (see :func:`_publish_numbered`).

    Returns:
        The version and its Markdown model card.
    """
    spec = DatasetSpec.from_json(spec_json)
    outcome = json.loads(evaluation_json)
    page = EvaluationPage.from_dict(outcome)
    evaluation, decision = page.evaluation, page.decision
    registry = open_registry(registry_uri)
    run_id = lineage.get("run_id")
    published = registry.find_version_by_run(model_name, run_id) if run_id else None
    if published is not None:
        return published, registry.read_file(model_name, published.version, "model_card.md").decode()
    frame = pd.read_parquet(dataset_path)
    profile = build_profile(frame, spec)
    recent = _read_optional_table(recent_path)
    sample = reference_sample(frame, recent)
    trained = trained or {}
    model_format = trained.get("model_format") or SKLEARN_FORMAT
    train_rows = trained.get("train_rows")
    triggered_by = lineage.get("triggered_by") or "manual"
    lineage = {
        **lineage,
        "estimator": trained.get("estimator") or lineage.get("estimator"),
        "requested_estimator": lineage.get("estimator"),
        "leaderboard": _json_list(trained.get("leaderboard")),
        "drift_strategy": _json_list(trained.get("strategies")),
        "reference_sample": "live rows" if SOURCE_COLUMN in sample.columns and (sample[SOURCE_COLUMN] == LIVE).all()
        else "training rows",
        # kfp.local names a task inside a dsl.If "<run>/<condition>"; lineage keeps the run's name.
        "run_name": str(lineage.get("run_name", "")).split("/")[0],
        "run_url": lineage.get("run_url") or page.facts.run_url,
        "triggered_by": triggered_by,
        "trigger_detail": page.facts.trigger_detail or trigger_detail(registry, model_name, triggered_by),
        "parent_version": decision.champion_version,
        "gate": {"passed": decision.passed, "reasons": decision.reasons, "thresholds": decision.thresholds},
        "training_data": {
            "rows": len(frame), "positive_share": profile.positive_rate, "task": spec.task,
            "train_rows": int(train_rows) if train_rows is not None else None,
            "holdout_rows": int(evaluation.metrics.get("n_holdout", 0)) or None,
            "live_rows": int((frame[SOURCE_COLUMN] == LIVE).sum()) if SOURCE_COLUMN in frame.columns else None,
        },
        "intended_use": str(lineage.get("intended_use") or ""),
        "limitations": str(lineage.get("limitations") or ""),
        "code_version": code_version(),
        "libraries": library_versions(),
        "model_format": model_format,
    }
    holdout = pd.read_parquet(holdout_path) if holdout_path and Path(holdout_path).exists() else None
    graph, fast_path = _compile_fast_path(model_dir, spec, {"holdout": holdout, "reference_sample": sample})
    lineage[FAST_PATH_KEY] = fast_path.to_dict()
    if not page.facts.model:  # an outcome from before the report carried its facts
        page.facts = RunFacts(model_name, run_name=lineage["run_name"], run_id=run_id or "",
                              data_uri=lineage.get("data_uri", ""), triggered_by=triggered_by,
                              champion_version=decision.champion_version, target=spec.target,
                              classes=[str(c) for c in served_classes(spec)])
    registered_at = utc_now()
    fixed = {
        "spec.json": spec.to_json().encode(),
        "profile.json": profile.to_json().encode(),
        "reference_sample.parquet": _parquet_bytes(sample),
        "evaluation.json": json.dumps(outcome, indent=2, sort_keys=True).encode(),
    }
    cards: dict[int, str] = {}

    def attachments_for(number: int) -> dict[str, bytes]:
        cards[number] = model_card(model_name, number, spec, evaluation, decision, lineage, registered_at)
        page.facts.version = number
        return {**fixed, "model_card.md": cards[number].encode(),
                "evaluation.html": evaluation_report_html(page).encode()}

    with tempfile.TemporaryDirectory(prefix="driftloop-register-") as tmp:
        version = _publish_numbered(
            registry, model_name, attachments_for, model_dir=_model_directory(Path(model_dir), Path(tmp), graph),
            model_format=model_format, lineage=lineage, metrics=evaluation.metrics, actor=actor,
            reason="gate passed: " + "; ".join(decision.reasons), spec=spec.to_dict(),
        )
    return version, cards[version.version]


MAX_NUMBER_ATTEMPTS = 50


def _publish_numbered(registry, name: str, attachments_for, **register_args) -> ModelVersion:
    """Registers a version whose attachments name its own number (the model card's title, the report's header).

    The registry publishes a version atomically, all files or none, under exactly the number asked for, and
    refuses with :class:`VersionExistsError` when another writer took it first; then the next number is tried,
    with its attachments rendered again. Nothing is ever overwritten, and no copy says "candidate".
    """
    number = max((v.version for v in registry.list_versions(name)), default=0) + 1
    for _ in range(MAX_NUMBER_ATTEMPTS):
        try:
            return registry.register(name, attachments=attachments_for(number), version=number, **register_args)
        except VersionExistsError:
            number += 1  # a concurrent writer (or an abandoned claim) holds it
    raise DriftloopError(f"could not find a free version number for '{name}' after {MAX_NUMBER_ATTEMPTS} attempts")


def _compile_fast_path(model_dir: str, spec: DatasetSpec, checked: dict[str, pd.DataFrame | None]):
    """The Pipeline's compiled graph (None when refused) and the record of why, for lineage."""
    from driftloop.fastpath.agreement import compile_fast_path
    from driftloop.training import load_model

    return compile_fast_path(load_model(model_dir), spec, checked)


def _model_directory(source: Path, workdir: Path, graph: bytes | None) -> Path:
    """The directory the registry stores: the train step's files (its artifact is left as it is) plus the
    accepted graph; a graph the source happens to hold is never carried over unchecked."""
    directory = workdir / "model"
    shutil.copytree(source, directory)
    (directory / ONNX_FILENAME).unlink(missing_ok=True)
    if graph is not None:
        (directory / ONNX_FILENAME).write_bytes(graph)
    return directory


def dashboard_metrics(result: EvaluateResult) -> tuple[dict[str, float], dict | None]:
    """The scalars and ROC curve a KFP Metrics / ClassificationMetrics artifact can hold.

    KFP's launcher parses the executor output as JSON, which has no NaN or infinity (a one-class holdout has
    no ROC AUC): such values are left out here, and the evaluation report names them.
    """
    per_class: dict[str, float] = {}
    for i, (label, scores) in enumerate(result.evaluation.per_class.items()):
        name = f"class_recall_{_metric_safe(label)}"
        per_class[name if name not in per_class else f"{name}_{i}"] = scores["recall"]  # "a-b" and "a_b" both
    values = {**result.evaluation.metrics, **per_class,
              **{f"champion_{k}": v for k, v in (result.decision.champion or {}).items()}}
    left_out = set(non_finite_metrics(values))
    scalars = {k: float(v) for k, v in values.items() if k not in left_out}
    roc = result.evaluation.roc_curve
    finite = roc and not any(non_finite_metrics(dict(enumerate(points))) for points in roc.values())
    return scalars, roc if finite else None


def dashboard_confusion(result: EvaluateResult) -> tuple[list[str], list[list[int]]] | None:
    """The class labels and confusion matrix a ClassificationMetrics artifact shows (None for a regression)."""
    evaluation = result.evaluation
    if not evaluation.confusion_matrix:
        return None
    labels = evaluation.classes or list(result.page.facts.classes if result.page else []) or \
        [str(i) for i in range(len(evaluation.confusion_matrix))]
    return [str(label) for label in labels], evaluation.confusion_matrix


def _metric_safe(label) -> str:
    """A class label as part of a KFP metric name (letters, digits and underscores)."""
    return "".join(c if c.isalnum() else "_" for c in str(label))


MIN_LIVE_REFERENCE_ROWS = 200


def reference_sample(frame: pd.DataFrame, recent: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows a version's drift is measured against.

    For a drift retrain with enough labelled live rows, the newest of the new world: the recent slice it was
    judged on and the newer half of the live rows it was trained on (oldest first in the table). The live rows
    date from the first window that signalled, which may have opened before the drift began, so their older half
    can still be the old world; measured against them, the alarm would not clear. Otherwise a sample of all its
    training rows.
    """
    if SOURCE_COLUMN in frame.columns:
        live = frame[frame[SOURCE_COLUMN] == LIVE]
        judged_on = recent.assign(**{SOURCE_COLUMN: LIVE}) if recent is not None else live.iloc[:0]
        newest = pd.concat([live.iloc[len(live) // 2:], judged_on], ignore_index=True)
        if len(newest) >= MIN_LIVE_REFERENCE_ROWS:
            return newest.sample(n=min(len(newest), REFERENCE_SAMPLE_ROWS), random_state=0)
    return frame.sample(n=min(len(frame), REFERENCE_SAMPLE_ROWS), random_state=0)


def _read_optional_table(path: str) -> pd.DataFrame | None:
    """The table at ``path``; None when there is no path or it holds no rows (no recent slice)."""
    if not path or not Path(path).exists():
        return None
    table = pd.read_parquet(path)
    return table if len(table) else None


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


@dataclass
class DeployResult:
    # "promoted" | "canary" (no analysis asked for) | "aborted" (the analysis failed it) | "pending-approval"
    # (it passed; the model's approval policy holds it at its share until someone approves or rejects it)
    action: str
    version: int
    previous_production: int | None
    canary_percent: int
    served: str  # what the serving layer confirmed, in words


def deploy(registry_uri: str, model_name: str, version: int, *, actor: str = "ct-pipeline",
           canary_percent: int = default_of("canary_percent"), serve_target: str = default_of("serve_target"),
           serving_namespace: str = default_of("serving_namespace"),
           deployment_mode: str = default_of("deployment_mode"),
           serving_account: str = default_of("serving_account"), logger_url: str = default_of("logger_url"),
           logger_storage: str = default_of("logger_storage"),
           logger_storage_format: str = default_of("logger_storage_format"),
           logger_storage_account: str = default_of("logger_storage_account"),
           logger_batch_size: int = default_of("logger_batch_size"),
           ready_timeout: float = default_of("ready_timeout"), rollout_gateway: str = default_of("rollout_gateway"),
           rollout_prometheus: str = default_of("rollout_prometheus"),
           rollout_interval: float = default_of("rollout_interval"),
           rollout_monitor: str = default_of("rollout_monitor"), rollout_policy: dict | None = None) -> DeployResult:
    """Rolls a registered version out where ``serve_target`` says, through the deployment port.

    Straight to production when nothing serves yet (or at 100 %); otherwise as the canary taking
    ``canary_percent`` %. With a metrics source (``rollout_gateway`` locally, ``rollout_prometheus`` on
    KServe) the canary then goes through automated analysis and ends "promoted" or "aborted", or
    "pending-approval" when the model's approval policy (kept in the registry, not a run parameter) holds a
    canary that passed for a person's decision; with ``rollout_monitor`` the analysis also compares realised
    quality on labelled traffic. ``rollout_policy``
    overrides :class:`~driftloop.rollout.RolloutPolicy` fields. Every parameter is checked as
    :class:`~driftloop.ct_params.CTParams` defines it.
    """
    from driftloop.ct_params import LOGGER_SETTINGS, check_value
    from driftloop.deploy import open_deployment

    values = {name: check_value(name, value) for name, value in {
        "canary_percent": canary_percent, "serve_target": serve_target, "deployment_mode": deployment_mode,
        "logger_url": logger_url, "logger_storage": logger_storage, "logger_storage_format": logger_storage_format,
        "logger_storage_account": logger_storage_account, "logger_batch_size": logger_batch_size,
        "ready_timeout": ready_timeout, "rollout_gateway": rollout_gateway,
        "rollout_prometheus": rollout_prometheus, "rollout_interval": rollout_interval,
        "rollout_monitor": rollout_monitor, "rollout_policy": rollout_policy or {}}.items()}
    registry = open_registry(registry_uri)
    logger = {name: values[name] for name in LOGGER_SETTINGS}
    deployment = open_deployment(registry, values["serve_target"], actor=actor, namespace=serving_namespace,
                                 deployment_mode=values["deployment_mode"], service_account=serving_account,
                                 ready_timeout=values["ready_timeout"], **logger)
    start = deployment.roll_out(model_name, int(version), values["canary_percent"])
    if start.action == "promoted":
        return DeployResult("promoted", start.version, start.previous_production, 100, start.traffic.describe())
    metrics = _request_metrics(deployment, model_name, values)
    if metrics is None:
        return DeployResult("canary", start.version, start.previous_production, values["canary_percent"],
                            start.traffic.describe())
    from driftloop.rollout import RolloutPolicy, quality_reader, run_rollout

    policy = RolloutPolicy.from_dict({"interval": values["rollout_interval"], **values["rollout_policy"]})
    read_quality = quality_reader(values["rollout_monitor"], model_name) if values["rollout_monitor"] else None
    result = run_rollout(deployment, model_name, metrics, policy, read_quality=read_quality)
    traffic = deployment.observe(model_name)
    share = 100 if result.outcome == "promoted" else traffic.canary_percent if traffic else 0
    return DeployResult(result.outcome, start.version, start.previous_production, share,
                        traffic.describe() if traffic else "")


def _request_metrics(deployment, model_name: str, values: dict):
    """The rollout's metrics source for the serve target, or None when no analysis was asked for."""
    if values["serve_target"] == "local":
        if not values["rollout_gateway"]:
            return None
        from driftloop.rollout import GatewayRequestMetrics

        return GatewayRequestMetrics(values["rollout_gateway"], model_name)
    if not values["rollout_prometheus"]:
        return None
    from driftloop.rollout.prometheus import PrometheusMetrics

    series = "runtime" if values["deployment_mode"] == "Standard" else "auto"
    return PrometheusMetrics(values["rollout_prometheus"], deployment.config.namespace, model_name, series=series)


def record_outcome(
    registry_uri: str, model_name: str, run_id: str, state: str, error: str = "", version: int | None = None
) -> None:
    """The exit handler's job: note in the model's audit trail how a CT run ended."""
    registry = open_registry(registry_uri)
    if version is None:
        found = registry.find_version_by_run(model_name, run_id)
        version = found.version if found else None
    registry.record(
        model_name, "run-finished", actor="ct-pipeline", version=version,
        reason=f"run {run_id} {state.lower()}" + (f": {error}" if error else ""),
        evidence={"run_id": run_id, "state": state, "error": error},
    )


def code_version() -> dict:
    """The package version and, when known, the git commit (DRIFTLOOP_GIT_COMMIT in the image)."""
    commit = os.environ.get("DRIFTLOOP_GIT_COMMIT", "")
    if not commit:
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=Path(driftloop.__file__).parent, capture_output=True, text=True,
                timeout=5, check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            commit = ""
    return {"package": driftloop.__version__, "git_commit": commit or None}


def _write_text(path: str, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def check_drift(reference_uri: str, current_uri: str, spec_json: str, report_path: str,
                num_method: str = drift_defaults.NUM_METHOD, cat_method: str = drift_defaults.CAT_METHOD,
                drift_share: float = drift_defaults.DRIFT_SHARE):
    """The drift component's job: load both tables and compare them feature by feature."""
    from driftloop.drift import DriftConfig
    from driftloop.drift import check_drift as compare

    reference, _ = load_table(reference_uri)
    current, _ = load_table(current_uri)
    config = DriftConfig(num_method=num_method, cat_method=cat_method, drift_share=drift_share)
    return compare(reference, current, DatasetSpec.from_json(spec_json), config, report_path)
