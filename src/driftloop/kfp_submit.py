"""Submit the CT pipeline to Kubeflow Pipelines and manage its recurring runs (the cluster backend).

Connection, authentication and the v2beta1 REST calls are ``kfp.Client``'s. We call its generated service
APIs (``client.pipelines``, ``client.runs`` …) rather than its convenience methods because those print
links on stdout and retry a failed health check for 25 s, while the drift monitor calls
:func:`submit_run` from a background thread: nothing here prints, every request has a timeout, and each
call builds its own client, so no state is shared between threads.

Credentials for S3 never travel as run parameters: the pipeline's pods get them from the Kubernetes
Secret ``driftloop-s3`` (see ``pipelines/ct_pipeline.py``). The KFP token is never printed or logged.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import json
import os
import re
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop import __version__
from driftloop.errors import ConfigError, DriftloopError, UnavailableError
from driftloop.image import PROJECT_IMAGE, project_image

if TYPE_CHECKING:  # both cost seconds to import; `driftloop schedule list` needs neither
    import kfp

    from driftloop.ct_params import CTParams

DEFAULT_EXPERIMENT = "driftloop"
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"})
# kfp's own in-cluster token: a projected ServiceAccount token that the kubelet rotates.
KFP_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
KFP_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
# Inside a pod (a Kubeflow notebook server, the monitor on the cluster) the KFP API is a Service away, as kfp's own
# Client assumes when it finds itself in a cluster; the environment variables below still win.
IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow:8888"
MIN_INTERVAL_SECONDS = 60
_PAGE_SIZE = 100
_COMPILE_LOCK = threading.Lock()  # the KFP compiler keeps module-level state; one compile at a time


class KfpApiError(DriftloopError):
    """Kubeflow Pipelines failed a request for a reason on its side (a 5xx, an unexpected answer)."""


@dataclass(frozen=True)
class KfpSettings:
    """How to reach Kubeflow Pipelines.

    Attributes:
        host: The KFP API's base URL, e.g. ``http://ml-pipeline.kubeflow:8888`` or the Kubeflow gateway's
            ``https://kubeflow.example.com/pipeline``.
        namespace: The profile namespace on multi-user Kubeflow; None on single-user deployments.
        experiment: The experiment runs and schedules belong to (created on first use).
        token: A bearer token; excluded from ``repr``.
        token_path: A token file read before every request (kfp's in-cluster ServiceAccount token).
        ui_host: Base URL of the KFP UI for run links (default: ``host``).
        service_account: The Kubernetes ServiceAccount runs use (default: KFP's).
        ssl_ca_cert: CA bundle for a TLS host with a private CA.
        request_timeout: Seconds any one API request may take.
        poll_interval: Seconds between state checks while waiting for a run.
        image: The image every pipeline step runs on (``DRIFTLOOP_IMAGE``).
    """

    host: str
    namespace: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    token: str | None = field(default=None, repr=False)
    token_path: str | None = None
    ui_host: str | None = None
    service_account: str | None = None
    ssl_ca_cert: str | None = None
    request_timeout: float = 30.0
    poll_interval: float = 5.0
    image: str = PROJECT_IMAGE

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^/\s]+", self.host or ""):
            raise ConfigError(f"the Kubeflow Pipelines host must be an http(s) URL such as "
                              f"http://ml-pipeline.kubeflow:8888, got '{self.host}'")
        object.__setattr__(self, "host", self.host.rstrip("/"))
        if not self.experiment.strip():
            raise ConfigError("the experiment name must not be empty")

    @classmethod
    def from_env(cls, host: str | None = None, namespace: str | None = None, experiment: str | None = None,
                 environ: Mapping[str, str] | None = None, **options: Any) -> KfpSettings:
        """Resolves settings from arguments first, then the environment.

        ``DRIFTLOOP_KFP_HOST`` (or kfp's ``KF_PIPELINES_ENDPOINT``; inside a pod, :data:`IN_CLUSTER_HOST`),
        ``DRIFTLOOP_KFP_NAMESPACE``, ``DRIFTLOOP_KFP_EXPERIMENT``, ``DRIFTLOOP_KFP_UI`` (or ``KF_PIPELINES_UI_ENDPOINT``),
        ``DRIFTLOOP_KFP_SERVICE_ACCOUNT``, ``DRIFTLOOP_IMAGE``. The token is ``DRIFTLOOP_KFP_TOKEN``; without it, the file named
        by ``KF_PIPELINES_SA_TOKEN_PATH`` or, when present, ``/var/run/secrets/kubeflow/pipelines/token``
        (the token Kubeflow mounts into pods for multi-user access), re-read on every request.
        """
        env = os.environ if environ is None else environ
        host = (host or env.get("DRIFTLOOP_KFP_HOST") or env.get("KF_PIPELINES_ENDPOINT")
                or (IN_CLUSTER_HOST if env.get("KUBERNETES_SERVICE_HOST") else None))
        if not host:
            raise ConfigError("no Kubeflow Pipelines host: pass --host or set DRIFTLOOP_KFP_HOST "
                              "(e.g. http://ml-pipeline.kubeflow:8888)")
        token = env.get("DRIFTLOOP_KFP_TOKEN") or None
        token_path = None
        if not token:
            explicit = env.get(KFP_TOKEN_PATH_ENV)
            if explicit and not Path(explicit).is_file():
                raise ConfigError(f"{KFP_TOKEN_PATH_ENV} names {explicit}, which is not a file")
            if explicit or Path(KFP_TOKEN_PATH).is_file():
                token_path = explicit or KFP_TOKEN_PATH
        return cls(
            host=host,
            namespace=namespace or env.get("DRIFTLOOP_KFP_NAMESPACE") or None,
            experiment=experiment or env.get("DRIFTLOOP_KFP_EXPERIMENT") or DEFAULT_EXPERIMENT,
            token=token,
            token_path=token_path,
            ui_host=_ui_host(env),
            service_account=env.get("DRIFTLOOP_KFP_SERVICE_ACCOUNT") or None,
            **({"image": project_image(env)} | options),
        )

    def run_url(self, run_id: str) -> str:
        """The run's page in the KFP UI."""
        return run_page(self.ui_host or self.host, run_id)


# Where the KFP UI is, for run links: driftloop's variable, else the one kfp's own client reads.
UI_HOST_ENV = ("DRIFTLOOP_KFP_UI", "KF_PIPELINES_UI_ENDPOINT")


def _ui_host(env: Mapping[str, str]) -> str | None:
    return next((env[name] for name in UI_HOST_ENV if env.get(name)), None)


def run_page(ui_host: str, run_id: str) -> str:
    """A run's page in the KFP UI at ``ui_host``."""
    return f"{ui_host.rstrip('/')}/#/runs/details/{run_id}"


def run_page_from_env(run_id: str, environ: Mapping[str, str] | None = None) -> str:
    """A run's page when the environment names the KFP UI (:data:`UI_HOST_ENV`), else "" (a pipeline step's
    reports link their run only where the deployment says where the UI is)."""
    host = _ui_host(os.environ if environ is None else environ)
    return run_page(host, run_id) if host and run_id else ""


@dataclass(frozen=True)
class SubmittedRun:
    """A CT run on Kubeflow Pipelines and the pipeline version it runs."""

    run_id: str
    run_url: str
    pipeline_id: str
    pipeline_version_id: str
    pipeline_version_name: str
    experiment_id: str
    state: str
    error: str | None = None
    version_reused: bool = False

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Schedule:
    """A recurring CT run."""

    schedule_id: str
    name: str
    enabled: bool
    trigger: str  # "cron 0 0 3 * * *" or "every 6h"
    max_concurrency: int
    no_catchup: bool
    experiment_id: str | None
    pipeline_version_id: str | None
    created_at: str | None

    def to_dict(self) -> dict:
        return asdict(self)


# --- runs -------------------------------------------------------------------------------------------

def submit_run(settings: KfpSettings, params: CTParams, registry_uri: str | None = None, run_name: str | None = None,
               wait: bool = False, timeout: float = 3600.0) -> SubmittedRun:
    """Starts a CT run of the cluster pipeline on Kubeflow Pipelines.

    The pipeline ``driftloop-ct`` is created on first use; its IR goes up as a pipeline version named
    after the package version and the IR's hash, so submitting the same pipeline again reuses it.

    Args:
        settings: Where KFP is.
        params: The run's parameters.
        registry_uri: The registry the pods use (an ``s3://`` URI); default: ``params.registry_uri``.
        run_name: Display name (default: ``driftloop-ct <model> <UTC time>``).
        wait: Block until the run finishes or ``timeout`` passes.
        timeout: Seconds to wait with ``wait``.

    Returns:
        The run; with ``wait``, its final state (or the last one seen when the timeout passed).
    """
    arguments = _cluster_arguments(params, registry_uri)
    client = _connect(settings)
    namespace = _namespace(client, settings)
    with _compiled_pipeline(settings.image) as (package, version_name):
        pipeline_id, version_id, reused = _pipeline_version(client, settings, namespace, package, version_name)
    experiment_id = _experiment_id(client, settings, namespace, create=True)
    name = run_name or f"driftloop-ct {params.model_name} {_utc_now()}"
    models = _models()
    body = models.V2beta1Run(
        display_name=name, experiment_id=experiment_id, service_account=settings.service_account,
        pipeline_version_reference=models.V2beta1PipelineVersionReference(
            pipeline_id=pipeline_id, pipeline_version_id=version_id),
        runtime_config=models.V2beta1RuntimeConfig(parameters=arguments),
    )
    with _kfp_errors(settings, "create the run"):
        created = client.runs.run_service_create_run(body, _request_timeout=settings.request_timeout)
    run_id = _required(created.run_id, "a run id", settings)
    run = SubmittedRun(run_id=run_id, run_url=settings.run_url(run_id), pipeline_id=pipeline_id,
                       pipeline_version_id=version_id, pipeline_version_name=version_name,
                       experiment_id=experiment_id, state=_state(created.state), version_reused=reused)
    return wait_for_run(settings, run, timeout) if wait else run


def run_state(settings: KfpSettings, run_id: str) -> str:
    """The run's current state: PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED, CANCELING, CANCELED, PAUSED."""
    return _run_status(_connect(settings), settings, run_id)[0]


def wait_for_run(settings: KfpSettings, run: SubmittedRun, timeout: float = 3600.0,
                 on_state: Callable[[str], None] | None = None) -> SubmittedRun:
    """Polls the run until it finishes or ``timeout`` seconds pass; ``on_state`` sees each new state."""
    client = _connect(settings)
    deadline = time.monotonic() + timeout
    last = None
    while True:
        state, error = _run_status(client, settings, run.run_id)
        if state != last and on_state is not None:
            on_state(state)
        last = state
        remaining = deadline - time.monotonic()
        if state in TERMINAL_STATES or remaining <= 0:
            return replace(run, state=state, error=error)
        time.sleep(min(settings.poll_interval, remaining))


def _run_status(client: kfp.Client, settings: KfpSettings, run_id: str) -> tuple[str, str | None]:
    with _kfp_errors(settings, f"read run {run_id}"):
        run = client.runs.run_service_get_run(run_id, _request_timeout=settings.request_timeout)
    error = getattr(run.error, "message", None) if run.error else None
    return _state(run.state), error or None


def _state(value: str | None) -> str:
    # A run the API has just accepted may carry no state yet.
    return "PENDING" if not value or value == "RUNTIME_STATE_UNSPECIFIED" else str(value)


# --- recurring runs ---------------------------------------------------------------------------------

def create_schedule(settings: KfpSettings, params: CTParams, registry_uri: str, name: str,
                    cron: str | None = None, interval_seconds: int | None = None) -> Schedule:
    """Creates an enabled recurring CT run, one run at a time and without catching up on missed ones.

    Args:
        settings: Where KFP is.
        params: The runs' parameters; ``triggered_by`` becomes ``schedule:<name>`` unless set.
        registry_uri: The registry the pods use (an ``s3://`` URI).
        name: The schedule's name (unique within the experiment).
        cron: A cron expression: standard five fields (``0 3 * * *``), KFP's six with seconds first, or
            a descriptor such as ``@daily``. Times are UTC.
        interval_seconds: Alternatively, seconds between runs (at least 60).
    """
    if (cron is None) == (interval_seconds is None):
        raise ConfigError("a schedule needs exactly one trigger: a cron expression or an interval")
    models = _models()
    if cron is not None:
        trigger = models.V2beta1Trigger(cron_schedule=models.V2beta1CronSchedule(cron=to_kfp_cron(cron)))
    else:
        if int(interval_seconds) < MIN_INTERVAL_SECONDS:
            raise ConfigError(f"a schedule's interval must be at least {MIN_INTERVAL_SECONDS} s, "
                              f"got {interval_seconds} s")
        trigger = models.V2beta1Trigger(
            periodic_schedule=models.V2beta1PeriodicSchedule(interval_second=int(interval_seconds)))
    if not name.strip():
        raise ConfigError("a schedule needs a name")
    if params.triggered_by == "manual":
        params = replace(params, triggered_by=f"schedule:{name}")
    arguments = _cluster_arguments(params, registry_uri)
    client = _connect(settings)
    namespace = _namespace(client, settings)
    experiment_id = _experiment_id(client, settings, namespace, create=True)
    clash = [r for r in _recurring_runs(client, settings, namespace, experiment_id) if r.display_name == name]
    if clash:
        raise ConfigError(f"a schedule named '{name}' exists already (id {clash[0].recurring_run_id}); "
                          f"delete it or pick another name")
    with _compiled_pipeline(settings.image) as (package, version_name):
        pipeline_id, version_id, _ = _pipeline_version(client, settings, namespace, package, version_name)
    body = models.V2beta1RecurringRun(
        display_name=name, description=f"driftloop CT of model '{params.model_name}'",
        experiment_id=experiment_id, service_account=settings.service_account,
        pipeline_version_reference=models.V2beta1PipelineVersionReference(
            pipeline_id=pipeline_id, pipeline_version_id=version_id),
        runtime_config=models.V2beta1RuntimeConfig(parameters=arguments),
        trigger=trigger, max_concurrency=1, no_catchup=True, mode="ENABLE",
    )
    with _kfp_errors(settings, f"create schedule '{name}'"):
        created = client.recurring_runs.recurring_run_service_create_recurring_run(
            body, _request_timeout=settings.request_timeout)
    _required(created.recurring_run_id, "a schedule id", settings)
    return _schedule(created)


def list_schedules(settings: KfpSettings) -> list[Schedule]:
    """The experiment's recurring runs (none if the experiment does not exist yet)."""
    client = _connect(settings)
    namespace = _namespace(client, settings)
    experiment_id = _experiment_id(client, settings, namespace, create=False)
    if experiment_id is None:
        return []
    return [_schedule(r) for r in _recurring_runs(client, settings, namespace, experiment_id)]


def pause_schedule(settings: KfpSettings, id_or_name: str) -> Schedule:
    """Disables a schedule, found by name or id; runs already started go on."""
    return _schedule_action(settings, id_or_name, "disable")


def resume_schedule(settings: KfpSettings, id_or_name: str) -> Schedule:
    """Enables a paused schedule."""
    return _schedule_action(settings, id_or_name, "enable")


def delete_schedule(settings: KfpSettings, id_or_name: str) -> Schedule:
    """Deletes a schedule and returns it as it was."""
    return _schedule_action(settings, id_or_name, "delete")


def _schedule_action(settings: KfpSettings, id_or_name: str, verb: str) -> Schedule:
    client = _connect(settings)
    namespace = _namespace(client, settings)
    found = _find_schedule(client, settings, namespace, id_or_name)
    api = client.recurring_runs
    call = {"disable": api.recurring_run_service_disable_recurring_run,
            "enable": api.recurring_run_service_enable_recurring_run,
            "delete": api.recurring_run_service_delete_recurring_run}[verb]
    with _kfp_errors(settings, f"{verb} schedule '{found.display_name}'"):
        call(found.recurring_run_id, _request_timeout=settings.request_timeout)
    if verb == "delete":
        return _schedule(found)
    with _kfp_errors(settings, f"read schedule '{found.display_name}'"):
        fresh = api.recurring_run_service_get_recurring_run(found.recurring_run_id,
                                                            _request_timeout=settings.request_timeout)
    return _schedule(fresh)


def _find_schedule(client: kfp.Client, settings: KfpSettings, namespace: str | None, id_or_name: str):
    experiment_id = _experiment_id(client, settings, namespace, create=False)
    found = [] if experiment_id is None else [
        r for r in _recurring_runs(client, settings, namespace, experiment_id)
        if id_or_name in (r.display_name, r.recurring_run_id)
    ]
    where = f"experiment '{settings.experiment}'" + (f" (namespace {namespace})" if namespace else "")
    if not found:
        raise ConfigError(f"no schedule named '{id_or_name}' in {where}; 'driftloop schedule list' shows them")
    if len(found) > 1:
        ids = ", ".join(r.recurring_run_id for r in found)
        raise ConfigError(f"{len(found)} schedules are named '{id_or_name}' in {where}; use an id: {ids}")
    return found[0]


def _recurring_runs(client: kfp.Client, settings: KfpSettings, namespace: str | None, experiment_id: str):
    api = client.recurring_runs
    # KFP authorises a list by experiment through the experiment's namespace, so the id is enough.
    return _pages(settings, "list schedules", api.recurring_run_service_list_recurring_runs, "recurring_runs",
                  experiment_id=experiment_id)


def _schedule(run) -> Schedule:
    trigger = run.trigger
    if trigger is not None and trigger.cron_schedule is not None:
        described = f"cron {trigger.cron_schedule.cron}"
    elif trigger is not None and trigger.periodic_schedule is not None:
        described = f"every {_duration(int(trigger.periodic_schedule.interval_second or 0))}"
    else:
        described = "?"
    enabled = (run.status == "ENABLED") if run.status not in (None, "STATUS_UNSPECIFIED") else run.mode == "ENABLE"
    return Schedule(
        schedule_id=run.recurring_run_id, name=run.display_name, enabled=enabled, trigger=described,
        max_concurrency=int(run.max_concurrency or 0), no_catchup=bool(run.no_catchup),
        experiment_id=run.experiment_id, pipeline_version_id=_version_id(run),
        created_at=run.created_at.isoformat() if run.created_at else None,
    )


def _version_id(run) -> str | None:
    reference = run.pipeline_version_reference
    return (reference.pipeline_version_id if reference else None) or run.pipeline_version_id


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# --- cron -------------------------------------------------------------------------------------------

_CRON_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31),
                ("month", 1, 12), ("day of week", 0, 6))
_CRON_NAMES = {
    "month": {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())},
    "day of week": {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())},
}
_CRON_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def to_kfp_cron(expression: str) -> str:
    """Checks a cron expression and returns it in the six-field form KFP's scheduler reads.

    KFP parses cron with a leading seconds field, so standard five-field cron gets ``0`` prepended:
    passed through as is, ``0 3 * * *`` would mean minute 3 of every hour.

    Raises:
        ConfigError: The expression is not valid cron.
    """
    text = " ".join(expression.split())
    if text.lower() in _CRON_DESCRIPTORS:
        return text.lower()
    fields = text.split(" ") if text else []
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise ConfigError(f"cron expression '{expression}' needs 5 fields (minute hour day-of-month month "
                          f"day-of-week), or 6 with seconds first; it has {len(fields)}")
    for value, (label, low, high) in zip(fields, _CRON_FIELDS):
        problem = _cron_field_problem(value, label, low, high)
        if problem:
            raise ConfigError(f"cron expression '{expression}': {label} '{value}' {problem}")
    return " ".join(fields)


