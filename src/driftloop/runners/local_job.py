"""One CT run in a process of its own: ``python -m driftloop.runners.local_job PARAMS.json SUMMARY.json``.

The drift monitor starts retrains this way on the embedded default. A separate process keeps
kfp.local's global state and output capture away from the monitor's server, and lets the monitor
watch the run like any remote one (running, then a summary file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from driftloop.ct_params import CTParams
from driftloop.errors import DriftloopError
from driftloop.runners.local import run_ct_pipeline
from driftloop.settings import Settings


def main(params_path: str, summary_path: str) -> int:
    settings = Settings.resolve()
    params = CTParams(**json.loads(Path(params_path).read_text()))
    try:
        summary = run_ct_pipeline(params, settings.home, settings.registry_uri).to_dict()
    except DriftloopError as exc:
        summary = {"state": "FAILED", "error": str(exc), "version": None, "deploy_action": None}
    tmp = Path(summary_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, default=str))
    tmp.replace(summary_path)  # the monitor polls for this file; it must never see half of it
    return 0 if summary["state"] == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
