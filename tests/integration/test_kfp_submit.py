"""Submission to Kubeflow Pipelines through the real kfp.Client, against a recording KFP v2beta1 API on 127.0.0.1.

The fake implements the endpoints kfp.Client 2.16's generated service APIs call (healthz, pipelines,
pipeline versions and the multipart version upload, experiments, runs, recurring runs) with KFP's wire
format (proto field names, int64 as strings), and records every request.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from driftloop import kfp_submit
from driftloop.ct_params import CTParams
from driftloop.errors import ConfigError
from driftloop.image import PROJECT_IMAGE
from driftloop.kfp_submit import KfpSettings
from tests.conftest import CliResult, ServerThread, free_port, run_cli
from tests.kfp_fake import FakeKfp

TOKEN = "kfp-token-never-printed-7f3a"
S3_SECRET_VALUE = "s3-secret-never-sent-91c2"
REGISTRY = "s3://driftloop/registry"


@pytest.fixture(autouse=True)
def _no_kfp_context(tmp_path, monkeypatch) -> None:
    """kfp.Client reads ~/.config/kfp/context.json; a developer's own must not leak into the tests."""
    import kfp

    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_VALUE)  # must never reach a request


@pytest.fixture
def kfp_api():
    fake = FakeKfp()
    with ServerThread(fake.app()) as server:
        fake.url = server.url
        yield fake


def _params(**overrides) -> CTParams:
    values = dict(data_uri="s3://datasets/churn.parquet", target="churned", model_name="churn-kfp",
                  estimator="xgboost", estimator_params={"n_estimators": 50, "max_depth": 4},
                  rollout_policy={"steps": [10, 50, 100], "min_requests": 20})
    return CTParams(**{**values, **overrides})


def _settings(fake: FakeKfp, **overrides) -> KfpSettings:
    return KfpSettings(host=fake.url, poll_interval=0.02, **overrides)


# --- runs ---------------------------------------------------------------------------------------------

def test_submit_uploads_our_pipeline_once_and_starts_a_run_with_the_parameters(kfp_api) -> None:
    run = kfp_submit.submit_run(_settings(kfp_api), _params(), REGISTRY, run_name="nightly retrain")

    assert [(r.method, r.path) for r in kfp_api.requests] == [
        ("GET", "healthz"), ("GET", "pipelines"), ("POST", "pipelines"), ("GET", f"pipelines/{run.pipeline_id}/versions"),
        ("POST", "pipelines/upload_version"), ("GET", "experiments"), ("POST", "experiments"), ("POST", "runs"),
    ]
    assert kfp_api.calls("POST", "pipelines")[0].json["display_name"] == "driftloop-ct"
    upload = kfp_api.calls("POST", "pipelines/upload_version")[0]
    assert upload.query["pipelineid"] == run.pipeline_id
    assert upload.query["name"] == run.pipeline_version_name and re.fullmatch(r"0\.1\.0-[0-9a-f]{12}", run.pipeline_version_name)
    spec, platform = yaml.safe_load_all(upload.upload)
    assert spec["pipelineInfo"]["name"] == "driftloop-ct"
    for name, executor in spec["deploymentSpec"]["executors"].items():
        assert executor["container"]["image"] == PROJECT_IMAGE, name
        assert "pip install" not in " ".join(executor["container"]["command"]), name
    assert "driftloop-s3" in json.dumps(platform)

    body = kfp_api.calls("POST", "runs")[0].json
    assert body["display_name"] == "nightly retrain"
    assert body["experiment_id"] == run.experiment_id
    assert body["pipeline_version_reference"] == {"pipeline_id": run.pipeline_id,
                                                  "pipeline_version_id": run.pipeline_version_id}
    assert body["runtime_config"]["parameters"] == _params(registry_uri=REGISTRY).arguments()
    assert body["runtime_config"]["parameters"]["estimator_params"] == {"n_estimators": 50, "max_depth": 4}
    assert kfp_api.calls("POST", "experiments")[0].json["display_name"] == "driftloop"
    assert run.state == "PENDING" and not run.version_reused
    assert run.run_url == f"{kfp_api.url}/#/runs/details/{run.run_id}"
    _assert_no_credentials(kfp_api)


