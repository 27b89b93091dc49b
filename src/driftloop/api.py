"""The Python API the CLI and the notebooks share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from driftloop import synthetic
from driftloop.ct_params import CTParams
from driftloop.data import DatasetSpec, infer_spec, load_table
from driftloop.errors import ConfigError, DataError, DriftloopError
from driftloop.registry import ModelRegistry
from driftloop.runners.local import RunSummary, TaskEvent, run_ct_pipeline
from driftloop.settings import Settings
from driftloop.storage import is_s3_uri
from driftloop.tasks import BINARY, INFER

__all__ = ["CTParams", "RunSummary", "Settings", "TaskEvent", "compile_batch_score_pipeline", "compile_pipeline", "demo_params",
           "generate_demo_data", "infer", "planned_spec", "run"]


def run(
    params: CTParams,
    settings: Settings | None = None,
    on_event: Callable[[TaskEvent], None] | None = None,
) -> RunSummary:
    """Runs the CT pipeline on the embedded default (kfp.local) and returns its summary."""
    settings = settings or Settings.resolve()
    _preflight(params.data_uri)
    return run_ct_pipeline(params, settings.home, settings.registry_uri, on_event)


def _preflight(data_uri: str) -> None:
    """Cheap checks that save a pipeline start; the pipeline's own validation is the real one."""
    if is_s3_uri(data_uri):
        return
    path = Path(data_uri.removeprefix("file://"))
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if path.suffix.lower() not in {".csv", ".parquet", ".pq"}:
        raise DataError(f"unsupported file type '{path.suffix or '(none)'}' for {path}: use .csv or .parquet")


def planned_spec(params: CTParams, settings: Settings | None = None) -> tuple[DatasetSpec, str]:
    """The spec a CT run with ``params`` will use, and where it comes from (declared, the production version's,
    or inferred), decided as the pipeline's first step decides — so a person sees it before training starts."""
    from driftloop import steps
    from driftloop.registry import PRODUCTION, open_registry

    settings = settings or Settings.resolve()
    _preflight(params.data_uri)
    frame, _ = load_table(params.data_uri)
    registry = open_registry(settings.registry_uri)
    try:
        champion = registry.get_alias(params.model_name, PRODUCTION)
    except DriftloopError:
        champion = None
    return steps.choose_spec(frame, params.target, registry, champion, params.spec_json, params.id_column,
                             params.timestamp_column, params.task)


def infer(data_uri: str, target: str, id_column: str | None = None, timestamp_column: str | None = None,
          categorical: tuple[str, ...] = (), task: str = INFER) -> DatasetSpec:
    """The spec driftloop would infer for a table (edit it and pass it back as ``spec_json``); ``task`` overrides
    the one the target implies."""
    frame, _ = load_table(data_uri)
    return infer_spec(frame, target, id_column, timestamp_column, categorical, task=task)