def _cron_field_problem(value: str, label: str, low: int, high: int) -> str | None:
    names = _CRON_NAMES.get(label, {})

    def number(text: str) -> int | None:
        if text.isdigit():
            return int(text)
        return names.get(text.upper())

    for item in value.split(","):
        span, slash, step = item.partition("/")
        if slash and not (step.isdigit() and int(step) > 0):
            return "has a step that is not a positive number"
        if span in ("*", "?"):
            continue
        start_text, dash, end_text = span.partition("-")
        start, end = number(start_text), number(end_text) if dash else None
        if start is None or (dash and end is None):
            return "is not a number, range or list"
        if not low <= start <= high or (end is not None and not start <= end <= high):
            return f"is outside {low}-{high}"
    return None


# --- pipeline, version, experiment ------------------------------------------------------------------

def pipeline_version_name(package: bytes) -> str:
    """The version name for a compiled pipeline: package version plus a hash of the IR."""
    return f"{__version__}-{hashlib.sha256(package).hexdigest()[:12]}"


@contextlib.contextmanager
def _compiled_pipeline(image: str) -> Iterator[tuple[Path, str]]:
    """Compiles the cluster pipeline (every step on ``image``) into a temporary file; yields its path and
    version name."""
    from driftloop.pipelines.ct_pipeline import compile_ct_pipeline

    with tempfile.TemporaryDirectory(prefix="driftloop-kfp-") as directory:
        path = Path(directory) / "ct_pipeline.yaml"  # KFP's upload reads the format from the suffix
        with _COMPILE_LOCK:
            compile_ct_pipeline(path, image)
        yield path, pipeline_version_name(path.read_bytes())


