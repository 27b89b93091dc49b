"""A pod as local processes: KServe's storage initializer, then ``kserve-container`` as a real process.

What Kubernetes and KServe's pod mutator (kserve ``pkg/webhook/admission/pod/storage_initializer_injector.go``)
would do, on loopback:

- the annotation ``internal.serving.kserve.io/storage-initializer-sourceuri`` adds the init container: the
  URI's objects are downloaded (``storage_initializer.py``) into a fresh directory that stands for
  ``/mnt/models``; a failure leaves the pod in ``Init:Error`` with the error as the init container's
  termination message (the injector sets ``terminationMessagePolicy: FallbackToLogsOnError``);
- ``kserve-container`` runs with its command and args: ``/mnt/models`` becomes that directory, ``python`` the
  test's interpreter, ``--http_port=<n>`` a free port, and ``--grpc_port=<free port>`` is added when absent
  (KServe's model server opens gRPC on 8081 by default). Each pod has its own network namespace in a cluster;
  here all share 127.0.0.1, so ``--host=0.0.0.0`` becomes ``--host=127.0.0.1``. The process inherits the
  test's environment plus the container's ``env`` values and the pod's annotations as a downward-API file
  ``<pod dir>/podinfo/annotations``;
- it is ready when its readiness probe answers 200: the container's ``readinessProbe.httpGet.path`` if it has
  one, else ``GET /v2/health/ready`` (KServe's model server answers it once every model is loaded);
- a process that exits is a terminated container with its exit code and, as ``FallbackToLogsOnError`` gives,
  the last 80 lines / 2048 bytes of its output as the termination message. Containers are not restarted
  (Kubernetes would, into CrashLoopBackOff); a pod that is not ready within the progress deadline is stopped.
"""

from __future__ import annotations

import enum
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from driftloop.storage import S3Settings

from . import storage_initializer
from .runtimes import CONTAINER_NAME, MODEL_MOUNT, STORAGE_URI_ANNOTATION

TERMINATION_LOG_BYTES, TERMINATION_LOG_LINES = 2048, 80  # kubelet's FallbackToLogsOnError limits
DEFAULT_READINESS_PATH = "/v2/health/ready"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Phase(enum.Enum):
    INITIALIZING = "Initializing"      # storage initializer running
    INIT_FAILED = "InitFailed"         # Init:Error
    STARTING = "Starting"              # kserve-container running, not ready yet
    READY = "Ready"
    FAILED = "Failed"                  # kserve-container terminated with an error
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    TERMINATED = "Terminated"          # stopped by its owner


@dataclass
class Termination:
    """``containerStatuses[].state.terminated`` of the container that failed."""

    container: str
    exit_code: int
    reason: str
    message: str


