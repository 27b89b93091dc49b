"""The drift monitor's configuration: one YAML (or JSON) file, every key optional, unknown keys refused.

Example (the cluster's ConfigMap in manifests/base holds the same)::

    model: churn
    registry: s3://driftloop/registry
    store: /var/lib/driftloop/monitor
    window: {rows: 1000, seconds: 600}
    drift: {num_method: wasserstein, cat_method: jensenshannon, drift_share: 0.3, max_rows: 5000}
    trigger: {m: 3, n: 5, cooldown_seconds: 3600, max_failures: 3, quality_drop: 0.05, min_labels: 50}
    retrain: {runner: kfp, kfp_host: http://ml-pipeline.kubeflow:8888, recent_rows: 5000,
              data_dir: s3://driftloop/retrain, pipeline_params: {estimator: xgboost}}
    auth: {network_guard: true}     # manifests/components/network-guard admits only the right callers
    max_body_bytes: 8388608
    retention: {rows_days: 90, rows_bytes: 3221225472, labels_days: 90, labels_bytes: 536870912,
                reports_days: 30, reports_bytes: 536870912}
    kserve_store: {uri: s3://driftloop/payload-logs, poll_seconds: 5}   # KServe's logger.storage, polled
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from driftloop.drift import DriftConfig
from driftloop.errors import ConfigError
from driftloop.http_guard import DEFAULT_MAX_BODY_BYTES
from driftloop.logger_storage import check_uri


@dataclass(frozen=True)
class WindowConfig:
    """A window closes after ``rows`` rows or ``seconds`` seconds, whichever comes first.

    A window closed by time with fewer than ``min_rows`` rows is carried into the next one: too few
    rows give noisy tests.
    """

    rows: int = 1000
    seconds: float = 600.0
    min_rows: int = 100

    def __post_init__(self) -> None:
        if self.rows < 1 or self.seconds <= 0 or self.min_rows < 1:
            raise ConfigError("window rows and min_rows must be >= 1 and seconds > 0")


@dataclass(frozen=True)
class TriggerConfig:
    """When drift (or a quality drop) becomes a retrain.

    Attributes:
        m, n: Retrain when at least ``m`` of the last ``n`` windows show the signal.
        cooldown_seconds: No new trigger this long after the previous one started.
        max_failures: After this many consecutive failed or rolled-back retrains, stop triggering.
        quality_drop: How much worse a window's realised quality may be than the value the serving version is
            held to before it is a signal, in the task's quality metric (``tasks.QUALITY_METRIC``): for
            classification an absolute drop of accuracy (0.05: 0.90 → below 0.85), for regression a relative rise
            of RMSE (0.05: more than 5 % above).
        min_labels: Labelled rows a window needs before its quality counts.
    """

    m: int = 3
    n: int = 5
    cooldown_seconds: float = 3600.0
    max_failures: int = 3
    quality_drop: float = 0.05
    min_labels: int = 50

    def __post_init__(self) -> None:
        if not 1 <= self.m <= self.n:
            raise ConfigError(f"trigger needs 1 <= m <= n, got m={self.m}, n={self.n}")
        if self.cooldown_seconds < 0 or self.max_failures < 1:
            raise ConfigError("trigger cooldown must be >= 0 and max_failures >= 1")


@dataclass(frozen=True)
class RetrainConfig:
    """How a trigger becomes a CT run.

    Attributes:
        runner: "local" (a ``driftloop run`` subprocess on kfp.local) or "kfp" (a run on Kubeflow
            Pipelines through kfp.Client); "none" records triggers without starting runs.
        kfp_host, kfp_namespace, experiment: Where cluster runs go.
        recent_rows: Most recent labelled traffic rows added to the reference data.
        since_signal: Take recent rows only from the first window that signalled onwards (the world as
            it is now), rather than any recent rows.
        reference_rows: Rows of the reference data kept (seeded sample); None keeps all. Fewer give
            the new world more weight.
        data_dir: Where the assembled training table is written (a directory or s3:// prefix).
        reference_uri: Training data to start from; default: the serving version's own training data.
        holdback_rows: The newest labelled rows held back as the recent slice (never trained on): the pipeline
            chooses how much the new world weighs on them and the gate compares challenger and champion there.
            At most a third of the labelled rows is held back, and none when that leaves fewer than
            ``min_holdback_rows``; 0 turns drift-aware retraining off.
        pipeline_params: Extra CT pipeline parameters (estimator, canary_percent, rollout_* …).
    """

    runner: str = "local"
    kfp_host: str = ""
    kfp_namespace: str = ""
    experiment: str = "driftloop"
    recent_rows: int = 5000
    since_signal: bool = True
    reference_rows: int | None = None
    data_dir: str = ""
    reference_uri: str = ""
    holdback_rows: int = 500
    min_holdback_rows: int = 100
    pipeline_params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.runner not in ("local", "kfp", "none"):
            raise ConfigError(f"retrain runner must be local, kfp or none, got '{self.runner}'")
        if self.runner == "kfp" and not self.kfp_host:
            raise ConfigError("retrain runner 'kfp' needs kfp_host")
        if self.runner == "kfp" and not self.data_dir.startswith("s3://"):
            raise ConfigError("retrain runner 'kfp' needs an s3:// data_dir: pipeline pods cannot read the monitor's disk")
        if self.recent_rows < 0 or self.holdback_rows < 0 or self.min_holdback_rows < 1:
            raise ConfigError("retrain recent_rows and holdback_rows must be >= 0, min_holdback_rows >= 1")
        # Checked now, against the CT parameters' one definition: a mistyped key found only when a retrain
        # starts would leave the trigger in flight with nothing running.
        from driftloop.ct_params import SET_PER_RETRAIN, check_overrides

        try:
            object.__setattr__(self, "pipeline_params", check_overrides(self.pipeline_params, SET_PER_RETRAIN))
        except ConfigError as exc:
            raise ConfigError(f"retrain.pipeline_params: {exc}") from None


@dataclass(frozen=True)
class AuthConfig:
    """Who may post to the monitor (tokens come from the environment: ``driftloop.http_guard``).

    Attributes:
        network_guard: The operator declares that the network admits only the right callers to the write
            endpoints (manifests/components/network-guard); with it the monitor may bind beyond loopback
            without a token for each of them.
    """

    network_guard: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.network_guard, bool):
            raise ConfigError(f"auth.network_guard must be true or false, got {self.network_guard!r}")


GIB = 1024 ** 3


@dataclass(frozen=True)
class RetentionConfig:
    """How much the monitor keeps on disk. The tick applies it about once a minute; null lifts a limit.
    The defaults (4 GiB at most, plus the ingest log's few segments) fit the 5 GiB volume of the manifests.

    Attributes:
        rows_days: Logged rows received more than this many days ago are deleted (whole days).
        rows_bytes: Then the oldest days go while the rows take more than this (the newest day stays).
        labels_days: Labels that arrived more than this many days ago are dropped (a label whose row is
            gone teaches nothing). Label parts are merged into one whenever there are many.
        labels_bytes: Then the oldest labels go while their parts take more than this.
        reports_days, reports_bytes: The same for the windows' HTML reports (a few MB each).
    """

    rows_days: float | None = 90.0
    rows_bytes: int | None = 3 * GIB
    labels_days: float | None = 90.0
    labels_bytes: int | None = GIB // 2
    reports_days: float | None = 30.0
    reports_bytes: int | None = GIB // 2

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
                raise ConfigError(f"retention {name} must be a positive number or null, got {value!r}")


@dataclass(frozen=True)
class KServeStoreConfig:
    """Payload logs KServe's agent writes to object storage (the InferenceService's ``logger.url: s3://…`` with
    ``logger.storage``), read instead of, or besides, events posted to ``/events`` (monitor/kserve_store.py).

    Attributes:
        uri: The logger's ``s3://bucket/prefix`` (the ``logger_storage`` CT parameter); every object under it is
            read once. "" turns it off.
        poll_seconds: How often the prefix is listed.
        forget_after_seconds: Objects last modified this long before the newest one seen are not looked at
            again (an object must be listed within this time of being written).
    """

    uri: str = ""
    poll_seconds: float = 5.0
    forget_after_seconds: float = 3600.0

    def __post_init__(self) -> None:
        problem = check_uri(self.uri) if self.uri else None  # the logger_storage CT parameter's rule
        if problem:
            raise ConfigError(f"kserve_store uri {problem}")
        if self.poll_seconds <= 0 or self.forget_after_seconds <= 0:
            raise ConfigError("kserve_store poll_seconds and forget_after_seconds must be > 0")


@dataclass(frozen=True)
class MonitorConfig:
    """Everything the monitor needs; see the module docstring for the file format."""

    model: str = "churn"
    registry: str = ""
    store: str = ""
    window: WindowConfig = WindowConfig()
    drift: DriftConfig = DriftConfig(max_rows=5000)  # drift_share: drift_defaults.DRIFT_SHARE
    trigger: TriggerConfig = TriggerConfig()
    retrain: RetrainConfig = RetrainConfig()
    report_rows: int = 2000  # rows per side profiled for the plots of each window's page (not for its numbers)
    auth: AuthConfig = AuthConfig()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # larger request bodies are refused (413)
    retention: RetentionConfig = RetentionConfig()
    kserve_store: KServeStoreConfig = KServeStoreConfig()

    def __post_init__(self) -> None:
        if isinstance(self.max_body_bytes, bool) or not isinstance(self.max_body_bytes, int) \
                or self.max_body_bytes < 1024:
            raise ConfigError(f"max_body_bytes must be a whole number of at least 1024, got {self.max_body_bytes!r}")

    @classmethod
    def from_dict(cls, values: dict) -> MonitorConfig:
        sections = {"window": WindowConfig, "drift": DriftConfig, "trigger": TriggerConfig, "retrain": RetrainConfig,
                    "auth": AuthConfig, "retention": RetentionConfig, "kserve_store": KServeStoreConfig}
        kwargs = {}
        for key, value in (values or {}).items():
            if key in sections:
                kwargs[key] = _build(sections[key], value, key)
            elif key in {f.name for f in dataclasses.fields(cls)}:
                kwargs[key] = value
            else:
                raise ConfigError(f"unknown monitor setting '{key}'")
        if "drift" in kwargs:  # a partial drift section keeps the monitor's defaults for the rest
            base = dataclasses.asdict(cls.drift)
            kwargs["drift"] = _build(DriftConfig, {**base, **values["drift"]}, "drift")
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | Path) -> MonitorConfig:
        """Reads a YAML or JSON file."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read monitor config {path}: {exc.strerror}") from None
        try:
            values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"monitor config {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                              f"{str(exc).splitlines()[0]}") from None
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"monitor config {path} must be a mapping of settings")
        return cls.from_dict(values or {})

    def with_overrides(self, **values) -> MonitorConfig:
        """A copy with top-level settings replaced (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})


def _build(kind: type, values: dict, section: str):
    if not isinstance(values, dict):
        raise ConfigError(f"monitor setting '{section}' must be a mapping")
    known = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown monitor setting(s) in '{section}': {', '.join(unknown)}")
    try:
        return kind(**{k: _coerce(known[k].type, v) for k, v in values.items()})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"monitor setting '{section}' has a bad value: {exc}") from None


def _coerce(annotation: str, value):
    """YAML gives ints where floats are meant and vice versa; settle them by the field's type."""
    if value is None:
        return None
    if annotation == "int":
        return int(value)
    if annotation in ("float", "float | None"):
        return float(value)
    return value