def _pipeline_version(client: kfp.Client, settings: KfpSettings, namespace: str | None, package: Path,
                      version_name: str) -> tuple[str, str, bool]:
    """Finds or uploads the pipeline version; returns (pipeline id, version id, reused)."""
    pipeline_id = _pipeline_id(client, settings, namespace)
    found = _find_version(client, settings, pipeline_id, version_name)
    if found:
        return pipeline_id, found, True
    try:
        with _kfp_errors(settings, "upload the pipeline version"):
            uploaded = client.pipeline_uploads.upload_pipeline_version(
                str(package), name=version_name, pipelineid=pipeline_id,
                description=f"driftloop {__version__} continuous-training pipeline",
                _request_timeout=settings.request_timeout)
    except _Conflict:  # another submitter uploaded the same version a moment ago
        found = _find_version(client, settings, pipeline_id, version_name)
        if found:
            return pipeline_id, found, True
        raise
    return pipeline_id, _required(uploaded.pipeline_version_id, "a pipeline version id", settings), False


def _pipeline_id(client: kfp.Client, settings: KfpSettings, namespace: str | None) -> str:
    from driftloop.pipelines.ct_pipeline import PIPELINE_NAME

    found = _find_pipeline(client, settings, namespace, PIPELINE_NAME)
    if found:
        return found
    # Created empty, then given versions: an upload of a whole pipeline would add a first version named
    # after the pipeline, which a later submission of the same IR could not recognise.
    body = _models().V2beta1Pipeline(name=PIPELINE_NAME, display_name=PIPELINE_NAME, namespace=namespace,
                                     description="driftloop continuous training")
    try:
        with _kfp_errors(settings, f"create pipeline {PIPELINE_NAME}"):
            created = client.pipelines.pipeline_service_create_pipeline(
                body, _request_timeout=settings.request_timeout)
    except _Conflict:
        found = _find_pipeline(client, settings, namespace, PIPELINE_NAME)
        if found:
            return found
        raise
    return _required(created.pipeline_id, "a pipeline id", settings)