def test_resubmitting_reuses_the_experiment_and_the_pipeline_version(kfp_api, monkeypatch) -> None:
    settings = _settings(kfp_api)
    first = kfp_submit.submit_run(settings, _params(), REGISTRY)
    second = kfp_submit.submit_run(settings, _params(seed=7), REGISTRY)

    assert len(kfp_api.calls("POST", "pipelines/upload_version")) == 1 and len(kfp_api.versions) == 1
    assert len(kfp_api.calls("POST", "experiments")) == 1 and len(kfp_api.calls("POST", "pipelines")) == 1
    assert second.version_reused and second.pipeline_version_id == first.pipeline_version_id
    assert second.experiment_id == first.experiment_id and second.run_id != first.run_id
    assert kfp_api.calls("POST", "runs")[1].json["runtime_config"]["parameters"]["seed"] == 7

    # A different pipeline (here: another package version) is a new version of the same pipeline.
    monkeypatch.setattr(kfp_submit, "__version__", "0.2.0")
    third = kfp_submit.submit_run(settings, _params(), REGISTRY)
    assert third.pipeline_id == first.pipeline_id and third.pipeline_version_name.startswith("0.2.0-")
    assert not third.version_reused and len(kfp_api.versions) == 2


def test_wait_returns_the_final_state_the_server_reports(kfp_api) -> None:
    kfp_api.run_states = ["RUNNING", "RUNNING", "FAILED"]
    kfp_api.run_error = "task evaluate-model failed"
    seen: list[str] = []
    settings = _settings(kfp_api)
    run = kfp_submit.submit_run(settings, _params(), REGISTRY)
    done = kfp_submit.wait_for_run(settings, run, timeout=10, on_state=seen.append)

    assert done.state == "FAILED" and done.finished and done.error == "task evaluate-model failed"
    assert seen == ["RUNNING", "FAILED"]
    assert kfp_submit.run_state(settings, run.run_id) == "FAILED"

    kfp_api.run_states = ["RUNNING"]
    waited = kfp_submit.submit_run(settings, _params(), REGISTRY, wait=True, timeout=0.2)
    assert waited.state == "RUNNING" and not waited.finished  # timed out: the last state seen


def test_token_and_namespace_from_the_environment_reach_every_request(kfp_api) -> None:
    kfp_api.token, kfp_api.multi_user = TOKEN, True
    settings = KfpSettings.from_env(environ={"DRIFTLOOP_KFP_HOST": kfp_api.url, "DRIFTLOOP_KFP_TOKEN": TOKEN,
                                             "DRIFTLOOP_KFP_NAMESPACE": "team-churn"})
    assert TOKEN not in repr(settings)
    kfp_submit.submit_run(settings, _params(), REGISTRY)

    assert {r.headers.get("authorization") for r in kfp_api.requests} == {f"Bearer {TOKEN}"}
    assert kfp_api.calls("GET", "experiments")[0].query["namespace"] == "team-churn"
    assert kfp_api.calls("POST", "experiments")[0].json["namespace"] == "team-churn"
    assert kfp_api.calls("GET", "pipelines")[0].query["namespace"] == "team-churn"
    assert kfp_api.calls("POST", "pipelines")[0].json["namespace"] == "team-churn"