@dataclass
class Pod:
    """One pod of a Knative revision or a Deployment; ``start()`` runs it in a background thread."""

    name: str
    namespace: str
    template: dict                       # {"metadata": {labels, annotations}, "spec": {"containers": [...]}}
    workdir: Path
    s3: S3Settings | None
    on_change: Callable[[Pod], None]
    progress_deadline: float
    extra_env: dict[str, str] = field(default_factory=dict)
    phase: Phase = Phase.INITIALIZING
    port: int | None = None
    termination: Termination | None = None
    started_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self.directory = self.workdir / self.name
        self.models_dir = self.directory / "models"
        self.log_path = self.directory / "kserve-container.log"
        self._thread = threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True)

    # -- what the owner reads ------------------------------------------------------------------------------------

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.template["metadata"].get("annotations") or {})

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.template["metadata"].get("labels") or {})

    @property
    def ready(self) -> bool:
        return self.phase is Phase.READY

    @property
    def running(self) -> bool:
        """The kserve-container process exists (so its /metrics can be scraped)."""
        return self.phase in (Phase.STARTING, Phase.READY)

    @property
    def settled(self) -> bool:
        return self.phase not in (Phase.INITIALIZING, Phase.STARTING)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def terminate(self) -> None:
        """Stops the pod (graceful SIGTERM, then SIGKILL after 5 s); idempotent."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=5)
            except (ProcessLookupError, PermissionError):
                pass
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if self.phase not in (Phase.TERMINATED,):
            self._set(Phase.TERMINATED, notify=False)
        storage_initializer.clear(self.models_dir)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _set(self, phase: Phase, notify: bool = True) -> None:
        with self._lock:
            if self.phase is Phase.TERMINATED:
                return
            self.phase = phase
        if notify and not self._stopping.is_set():
            self.on_change(self)

    # -- the pod's life ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._live()
        except Exception as exc:  # noqa: BLE001 - an emulator bug must fail the pod, not hang it
            self.termination = Termination(CONTAINER_NAME, 128, "EmulatorError", f"{type(exc).__name__}: {exc}")
            self._set(Phase.FAILED)

    def _live(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.models_dir.mkdir(exist_ok=True)
        podinfo = self.directory / "podinfo"
        podinfo.mkdir(exist_ok=True)
        (podinfo / "annotations").write_text(
            "".join(f'{k}="{v}"\n' for k, v in sorted(self.annotations.items())))
        uri = self.annotations.get(STORAGE_URI_ANNOTATION)
        if uri:
            try:
                storage_initializer.download(uri, self.models_dir, self.s3)
            except storage_initializer.StorageError as exc:
                self.termination = Termination("storage-initializer", 1, "Error", str(exc)[-TERMINATION_LOG_BYTES:])
                self._set(Phase.INIT_FAILED)
                # the init container crash-loops; only the progress deadline makes the pod count as failed
                remaining = self.started_at + self.progress_deadline - time.monotonic()
                if not self._stopping.wait(max(remaining, 0)):
                    self._set(Phase.DEADLINE_EXCEEDED)
                return
        if self._stopping.is_set():
            return
        try:
            self._launch()
        except OSError as exc:  # e.g. the command does not exist: the container never starts
            self.termination = Termination(CONTAINER_NAME, 128, "StartError", str(exc))
            self._set(Phase.FAILED)
            return
        self._set(Phase.STARTING)
        self._wait_ready()

    def _container(self) -> dict:
        containers = self.template["spec"]["containers"]
        return next((c for c in containers if c.get("name") == CONTAINER_NAME), containers[0])

    def _launch(self) -> None:
        container = self._container()
        self.port = free_port()
        argv = [self._localise(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        argv = [f"--http_port={self.port}" if a.startswith("--http_port=") else a for a in argv]
        # a pod's 0.0.0.0 is its own network namespace; here it would be the host's, so stay on loopback
        argv = ["--host=127.0.0.1" if a == "--host=0.0.0.0" else a for a in argv]
        if any(a.startswith("--http_port=") for a in argv) and not any(a.startswith("--grpc_port") for a in argv):
            argv.append(f"--grpc_port={free_port()}")
        env = {**os.environ, **self.extra_env}
        for item in container.get("env") or []:
            if "value" in item:  # valueFrom (Secrets, fieldRef) is not emulated
                env[item["name"]] = self._localise(item["value"])
        env["PORT"] = str(self.port)  # Knative sets PORT to the container port; here that port is moved
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(argv, cwd=self.directory, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        with self._lock:
            self._process = process

    def _localise(self, value: str) -> str:
        return value.replace(MODEL_MOUNT, str(self.models_dir))

    def _readiness_path(self) -> str:
        probe = (self._container().get("readinessProbe") or {}).get("httpGet") or {}
        return probe.get("path") or DEFAULT_READINESS_PATH

    def _wait_ready(self) -> None:
        deadline = self.started_at + self.progress_deadline
        path = self._readiness_path()
        process = self._process
        while not self._stopping.is_set():
            if process.poll() is not None:
                return self._failed(process.returncode)
            if _probe(f"{self.url}{path}"):
                self._set(Phase.READY)
                break
            if time.monotonic() > deadline:
                self._set(Phase.DEADLINE_EXCEEDED)
                self.terminate_process()
                return
            time.sleep(0.05)
        while not self._stopping.is_set():  # a ready container that exits has crashed
            try:
                code = process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
            if not self._stopping.is_set():
                self._failed(code)
            return

    def terminate_process(self) -> None:
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def _failed(self, exit_code: int) -> None:
        reason = "Completed" if exit_code == 0 else "Error"
        self.termination = Termination(CONTAINER_NAME, exit_code, reason, self.log_tail())
        self._set(Phase.FAILED)

    def log_tail(self) -> str:
        """The last 80 lines or 2048 bytes of the container's output, whichever is smaller."""
        try:
            data = self.log_path.read_bytes()[-TERMINATION_LOG_BYTES:]
        except OSError:
            return ""
        lines = data.decode(errors="replace").splitlines()[-TERMINATION_LOG_LINES:]
        return "\n".join(lines).strip()


def _probe(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