def _find_pipeline(client: kfp.Client, settings: KfpSettings, namespace: str | None, name: str) -> str | None:
    kwargs = {"namespace": namespace} if namespace else {}
    pipelines = _pages(settings, "list pipelines", client.pipelines.pipeline_service_list_pipelines, "pipelines",
                       filter=_name_filter(name), **kwargs)
    return next((p.pipeline_id for p in pipelines if name in (p.display_name, p.name)), None)


def _find_version(client: kfp.Client, settings: KfpSettings, pipeline_id: str, name: str) -> str | None:
    versions = _pages(settings, "list pipeline versions", client.pipelines.pipeline_service_list_pipeline_versions,
                      "pipeline_versions", pipeline_id=pipeline_id, filter=_name_filter(name))
    return next((v.pipeline_version_id for v in versions if name in (v.display_name, v.name)), None)


def _experiment_id(client: kfp.Client, settings: KfpSettings, namespace: str | None, create: bool) -> str | None:
    found = _find_experiment(client, settings, namespace)
    if found or not create:
        return found
    body = _models().V2beta1Experiment(display_name=settings.experiment, namespace=namespace,
                                       description="driftloop continuous-training runs")
    try:
        with _kfp_errors(settings, f"create experiment '{settings.experiment}'"):
            created = client.experiments.experiment_service_create_experiment(
                body, _request_timeout=settings.request_timeout)
    except _Conflict:
        found = _find_experiment(client, settings, namespace)
        if found:
            return found
        raise
    return _required(created.experiment_id, "an experiment id", settings)


