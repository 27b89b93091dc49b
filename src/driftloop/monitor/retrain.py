"""A trigger's retrain: assemble the training table, then start the CT pipeline through a runner.

The table is the serving version's training data plus the most recent labelled live traffic,
validated against the version's spec and profile like any other training data: poisoned or
out-of-range traffic blocks the retrain with the checker's reason instead of reaching a model.
Runners: ``local`` (a CT run on kfp.local in a subprocess) and ``kfp`` (a run on Kubeflow Pipelines).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from driftloop import storage
from driftloop.ct_params import CTParams
from driftloop.data import DatasetSpec, coerce_to_spec, load_table
from driftloop.errors import ConfigError, DataError
from driftloop.monitor.config import RetrainConfig
from driftloop.monitor.labels import LabelStore, normalise_label, row_key
from driftloop.monitor.store import RowStore
from driftloop.profile import ReferenceProfile
from driftloop.registry import CANARY, PRODUCTION, ModelRegistry
from driftloop.validation import validate_table


@dataclass
class TrainingTable:
    uri: str
    n_reference: int
    n_recent: int
    reference_uri: str


def assemble_training_data(registry: ModelRegistry, store: RowStore, labels: LabelStore, model: str, version: int,
                           config: RetrainConfig, key: str, default_dir: Path,
                           since: pd.Timestamp | None = None) -> TrainingTable:
    """Reference data + recent labelled traffic (received at or after ``since``), validated, written as
    Parquet; returns where.

    Raises:
        DataValidationError: the recent traffic fails validation (the retrain is blocked).
        DataError: no labelled traffic yet, or the reference data cannot be read.
    """
    spec = DatasetSpec.from_json(registry.read_file(model, version, "spec.json").decode())
    profile = ReferenceProfile.from_json(registry.read_file(model, version, "profile.json").decode())
    reference_uri = config.reference_uri or registry.get_version(model, version).lineage.get("data_uri", "")
    if not reference_uri:
        raise ConfigError(f"{model} v{version} records no training data URI; set retrain.reference_uri")
    reference, _ = load_table(reference_uri)
    if config.reference_rows is not None and len(reference) > config.reference_rows:
        reference = reference.sample(n=config.reference_rows, random_state=0)
    recent = recent_labelled_rows(store, labels, model, spec, config.recent_rows, since)
    if recent.empty:
        raise DataError("no labelled live traffic yet: post labels to the monitor's /feedback before retraining")
    # The same checks as the pipeline's first step, against the serving version's profile.
    recent, _, _ = validate_table(recent, spec, profile)
    columns = [c for c in [spec.id_column, spec.timestamp_column, *spec.feature_names, spec.target] if c]
    combined = pd.concat([_bookkeeping(coerce_to_spec(reference, spec), spec)[columns], _bookkeeping(recent, spec)[columns]],
                         ignore_index=True)
    buffer = io.BytesIO()
    combined.to_parquet(buffer, index=False)
    base = config.data_dir.rstrip("/") if config.data_dir else str(default_dir)
    uri = storage.write_bytes(f"{base}/{model}/retrain-{key}.parquet", buffer.getvalue())
    return TrainingTable(uri, len(reference), len(recent), reference_uri)


def _bookkeeping(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Ids as text and times as UTC timestamps, so file rows and logged rows share one column type."""
    frame = frame.copy()
    if spec.id_column:
        frame[spec.id_column] = frame[spec.id_column].astype(str)
    if spec.timestamp_column:
        frame[spec.timestamp_column] = pd.to_datetime(frame[spec.timestamp_column], utc=True, errors="coerce")
    return frame


def recent_labelled_rows(store: RowStore, labels: LabelStore, model: str, spec: DatasetSpec, limit: int,
                         since: pd.Timestamp | None = None) -> pd.DataFrame:
    """The newest ``limit`` logged rows of ``model`` that have a label, shaped like training data."""
    rows = store.read(model, since)  # parts and rows not yet written (they are safe in the ingest log)
    if rows.empty or limit == 0:
        return pd.DataFrame()
    rows = rows.sort_values("received_at")
    keys = pd.Series([row_key(e, r) for e, r in zip(rows["event_id"], rows["row"], strict=True)], index=rows.index)
    truth = labels.lookup(keys)
    rows = rows[truth.notna()].tail(limit)
    if rows.empty:
        return pd.DataFrame()
    classes = {normalise_label(c): c for c in spec.target_classes}
    out = rows[spec.feature_names].copy()
    out[spec.target] = truth[rows.index].map(lambda label: classes.get(label, label))
    if spec.id_column:  # the request id, as the caller knows it (with the row for batch requests)
        out[spec.id_column] = [e if r == 0 else f"{e}:{r}" for e, r in zip(rows["event_id"], rows["row"], strict=True)]
    if spec.timestamp_column:
        out[spec.timestamp_column] = rows["received_at"]
    return out.reset_index(drop=True)


PROMOTED, CANARY_SERVING, ROLLED_BACK, NOT_DEPLOYED = "promoted", "canary", "rolled-back", "not-deployed"
# Reserved for the approval policy: a version that passed its canary analysis and waits for a person.
PENDING_APPROVAL = "pending-approval"


def rollout_outcome(registry: ModelRegistry, model: str, version: int) -> str:
    """How a registered version's rollout ended, from the registry: promoted (production now, or before a
    later version replaced it), canary (still serving its share), rolled-back (aborted or failed to start),
    or not-deployed."""
    aliases = registry.aliases(model)
    if aliases.get(PRODUCTION) == version:
        return PROMOTED
    if aliases.get(CANARY) == version:
        return CANARY_SERVING
    for entry in reversed(registry.history(model)):
        if entry.action in ("rollout-abort", "rollout-failed") and version in (entry.from_version, entry.to_version):
            return ROLLED_BACK
        if entry.action == "promote" and entry.to_version == version:
            return PROMOTED
    return NOT_DEPLOYED