def generate_demo_data(directory: Path, n_rows: int = 4000, seed: int = 7, task: str = BINARY) -> dict[str, Path]:
    """Writes the demo's two tables of ``task`` (:func:`driftloop.synthetic.generate`): the reference world and a
    drifted one (covariate + concept)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"reference": directory / "reference.csv", "drifted": directory / "drifted.csv"}
    synthetic.generate(n_rows, seed, task=task).to_csv(paths["reference"], index=False)
    synthetic.generate(n_rows, seed + 1, covariate_shift=0.6, concept_shift=0.6, id_offset=n_rows,
                       task=task).to_csv(paths["drifted"], index=False)
    return paths


def demo_params(data_uri: str, **overrides) -> CTParams:
    """Parameters for a synthetic table of the task ``overrides["task"]`` (binary unless named): its target, and
    its model name, id and time columns unless others are given."""
    generated = synthetic.task_for(overrides.get("task", INFER))
    return CTParams(**{**overrides, "data_uri": data_uri, "target": synthetic.TARGETS[generated],
                       "model_name": overrides.get("model_name") or synthetic.MODEL_NAMES[generated],
                       "id_column": overrides.get("id_column") or synthetic.ID_COLUMN,
                       "timestamp_column": overrides.get("timestamp_column") or synthetic.TIMESTAMP_COLUMN})


def compile_pipeline(output: str | Path | None = None, image: str | None = None) -> Path:
    """Compiles the cluster CT pipeline to Kubeflow IR YAML, every step on ``image`` (default:
    ``DRIFTLOOP_IMAGE``, else the project image)."""
    from driftloop.image import project_image
    from driftloop.pipelines.ct_pipeline import IR_PATH, compile_ct_pipeline

    target = Path(output) if output else IR_PATH
    if target.is_dir():
        raise ConfigError(f"{target} is a directory; give a .yaml file path")
    target.parent.mkdir(parents=True, exist_ok=True)
    return compile_ct_pipeline(target, image or project_image())


def compile_batch_score_pipeline(output: str | Path | None = None, image: str | None = None) -> Path:
    """Compiles the batch-scoring pipeline to Kubeflow IR YAML, its step on ``image`` (default as
    :func:`compile_pipeline`)."""
    from driftloop.image import project_image
    from driftloop.pipelines.batch_score_pipeline import IR_PATH, compile_batch_score_pipeline

    target = Path(output) if output else IR_PATH
    if target.is_dir():
        raise ConfigError(f"{target} is a directory; give a .yaml file path")
    target.parent.mkdir(parents=True, exist_ok=True)
    return compile_batch_score_pipeline(target, image or project_image())


# The cluster backend: CT runs and schedules on Kubeflow Pipelines (kfp is imported only when called).
from driftloop.kfp_submit import (  # noqa: E402
    KfpSettings,
    Schedule,
    SubmittedRun,
    create_schedule,
    delete_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
    run_state,
    submit_run,
    wait_for_run,
)

__all__ += ["KfpSettings", "Schedule", "SubmittedRun", "create_schedule", "delete_schedule", "list_schedules",
            "pause_schedule", "resume_schedule", "run_state", "submit_run", "wait_for_run"]


# Governance: approval of promotions (the policy lives in the registry; decisions go through the deployment port).
from driftloop.registry.approvals import ApprovalPolicy, PendingApproval  # noqa: E402


def set_approval_policy(registry: ModelRegistry | str, model: str, policy: ApprovalPolicy | None, *,
                        actor: str | None = None, reason: str = ""):
    """Requires approval before a canary that passed becomes production (None: no longer). The change is an
    audit entry naming the actor (see :func:`driftloop.identity.resolve_actor`)."""
    from driftloop.identity import resolve_actor

    return _registry(registry).set_approval_policy(model, policy, actor=resolve_actor(actor).name, reason=reason)


def pending_approvals(registry: ModelRegistry | str, model: str | None = None) -> list[PendingApproval]:
    """The canaries waiting for approval (of ``model``, or every model); reads only."""
    from driftloop.deploy.approval import pending_approvals as pending

    return pending(_registry(registry), model)


def approve(registry: ModelRegistry | str, model: str, version: int, reason: str, *, actor: str | None = None,
            context: str | None = None, **serving):
    """Promotes the canary ``version`` that waits for approval, through the backend it serves on.

    Args:
        actor: A self-declared name, used when no verified identity exists (a pod's ServiceAccount, or the
            kubeconfig's user by SelfSubjectReview).
        serving: Overrides of where it serves (``target``, ``namespace``, …; default: as recorded).

    Returns:
        What serves now (a :class:`~driftloop.deploy.ServedTraffic`).
    """
    from driftloop.deploy.approval import APPROVE, decide

    return decide(APPROVE, _registry(registry), model, version, reason, actor=actor, context=context, **serving)


def reject(registry: ModelRegistry | str, model: str, version: int, reason: str, *, actor: str | None = None,
           context: str | None = None, **serving):
    """Takes the canary ``version`` that waits for approval out of service (see :func:`approve`)."""
    from driftloop.deploy.approval import REJECT, decide

    return decide(REJECT, _registry(registry), model, version, reason, actor=actor, context=context, **serving)


def _registry(registry: ModelRegistry | str) -> ModelRegistry:
    from driftloop.registry import open_registry

    return open_registry(registry) if isinstance(registry, str) else registry


__all__ += ["ApprovalPolicy", "PendingApproval", "approve", "pending_approvals", "reject", "set_approval_policy"]