def _find_experiment(client: kfp.Client, settings: KfpSettings, namespace: str | None) -> str | None:
    kwargs = {"namespace": namespace} if namespace else {}
    experiments = _pages(settings, "list experiments", client.experiments.experiment_service_list_experiments,
                         "experiments", filter=_name_filter(settings.experiment), **kwargs)
    return next((e.experiment_id for e in experiments if e.display_name == settings.experiment), None)


def _name_filter(name: str) -> str:
    # The v2beta1 filter is a JSON-serialised Filter message; the server matches, we re-check exactly.
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def _cluster_arguments(params: CTParams, registry_uri: str | None) -> dict:
    """The run's parameters; refuses what a pod could not read."""
    registry_uri = registry_uri or params.registry_uri
    if not params.data_uri.startswith("s3://"):
        raise ConfigError(f"the cluster pipeline reads data from s3:// URIs; '{params.data_uri}' is not one "
                          f"(upload it to MinIO/S3 first)")
    if not registry_uri.startswith("s3://"):
        raise ConfigError(f"the cluster pipeline needs an s3:// registry; '{registry_uri}' is not one")
    return params.with_values(registry_uri=registry_uri).arguments()


# --- the client and its errors ------------------------------------------------------------------------

class _Conflict(KfpApiError):
    """409: something with that name was created concurrently."""