def test_the_in_cluster_token_file_is_read_before_every_request(kfp_api, tmp_path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    settings = KfpSettings.from_env(environ={"DRIFTLOOP_KFP_HOST": kfp_api.url,
                                             "KF_PIPELINES_SA_TOKEN_PATH": str(token_file)})
    run = kfp_submit.submit_run(settings, _params(), REGISTRY)
    token_file.write_text("rotated-token\n")  # the kubelet rotates projected tokens
    kfp_submit.run_state(settings, run.run_id)

    assert kfp_api.requests[0].headers["authorization"] == "Bearer first-token"
    assert kfp_api.requests[-1].headers["authorization"] == "Bearer rotated-token"


def test_a_rejected_token_is_one_clear_error_without_the_token(kfp_api) -> None:
    kfp_api.token = TOKEN
    with pytest.raises(ConfigError, match=r"needs a valid token .*401.*DRIFTLOOP_KFP_TOKEN") as raised:
        kfp_submit.run_state(_settings(kfp_api, token="not-the-token"), "run-0001")
    assert "not-the-token" not in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(ConfigError, match="not found"):
        kfp_submit.run_state(_settings(kfp_api, token=TOKEN), "run-9999")


def test_runs_need_what_a_pod_can_read(kfp_api) -> None:
    with pytest.raises(ConfigError, match="s3:// URIs"):
        kfp_submit.submit_run(_settings(kfp_api), _params(data_uri="/home/me/churn.csv"), REGISTRY)
    with pytest.raises(ConfigError, match="s3:// registry"):
        kfp_submit.submit_run(_settings(kfp_api), _params(), "/home/me/.driftloop/registry")
    with pytest.raises(ConfigError, match="http"):
        KfpSettings(host="ml-pipeline:8888")
    with pytest.raises(ConfigError, match="DRIFTLOOP_KFP_HOST"):
        KfpSettings.from_env(environ={})
    assert kfp_api.requests == []


def test_the_host_comes_from_the_environment_and_inside_a_pod_defaults_to_the_cluster_service() -> None:
    in_a_pod = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}  # what the kubelet sets in every container
    assert KfpSettings.from_env(environ=in_a_pod).host == kfp_submit.IN_CLUSTER_HOST
    assert KfpSettings.from_env(environ=in_a_pod | {"KF_PIPELINES_ENDPOINT": "http://kfp.example:80"}).host == \
        "http://kfp.example:80"
    assert KfpSettings.from_env(environ=in_a_pod | {"DRIFTLOOP_KFP_HOST": "http://127.0.0.1:8888"}).host == \
        "http://127.0.0.1:8888"
    assert KfpSettings.from_env("http://given:8888", environ=in_a_pod).host == "http://given:8888"


# --- recurring runs -----------------------------------------------------------------------------------

def test_schedules_are_created_one_run_at_a_time_without_catch_up(kfp_api) -> None:
    settings = _settings(kfp_api)
    nightly = kfp_submit.create_schedule(settings, _params(), REGISTRY, "nightly", cron="0 3 * * *")
    sixhourly = kfp_submit.create_schedule(settings, _params(), REGISTRY, "every-6h", interval_seconds=6 * 3600)

    cron_body, interval_body = (r.json for r in kfp_api.calls("POST", "recurringruns"))
    assert cron_body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}  # KFP's cron has seconds first
    assert interval_body["trigger"] == {"periodic_schedule": {"interval_second": 21600}}
    for body, name in ((cron_body, "nightly"), (interval_body, "every-6h")):
        assert body["display_name"] == name and body["mode"] == "ENABLE"
        assert body["max_concurrency"] == 1 and body["no_catchup"] is True
        assert body["pipeline_version_reference"]["pipeline_version_id"] == next(iter(kfp_api.versions))
        assert body["runtime_config"]["parameters"] == _params(triggered_by=f"schedule:{name}", registry_uri=REGISTRY).arguments()
    assert len(kfp_api.versions) == 1 and len(kfp_api.experiments) == 1
    assert (nightly.trigger, nightly.enabled, nightly.max_concurrency, nightly.no_catchup) == \
        ("cron 0 0 3 * * *", True, 1, True)
    assert sixhourly.trigger == "every 6h"
    assert [s.name for s in kfp_submit.list_schedules(settings)] == ["nightly", "every-6h"]
    with pytest.raises(ConfigError, match="exists already"):
        kfp_submit.create_schedule(settings, _params(), REGISTRY, "nightly", cron="@daily")
    _assert_no_credentials(kfp_api)


def test_pause_resume_delete_resolve_names_to_ids(kfp_api) -> None:
    settings = _settings(kfp_api)
    created = kfp_submit.create_schedule(settings, _params(), REGISTRY, "nightly", cron="0 3 * * *")
    sid = created.schedule_id

    assert not kfp_submit.pause_schedule(settings, "nightly").enabled
    assert kfp_api.calls("POST")[-1].path == f"recurringruns/{sid}:disable"
    assert kfp_submit.resume_schedule(settings, sid).enabled  # an id works as well
    assert kfp_api.calls("POST")[-1].path == f"recurringruns/{sid}:enable"
    assert kfp_submit.delete_schedule(settings, "nightly").schedule_id == sid
    assert kfp_api.calls("DELETE")[-1].path == f"recurringruns/{sid}" and not kfp_api.recurring
    with pytest.raises(ConfigError, match="no schedule named 'nightly'"):
        kfp_submit.pause_schedule(settings, "nightly")


