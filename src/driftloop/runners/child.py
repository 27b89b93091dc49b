"""A CT run on ``kfp.local`` in a child process (``python -m driftloop.runners.local_job``), watched by its caller.

The drift monitor starts its local retrains this way: kfp.local's global state and output capture stay away from
the monitor's server, and the run looks like any remote one (running, then a summary file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from driftloop.ct_params import CTParams
from driftloop.runners.base import RunOutcome, StartedRun


class ChildProcessRunner:
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