def _connect(settings: KfpSettings) -> kfp.Client:
    """A new client for these settings (clients are not shared between threads)."""
    client_class = _client_class()
    # kfp.Client warns on every construction that it needs KFP >= 2.0.0-beta.2; we require that anyway.
    # (Set each time: a caller's warnings.catch_warnings may have dropped it; an identical filter is replaced.)
    warnings.filterwarnings("ignore", message="This client only works with Kubeflow Pipeline",
                            category=FutureWarning)
    with _kfp_errors(settings, "connect"):
        return client_class(settings)


@functools.cache
def _client_class() -> type:
    import kfp
    from kfp.client import ServiceAccountTokenVolumeCredentials

    class QuietClient(kfp.Client):
        """kfp.Client that fails fast, keeps the namespace in memory and never writes ~/.config/kfp."""

        def __init__(self, settings: KfpSettings) -> None:
            self._driftloop_timeout = settings.request_timeout
            credentials = ServiceAccountTokenVolumeCredentials(settings.token_path) if settings.token_path else None
            super().__init__(host=settings.host, namespace=settings.namespace or "kubeflow",
                             existing_token=settings.token, credentials=credentials,
                             ui_host=settings.ui_host or settings.host, ssl_ca_cert=settings.ssl_ca_cert)
            if settings.namespace:  # kfp ignores an explicit namespace that happens to be "kubeflow"
                self._context_setting["namespace"] = settings.namespace

        def get_kfp_healthz(self, sleep_duration: int = 5):
            # One attempt with a timeout, where kfp retries five times, 5 s apart, logging tracebacks.
            return self._healthz_api.healthz_service_get_healthz(_request_timeout=self._driftloop_timeout)

        def set_user_namespace(self, namespace: str) -> None:
            # kfp would also persist it to ~/.config/kfp/context.json: a side effect nobody asked for.
            self._context_setting["namespace"] = namespace

    return QuietClient