@pytest.mark.parametrize(("cron", "interval", "message"), [
    ("0 3 * * *", 3600, "exactly one trigger"),
    (None, None, "exactly one trigger"),
    ("0 3 * *", None, "needs 5 fields"),
    ("61 3 * * *", None, "minute '61' is outside 0-59"),
    ("0 3 * * MON-XYZ", None, "day of week"),
    ("*/0 * * * *", None, "step"),
    (None, 30, "at least 60 s"),
])
def test_bad_triggers_are_refused_before_any_request(kfp_api, cron, interval, message) -> None:
    with pytest.raises(ConfigError, match=message):
        kfp_submit.create_schedule(_settings(kfp_api), _params(), REGISTRY, "x", cron=cron, interval_seconds=interval)
    assert kfp_api.requests == []


@pytest.mark.parametrize(("cron", "kfp_cron"), [
    ("0 3 * * *", "0 0 3 * * *"), ("*/15 9-17 * * MON-FRI", "0 */15 9-17 * * MON-FRI"),
    ("30 0 3 1,15 * ?", "30 0 3 1,15 * ?"), ("@Daily", "@daily"),
])
def test_standard_cron_becomes_kfp_six_field_cron(cron, kfp_cron) -> None:
    assert kfp_submit.to_kfp_cron(cron) == kfp_cron


# --- the compiled pipeline ----------------------------------------------------------------------------

def test_every_task_that_touches_s3_gets_the_secret_and_no_parameter_carries_credentials(tmp_path) -> None:
    from driftloop.pipelines.ct_pipeline import compile_ct_pipeline

    spec, platform = yaml.safe_load_all(compile_ct_pipeline(tmp_path / "ct.yaml").read_text())
    secrets = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    touching = {
        name.removeprefix("comp-") for name, component in spec["components"].items()
        if "executorLabel" in component
        and {"registry_uri", "data_uri"} & set(component.get("inputDefinitions", {}).get("parameters", {}))
    }
    assert touching == {"load-and-validate", "evaluate-model", "register-model", "deploy-model", "record-outcome"}
    assert set(secrets) == {f"exec-{name}" for name in touching}  # train-model only moves artifacts
    writers = {"exec-register-model", "exec-deploy-model", "exec-record-outcome"}
    for name, executor in secrets.items():
        by_secret = {e["secretName"]: e for e in executor["secretAsEnv"]}
        # The registry's signing key reaches only the steps that write versions or audit entries.
        assert set(by_secret) == ({"driftloop-s3", "driftloop-signing"} if name in writers else {"driftloop-s3"})
        s3 = by_secret["driftloop-s3"]
        assert s3["optional"] is False
        assert {(m["secretKey"], m["envVar"]) for m in s3["keyToEnv"]} == {
            ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"), ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
            ("DRIFTLOOP_S3_ENDPOINT", "DRIFTLOOP_S3_ENDPOINT")}
        if name in writers:
            assert by_secret["driftloop-signing"]["optional"] is True  # an unsigned registry needs no key
        # Every registry reader gets the public key to check signatures against.
        (verify,) = executor["configMapAsEnv"]
        assert verify["configMapName"] == "driftloop-verify-key"
    inputs = set(spec["root"]["inputDefinitions"]["parameters"])
    assert inputs == set(_params(registry_uri=REGISTRY).arguments())
    assert not [p for p in inputs if re.search(r"key|secret|password|token|credential|endpoint", p, re.I)]


# --- the CLI ------------------------------------------------------------------------------------------

def _cli(fake_or_url, *args: str, tmp_path: Path, token: str | None = None):
    url = fake_or_url if isinstance(fake_or_url, str) else fake_or_url.url
    env = {"HOME": str(tmp_path), "DRIFTLOOP_KFP_TOKEN": token or "", "DRIFTLOOP_KFP_HOST": "",
           "DRIFTLOOP_KFP_NAMESPACE": "", "DRIFTLOOP_REGISTRY": ""}
    return run_cli(*args, "--host", url, env=env, timeout=120)