@dataclass
class RunOutcome:
    """How a retrain's run ended."""

    state: str  # "SUCCEEDED" | "FAILED"
    error: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StartedRun:
    """A run a runner started."""

    run_id: str  # what :meth:`Runner.attach` needs to follow it from another process
    url: str  # where a person looks at it


class Runner(Protocol):
    """The port through which a retrain becomes a CT run (local: kfp.local in a child process; kfp: KFP's API)."""

    def start(self, params: CTParams, key: str) -> StartedRun:
        """Starts the CT pipeline for the retrain ``key``."""

    def poll(self, key: str) -> RunOutcome | None:
        """None while the run goes on, then how it ended (once)."""

    def attach(self, key: str, run_id: str) -> bool:
        """Follows a run that an earlier monitor process started (it was killed or restarted meanwhile);
        False when the run cannot be found, and so never finishes as far as anyone can tell."""


class LocalRunner:
    """Runs the CT pipeline on kfp.local in a child process (``driftloop.runners.local_job``).

    The child outlives a monitor that is killed: it writes its summary file when it ends, and its pid file
    lets a restarted monitor tell a run still going from one that died with the machine.
    """

    def __init__(self, home: str | Path, registry_uri: str) -> None:
        self.home, self.registry_uri = Path(home), registry_uri
        self._runs: dict[str, tuple[subprocess.Popen, Path]] = {}
        self._attached: dict[str, tuple[int | None, Path]] = {}  # runs of an earlier process: pid, summary

    def _paths(self, key: str) -> tuple[Path, Path, Path]:
        jobs = self.home / "retrains"
        return jobs / f"{key}.params.json", jobs / f"{key}.summary.json", jobs / f"{key}.pid"

    def start(self, params: CTParams, key: str) -> StartedRun:
        params_path, summary_path, pid_path = self._paths(key)
        params_path.parent.mkdir(parents=True, exist_ok=True)
        params_path.write_text(json.dumps(asdict(params)))
        env = {**os.environ, "DRIFTLOOP_HOME": str(self.home), "DRIFTLOOP_REGISTRY": self.registry_uri}
        log = open(params_path.parent / f"{key}.log", "w")  # noqa: SIM115 - the child owns it for the run's lifetime
        process = subprocess.Popen([sys.executable, "-m", "driftloop.runners.local_job", str(params_path),
                                    str(summary_path)], env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        pid_path.write_text(str(process.pid))
        self._runs[key] = (process, summary_path)
        return StartedRun(f"local:{key}", f"local:{key}")

    def attach(self, key: str, run_id: str) -> bool:
        _, summary_path, pid_path = self._paths(key)
        if summary_path.exists():
            self._attached[key] = (None, summary_path)
            return True
        try:
            pid = int(pid_path.read_text())
        except (OSError, ValueError):
            return False
        if not _running(pid, str(summary_path)):
            return False
        self._attached[key] = (pid, summary_path)
        return True

    def poll(self, key: str) -> RunOutcome | None:
        if key in self._attached:
            pid, summary_path = self._attached[key]
            if not summary_path.exists() and pid is not None and _running(pid, str(summary_path)):
                return None
            del self._attached[key]
            return _summary(summary_path, "the run process ended without a summary")
        process, summary_path = self._runs[key]
        if process.poll() is None:
            return None
        del self._runs[key]
        return _summary(summary_path, f"the run process exited with code {process.returncode} without a summary")


def _summary(path: Path, missing: str) -> RunOutcome:
    if not path.exists():
        return RunOutcome("FAILED", missing)
    summary = json.loads(path.read_text())
    return RunOutcome(summary.get("state", "FAILED"), summary.get("error") or "")


def _running(pid: int, marker: str) -> bool:
    """Whether ``pid`` is a live (not zombie) process whose command line names ``marker`` (pids are reused)."""
    proc = Path(f"/proc/{pid}")
    try:
        if marker.encode() not in (proc / "cmdline").read_bytes():
            return False
        return (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class KfpRunner:
    """Starts the CT pipeline on Kubeflow Pipelines with the same client as ``driftloop submit``."""

    def __init__(self, config: RetrainConfig, registry_uri: str) -> None:
        from driftloop.kfp_submit import KfpSettings

        self.settings = KfpSettings.from_env(host=config.kfp_host, namespace=config.kfp_namespace or None,
                                             experiment=config.experiment)
        self.registry_uri = registry_uri
        self._runs: dict[str, str] = {}

    def start(self, params: CTParams, key: str) -> StartedRun:
        from driftloop.kfp_submit import submit_run

        run = submit_run(self.settings, params, self.registry_uri, run_name=f"driftloop-retrain-{key}")
        self._runs[key] = run.run_id
        return StartedRun(run.run_id, run.run_url or run.run_id)

    def attach(self, key: str, run_id: str) -> bool:
        if not run_id:
            return False
        self._runs[key] = run_id  # KFP keeps the run; polling it works from any process
        return True

    def poll(self, key: str) -> RunOutcome | None:
        from driftloop.kfp_submit import run_state

        state = run_state(self.settings, self._runs[key])
        if state not in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"):
            return None
        del self._runs[key]
        return RunOutcome("SUCCEEDED" if state == "SUCCEEDED" else "FAILED",
                          "" if state == "SUCCEEDED" else f"KFP run ended {state}")


def make_runner(config: RetrainConfig, home: Path, registry_uri: str) -> Runner | None:
    if config.runner == "kfp":
        return KfpRunner(config, registry_uri)
    if config.runner == "local":
        return LocalRunner(home, registry_uri)
    return None