def _namespace(client: kfp.Client, settings: KfpSettings) -> str | None:
    # Explicit, else what kfp found: ~/.config/kfp/context.json or, in a multi-user pod, the pod's namespace.
    return settings.namespace or client.get_user_namespace() or None


def _models():
    import kfp_server_api

    return kfp_server_api.models


def _pages(settings: KfpSettings, action: str, call: Callable, attribute: str, **kwargs) -> list:
    items, token = [], ""
    while True:
        with _kfp_errors(settings, action):
            page = call(page_token=token, page_size=_PAGE_SIZE, _request_timeout=settings.request_timeout,
                        **kwargs)
        items.extend(getattr(page, attribute, None) or [])
        token = getattr(page, "next_page_token", None)
        if not token:
            return items


def _required(value: str | None, what: str, settings: KfpSettings) -> str:
    # A login page or proxy answering 200 deserialises into an empty model rather than failing.
    if not value:
        raise ConfigError(f"{settings.host} answered without {what}: is it the Kubeflow Pipelines API "
                          f"(and not a login page)? Check --host and the token")
    return value


@contextlib.contextmanager
def _kfp_errors(settings: KfpSettings, action: str) -> Iterator[None]:
    """Turns transport and API failures into one-line DriftloopErrors that carry no credentials."""
    import kfp_server_api
    import urllib3

    try:
        yield
    except kfp_server_api.ApiException as exc:
        raise _api_error(settings, action, exc) from None
    except urllib3.exceptions.HTTPError as exc:
        raise UnavailableError(f"cannot reach Kubeflow Pipelines at {settings.host}: {_reason(exc)}") from None
    except OSError as exc:  # the token file vanished or is unreadable
        raise ConfigError(f"cannot {action} on Kubeflow Pipelines: {exc.strerror or exc}") from None