def _in_process(capsys, fake: FakeKfp, *args: str) -> CliResult:
    """The same CLI in this process: no interpreter start-up, for the cases a subprocess adds nothing to."""
    from driftloop.cli import main

    capsys.readouterr()
    code = main([*args, "--host", fake.url])
    out, err = capsys.readouterr()
    return CliResult(code, out, err)


CT_ARGS = ("--data", "s3://datasets/churn.parquet", "--target", "churned", "--estimator", "random_forest",
           "--param", "n_estimators=40")


def test_cli_submit_waits_and_reports_the_final_state(kfp_api, tmp_path, capsys, monkeypatch) -> None:
    kfp_api.token, kfp_api.run_states = TOKEN, ["SUCCEEDED"]
    ok = _cli(kfp_api, "submit", *CT_ARGS, "--wait", "--run-name", "cli run", tmp_path=tmp_path, token=TOKEN)
    assert ok.returncode == 0, ok.stderr
    run_id = next(iter(kfp_api.runs))
    assert f"run {run_id} submitted to experiment 'driftloop'" in ok.stdout
    assert f"{kfp_api.url}/#/runs/details/{run_id}" in ok.stdout and "SUCCEEDED" in ok.stdout
    parameters = kfp_api.runs[run_id]["runtime_config"]["parameters"]
    assert parameters["estimator_params"] == {"n_estimators": 40} and parameters["registry_uri"] == REGISTRY

    kfp_api.run_states, kfp_api.run_error = ["FAILED"], "load-and-validate: column 'churned' is missing"
    monkeypatch.setenv("DRIFTLOOP_KFP_TOKEN", TOKEN)
    failed = _in_process(capsys, kfp_api, "submit", *CT_ARGS, "--wait", "--json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["state"] == "FAILED" and json.loads(failed.stdout)["version_reused"] is True
    assert failed.stderr.strip().splitlines()[-1] == \
        f"driftloop: error: run {json.loads(failed.stdout)['run_id']} ended FAILED: {kfp_api.run_error}"
    for result in (ok, failed):
        assert TOKEN not in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_cli_schedule_create_and_pause(kfp_api, tmp_path, capsys) -> None:
    created = _cli(kfp_api, "schedule", "create", "nightly", "--cron", "0 3 * * *", *CT_ARGS, tmp_path=tmp_path)
    assert created.returncode == 0, created.stderr
    (sid,) = kfp_api.recurring
    assert re.search(rf"nightly\s+enabled\s+cron 0 0 3 \* \* \*\s+{sid}", created.stdout)
    paused = _in_process(capsys, kfp_api, "schedule", "pause", "nightly", "--json")
    assert kfp_api.calls("POST")[-1].path == f"recurringruns/{sid}:disable"
    shown = json.loads(paused.stdout)
    assert (shown["schedule_id"], shown["enabled"], shown["max_concurrency"], shown["no_catchup"]) == (sid, False, 1, True)

    unknown = _cli(kfp_api, "schedule", "resume", "weekly", tmp_path=tmp_path)
    assert unknown.returncode != 0 and unknown.stdout == ""
    assert unknown.stderr.strip() == ("driftloop: error: no schedule named 'weekly' in experiment 'driftloop'; "
                                      "'driftloop schedule list' shows them")


def test_cli_unreachable_host_is_one_line(tmp_path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = _cli(url, "schedule", "list", tmp_path=tmp_path)
    assert result.returncode == 1 and result.stdout == ""  # the command was right; the server did not answer
    assert result.stderr.strip() == f"driftloop: error: cannot reach Kubeflow Pipelines at {url}: Connection refused"


def _assert_no_credentials(fake: FakeKfp) -> None:
    for r in fake.requests:
        if r.method == "POST" and r.path in ("runs", "recurringruns"):
            text = r.body.decode()
            assert S3_SECRET_VALUE not in text and "AWS_" not in text and "SECRET" not in text.upper()
