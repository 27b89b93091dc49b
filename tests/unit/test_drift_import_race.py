"""The monitor imports Evidently in the background at start-up while windows may already be closing: a drift
check that starts during that import must wait for it and give its verdict. (Evidently's modules import each
other in circles; two threads importing them at once deadlock or meet a half-initialised module.)"""

from __future__ import annotations

import subprocess
import sys

_SCRIPT = """
import threading
import pandas as pd
from driftloop.drift import DriftConfig, compare_column, load_evidently

verdicts, errors = [], []

def check():
    try:
        verdicts.append(compare_column(pd.Series([1.0, 2, 3] * 50, name="a"), pd.Series([5.0, 6, 7] * 50, name="a"),
                                       "numeric", DriftConfig()).drifted)
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=load_evidently)] + [threading.Thread(target=check) for _ in range(3)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(verdicts, errors)
"""


def test_drift_checks_during_the_start_up_import_all_get_their_verdict() -> None:
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[True, True, True] []"