def _api_error(settings: KfpSettings, action: str, exc) -> DriftloopError:
    status = exc.status or 0
    message = _server_message(exc.body)
    detail = f": {message}" if message else ""
    if status == 0:
        return UnavailableError(f"cannot reach Kubeflow Pipelines at {settings.host}: {exc.reason}")
    if status == 401:
        return ConfigError(f"Kubeflow Pipelines at {settings.host} needs a valid token to {action} (401){detail}; "
                           f"set DRIFTLOOP_KFP_TOKEN")
    if status == 403:
        hint = f"may you use namespace '{settings.namespace}'?" if settings.namespace else \
            "multi-user Kubeflow needs --namespace"
        return ConfigError(f"Kubeflow Pipelines at {settings.host} does not allow you to {action} (403){detail}; "
                           f"{hint}")
    if status == 404:
        return ConfigError(f"cannot {action}: not found on Kubeflow Pipelines at {settings.host} (404){detail}")
    if status == 409:
        return _Conflict(f"cannot {action}: it exists already (409){detail}")
    if 400 <= status < 500:
        return ConfigError(f"Kubeflow Pipelines refused to {action} ({status}){detail}")
    return KfpApiError(f"Kubeflow Pipelines failed to {action} ({status}){detail}")


def _server_message(body: Any) -> str:
    """The error text of a KFP (grpc-gateway) error body, on one line and short."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    text = ""
    if isinstance(data, dict):
        text = str(data.get("message") or data.get("error_message") or data.get("error") or "")
    elif isinstance(body, str) and "<html" not in body.lower():
        text = body
    text = " ".join(text.split())
    return text[:300] + ("…" if len(text) > 300 else "")


def _reason(exc: Exception) -> str:
    """'Connection refused', 'timed out', … from urllib3's nested errors."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    if match := re.search(r"\[Errno -?\d+\] (.+)$", text):
        return match.group(1).strip()
    if "timed out" in text.lower():
        return "timed out"
    return text.split(": ", 1)[-1].strip() or type(reason).__name__


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
