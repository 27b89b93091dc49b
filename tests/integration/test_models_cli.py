"""`driftloop models …` against a registry in S3 that real pipeline runs wrote, as an operator uses it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from driftloop import synthetic

from ..conftest import run_cli


@pytest.fixture(scope="module")
def s3_registry(s3_server, tmp_path_factory) -> dict:
    """Two pipeline runs registered into S3, signing with a key given as PEM in the environment (as a
    Kubernetes Secret gives it to the register step)."""
    from driftloop.signing import SigningKey

    home = tmp_path_factory.mktemp("models-cli")
    env = {**s3_server.env, "DRIFTLOOP_SIGNING_KEY": SigningKey.generate().private_pem().decode()}
    client = s3_server.settings().client()
    for bucket in ("mlops", "datasets"):
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
    for key, frame in {
        "reference.csv": synthetic.generate(1200, seed=21),
        "drifted.csv": synthetic.generate(1200, seed=22, covariate_shift=0.5, concept_shift=0.7, id_offset=1200),
    }.items():
        data = frame.to_csv(index=False).encode()
        client.put_object("datasets", key, io.BytesIO(data), len(data))
    uri = "s3://mlops/registry"
    common = ["--home", str(home), "--registry", uri]
    runs = []
    for key in ("reference.csv", "drifted.csv"):
        result = run_cli("run", *common, "--data", f"s3://datasets/{key}", "--target", "churned", "--model-name",
                         "churn", "--estimator", "logistic_regression", "--id-column", "customer_id",
                         "--timestamp-column", "event_time", "--json", env=env)
        assert result.returncode == 0, result.stderr
        runs.append(result)
    return {"home": home, "common": common, "env": env, "runs": runs}


def _cli(ctx: dict, *args: str):
    return run_cli("models", *args, *ctx["common"], env=ctx["env"])


def _json(ctx: dict, *args: str):
    result = _cli(ctx, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_pipeline_runs_registered_into_s3(s3_registry) -> None:
    [models] = _json(s3_registry, "list")
    assert models["name"] == "churn" and models["versions"] == 2
    assert models["aliases"] == {"production": 1, "canary": 2}
    versions = _json(s3_registry, "show", "churn")
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["storage_uri"] == "s3://mlops/registry/models/churn/versions/2/model/"
    assert versions[1]["lineage"]["data_uri"] == "s3://datasets/drifted.csv"
    assert versions[1]["aliases"] == ["canary"]


def test_tables_for_people(s3_registry) -> None:
    listing = _cli(s3_registry, "list")
    assert listing.returncode == 0 and "churn" in listing.stdout and "v1" in listing.stdout
    detail = _cli(s3_registry, "show", "churn", "2")
    assert "lineage" in detail.stdout and "model/model.joblib" in detail.stdout and "data_sha256" in detail.stdout


def test_promote_rollback_and_history(s3_registry) -> None:
    promoted = _json(s3_registry, "promote", "churn", "--reason", "canary looked good", "--actor", "alice")
    assert (promoted["from_version"], promoted["to_version"]) == (1, 2)
    assert _json(s3_registry, "list")[0]["aliases"] == {"production": 2}
    rolled = _json(s3_registry, "rollback", "churn", "--reason", "latency regression", "--actor", "bob")
    assert (rolled["from_version"], rolled["to_version"]) == (2, 1)
    history = _json(s3_registry, "history", "churn")
    actions = [(e["action"], e["actor"], e["reason"]) for e in history]
    assert ("promote", "alice", "canary looked good") in actions
    assert ("rollback", "bob", "latency regression") == actions[-1]
    assert _cli(s3_registry, "verify", "churn").returncode == 0


def test_reproduce_matches_metrics_and_predictions(s3_registry) -> None:
    result = _cli(s3_registry, "reproduce", "churn", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reproduced: same metrics and predictions" in result.stdout
    outcome = _json(s3_registry, "reproduce", "churn", "1")
    assert outcome["reproduced"] and outcome["max_prediction_diff"] == 0.0


def test_mistakes_are_one_line(s3_registry) -> None:
    for args, fragment in [
        (("show", "nosuch"), "no registered model named 'nosuch'"),
        (("show", "churn", "9"), "model 'churn' has no version 9"),
        (("promote", "churn", "7"), "model 'churn' has no version 7"),
        (("set-alias", "churn", "Bad Alias", "1"), "invalid alias"),
        (("archive", "churn", "1"), "v1 is production; move the alias first"),
    ]:
        result = _cli(s3_registry, *args)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert result.stderr.strip().startswith("driftloop: error:") and fragment in result.stderr, result.stderr


def test_tampering_is_reported_by_verify(s3_registry, s3_server) -> None:
    client = s3_server.settings().client()
    key = "registry/models/churn/versions/1/profile.json"
    original = client.get_object("mlops", key).read()
    client.put_object("mlops", key, io.BytesIO(original + b" "), len(original) + 1)
    try:
        result = _cli(s3_registry, "verify")
        assert result.returncode == 1 and "checksum mismatch for churn v1 profile.json" in result.stdout
    finally:
        client.put_object("mlops", key, io.BytesIO(original), len(original))
    assert _cli(s3_registry, "verify").returncode == 0


def test_credentials_never_appear_in_output_or_logs(s3_registry) -> None:
    secret = s3_registry["env"]["AWS_SECRET_ACCESS_KEY"]
    outputs = [r.stdout + r.stderr for r in s3_registry["runs"]]
    outputs.append(_cli(s3_registry, "show", "churn", "1", "--json").stdout)
    unreachable = run_cli("models", "list", "--registry", "s3://mlops/registry", "--home", str(s3_registry["home"]),
                          env={**s3_registry["env"], "DRIFTLOOP_S3_ENDPOINT": "http://127.0.0.1:9"})
    assert unreachable.returncode != 0 and "cannot reach S3 endpoint 127.0.0.1:9" in unreachable.stderr
    outputs.append(unreachable.stdout + unreachable.stderr)
    outputs += [p.read_text() for p in Path(s3_registry["home"]).rglob("*.log")]
    assert outputs and all(secret not in text for text in outputs)


def test_the_signing_key_signs_everything_and_appears_nowhere_but_with_the_writer(s3_registry, s3_server) -> None:
    from driftloop.signing import SigningKey

    pem = s3_registry["env"]["DRIFTLOOP_SIGNING_KEY"]
    secret = pem.splitlines()[1]  # the private key's base64 body
    key = SigningKey.from_pem(pem.encode(), "test")
    [report] = _json(s3_registry, "verify", "churn").values()
    assert report["problems"] == [] and report["signed_versions"] == [1, 2] and report["unsigned_entries"] == 0
    assert report["key_ids"] == [key.key_id]
    outputs = [r.stdout + r.stderr for r in s3_registry["runs"]]
    outputs += [_cli(s3_registry, *args).stdout for args in (("verify",), ("history", "churn", "--json"),
                                                             ("show", "churn", "2", "--json"))]
    outputs += [p.read_text() for p in Path(s3_registry["home"]).rglob("*.log")]
    client = s3_server.settings().client()
    stored = {o.object_name: client.get_object("mlops", o.object_name).read()
              for o in client.list_objects("mlops", "registry/", recursive=True)}
    assert all(secret not in text for text in outputs)
    assert all(secret.encode() not in data and b"PRIVATE KEY" not in data for data in stored.values())
    assert stored[f"registry/keys/{key.key_id}.pub"] == key.public_pem()  # readers get the public half only
