"""A CT task started the pre-warmed way runs in a process of its own, with the caller's environment, and its exit
code and output reach kfp.local (the forkserver's preloading costs seconds: an integration test)."""

from __future__ import annotations

import os
import sys

from driftloop.runners import warm_tasks


def test_a_task_runs_in_its_own_process_with_the_callers_environment_and_exit_code(tmp_path, capsys, monkeypatch) -> None:
    # A component whose body fails with a known message: the exit code and the output come back to kfp.local.
    source = ("from kfp import dsl\n\n@dsl.component\ndef boom(x: int):\n"
              "    import os\n    print('env', os.environ['DRIFTLOOP_TEST_MARK'], os.getpid())\n"
              "    raise SystemExit(3)\n")
    script = ('program_path=$(mktemp -d)\nprintf "%s" "$0" > "$program_path/ephemeral_component.py"\n'
              '_KFP_RUNTIME=true python3 -m kfp.dsl.executor_main --component_module_path '
              '"$program_path/ephemeral_component.py" "$@"\n')
    executor_input = '{"inputs": {"parameterValues": {"x": 1}}, "outputs": {"outputFile": "%s"}}' % (tmp_path / "o.json")
    monkeypatch.setenv("DRIFTLOOP_TEST_MARK", "seen")
    code = warm_tasks.run(["sh", "-ec", script, source, "--executor_input", executor_input,
                           "--function_to_execute", "boom"], fallback=lambda command: sys.exit("not expected"))
    out = capsys.readouterr().out
    assert code == 3
    line = next(x for x in out.splitlines() if x.startswith("env "))
    assert line.split()[1] == "seen" and int(line.split()[2]) != os.getpid()
