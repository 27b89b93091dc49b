"""The CLI in an 80-column terminal: one error style everywhere, documented exit codes and defaults, and tables
that wrap rather than cut a value."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from driftloop import ct_params, synthetic
from driftloop.cli import build_parser
from driftloop.cli_style import shows_default
from driftloop.errors import EXIT_FAILURE, EXIT_USAGE
from driftloop.registry import LocalRegistry
from driftloop.serve_cli import KSERVE_SERVER_OPTIONS
from tests.table_text import squash, table_columns

from ..conftest import refusing_port, register_trained, run_cli

COLUMNS_80 = {"COLUMNS": "80"}
LONG_ALIAS = "blue-green-quarterly-review-candidate"
LONG_REASON = ("the quarterly review board approved this version after comparing it with the champion on "
               "the newest labelled rows of every region, see ticket OPS-4711 for the full discussion")
GATE_REASONS = ["roc_auc 0.8012 reaches the minimum 0.6000",
                "on the holdout: roc_auc 0.8012 vs champion v1 0.8147: Δ -0.0135, within the allowed drop of 0.0200"]


def _one_line_error(result, code: int, *fragments: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("driftloop: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("args", "fragments"), [
    (["models", "lst"], ["models: argument VERB: invalid choice: 'lst'", "(see 'driftloop models --help')"]),
    (["run", "--bogus"], ["run: unrecognized arguments: --bogus", "(see 'driftloop run --help')"]),
    (["drift", "--reference", "ref.csv"], ["drift: the following arguments are required: --current"]),
    (["run", "--canary-percent", "ten"], ["run: argument --canary-percent: invalid int value: 'ten'"]),
    (["rollout"], ["rollout: the following arguments are required: name"]),
])
def test_usage_mistakes_are_one_line_and_exit_2(args, fragments) -> None:
    result = run_cli(*args, env=COLUMNS_80)
    line = _one_line_error(result, EXIT_USAGE, *fragments)
    assert "usage:" not in line and result.stdout == ""


def test_serve_refuses_kserve_options_it_does_not_honour(tmp_path) -> None:
    result = run_cli("serve", "--home", str(tmp_path), "--predictor_host", "10.0.0.1", "--ssl_certfile",
                     "/nonexistent.pem", "--grpc_port=9000", "--http_port", "8081", env=COLUMNS_80, timeout=60)
    line = _one_line_error(result, EXIT_USAGE, "--predictor_host, --ssl_certfile, --grpc_port, --http_port",
                           "(use --port)", "driftloop.serving.runtime")
    assert "unrecognized" not in line  # the refused options' values are theirs, not stray arguments
    assert result.stdout == ""


def test_the_refused_options_are_the_installed_kserves() -> None:
    from kserve.model_server import parser

    assert set(parser._option_string_actions) == KSERVE_SERVER_OPTIONS


def test_serve_help_lists_only_what_the_gateway_honours() -> None:
    shown = run_cli("serve", "--help", env=COLUMNS_80)
    assert shown.returncode == 0
    options = re.findall(r"^  (--[\w-]+)", shown.stdout, re.M)
    assert options == ["--host", "--port", "--logger-url", "--logger-token-file", "--payload-log-batch",
                       "--poll-interval", "--max-body-bytes", "--namespace", "--batch-max-rows", "--batch-wait-us",
                       "--home", "--registry"]
    assert "(default: 127.0.0.1)" in shown.stdout and "(default: 8080)" in shown.stdout
    assert "exit codes:" in shown.stdout and len(shown.stdout.splitlines()) < 60


@pytest.mark.parametrize("verb", [["list"], ["show", "churn"], ["history", "churn"]])
def test_a_registry_that_is_not_there_is_an_error_not_an_empty_table(tmp_path, verb) -> None:
    typo = tmp_path / "typo"
    result = run_cli("models", *verb, "--registry", str(typo), env=COLUMNS_80)
    _one_line_error(result, EXIT_USAGE, f"no registry at {typo}")
    assert result.stdout == "" and not typo.exists()


def test_a_monitor_that_does_not_answer_is_a_runtime_failure(tmp_path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\nr1,1\n")
    with refusing_port() as port:
        result = run_cli("feedback", "--labels", str(labels), "--id-column", "id", "--label-column", "label",
                         "--monitor", f"http://127.0.0.1:{port}", env=COLUMNS_80)
    _one_line_error(result, EXIT_FAILURE, "cannot reach the monitor")


def test_a_regression_target_holding_text_is_one_line_naming_the_value(tmp_path) -> None:
    data = tmp_path / "tickets.csv"
    frame = synthetic.generate(300, seed=4)
    frame["churned"] = frame["churned"].map({0: "stayed", 1: "left"})
    frame.to_csv(data, index=False)
    result = run_cli("run", "--data", str(data), "--target", "churned", "--task", "regression",
                     "--registry", str(tmp_path / "registry"), env=COLUMNS_80)
    assert result.returncode == EXIT_FAILURE and "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]  # after the spec and the progress lines run prints
    assert last.startswith("driftloop: error: data validation failed: column 'churned': text in a regression "
                           "target (300 values, e.g. 'stayed' in row 1)"), last
    assert "declare the task binary or multiclass if these are labels" in last


def test_drift_that_cannot_compare_exits_3_not_the_drift_code(tmp_path) -> None:
    with refusing_port() as port:
        env = {**COLUMNS_80, "DRIFTLOOP_S3_ENDPOINT": f"127.0.0.1:{port}", "DRIFTLOOP_S3_SECURE": "false",
               "DRIFTLOOP_S3_ACCESS_KEY": "test-access", "DRIFTLOOP_S3_SECRET_KEY": "test-secret"}
        result = run_cli("drift", "--reference", "s3://data/reference.csv", "--current", "s3://data/current.csv",
                         "--report", str(tmp_path / "r.html"), env=env)
    _one_line_error(result, 3, "cannot reach S3 endpoint")


# -- help ------------------------------------------------------------------------------------------

def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                yield from _parsers(child)


def test_every_command_documents_its_exit_codes_and_shows_its_defaults(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    checked = 0
    for parser in _parsers(build_parser()):
        text = squash(parser.format_help())
        assert "exitcodes:" in text and "2usageerror" in text, parser.prog
        for action in parser._actions:
            if not action.option_strings or not shows_default(action):
                continue
            if "default" not in (action.help or ""):  # else the help words its default itself
                assert squash(f"(default: {action.default})") in text, f"{parser.prog} {action.option_strings[0]}"
            checked += 1
    assert checked > 50


def test_run_help_shows_each_ct_parameters_default_from_its_definition() -> None:
    shown = run_cli("run", "--help", env=COLUMNS_80)
    assert shown.returncode == 0 and "exit codes:" in shown.stdout
    text = squash(shown.stdout)
    for f in ct_params.fields():
        default = ct_params.default_of(f.name)
        if f.metadata["cli"] and f.name not in ct_params._CLUSTER_ONLY and default not in ("", {}):
            assert squash(f"{ct_params.flag_of(f)}") in text and squash(f"(default: {default})") in text, f.name


# -- tables ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def long_registry(tmp_path_factory) -> Path:
    """Two versions trained from a deeply nested path, a long alias, a long reason, a gate that passed worse."""
    home = tmp_path_factory.mktemp("tables")
    workdir = home / "projects" / "customer-analytics" / "churn-prediction" / "exports" / "2026-11-quarterly"
    workdir.mkdir(parents=True)
    registry = LocalRegistry(home / "registry")
    register_trained(registry, workdir, synthetic.generate(400, seed=1))
    register_trained(registry, workdir, synthetic.generate(400, seed=2), lineage={"gate": {
        "passed": True, "reasons": GATE_REASONS, "thresholds": {"metric": "roc_auc", "min_value": 0.6,
                                                                 "max_regression": 0.02}}})
    registry.promote("churn", 1, actor="release-manager@example.com", reason=LONG_REASON)
    registry.set_alias("churn", LONG_ALIAS, 2, actor="release-manager@example.com", reason="for the review")
    return home


def _models(home: Path, *args: str):
    result = run_cli("models", *args, "--registry", str(home / "registry"), env=COLUMNS_80)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _fits(output: str) -> None:
    assert all(len(line) <= 80 for line in output.splitlines()), output
    assert "…" not in output


def test_tables_at_80_columns_wrap_and_never_cut_a_value(long_registry) -> None:
    listing, versions = _models(long_registry, "list"), _models(long_registry, "show", "churn")
    history = _models(long_registry, "history", "churn")
    for output in (listing, versions, history):
        _fits(output)
    [model] = json.loads(_models(long_registry, "list", "--json"))
    columns = table_columns(listing, "models in")
    assert squash(f"{LONG_ALIAS}→v2") in squash(columns["other aliases"])
    assert squash(model["last_change"].replace("T", " ")) in squash(columns["last change"])
    shown = table_columns(versions, "versions of churn")
    for version in json.loads(_models(long_registry, "show", "churn", "--json")):
        assert squash(version["created_at"].replace("T", " ")) in squash(shown["created"])
        assert squash(version["lineage"]["data_uri"]) in squash(versions)  # a path under its row, whole
    assert squash(f"production, {LONG_ALIAS}") not in squash(shown["aliases"])  # one alias per version
    assert squash(LONG_ALIAS) in squash(shown["aliases"])
    audit = table_columns(history, "audit trail of churn")
    for entry in json.loads(_models(long_registry, "history", "churn", "--json")):
        assert squash(entry["at"].replace("T", " ")) in squash(audit["when"])
        assert squash(entry["actor"]) in squash(audit["who"])
    assert squash(LONG_REASON) in squash(history)


def test_models_show_reads_the_gate_in_words(long_registry) -> None:
    shown = _models(long_registry, "show", "churn", "2")
    _fits(shown)
    assert "gate: PASSED (roc_auc at least 0.6000, at most 0.0200 below the champion)" in shown
    for reason in GATE_REASONS:  # each reason on its own line(s)
        assert squash(f"- {reason}") in squash(shown) and f"  - {reason[:30]}" in shown
    assert "Δ -0.0135" in shown and "\\u0394" not in shown and '"passed"' not in shown
    [holdout] = re.findall(r"holdout\s+(\S+) rows", shown)
    assert holdout.isdigit()  # a count, not 100.0000
    assert re.search(r"^roc_auc\s+0\.\d{4}$", shown, re.M)  # metrics with four decimals
