"""The per-role MinIO policies (manifests/minio-policies/) against what each role's code really does.

moto has an IAM mode that works offline (``INITIAL_NO_AUTH_ACTION_COUNT``, users and policies through its IAM
API), but tried with these policies (moto 5.2.5) it allowed ListObjects outside a statement's ``s3:prefix``
condition (and with no prefix at all) and refused HeadBucket to a user granted ``s3:ListBucket``, which is
what AWS and MinIO authorise it by: it cannot judge prefix-confined listing nor KServe's storage initializer.
So the policies are enforced by an S3 proxy on 127.0.0.1 in front of moto that
evaluates each request, signed by one role's access key, against that role's shipped policy document with
the small evaluator in tests/s3_policy.py (AWS's and MinIO's rules: request → action, explicit Deny wins,
``*`` spans ``/``, StringLike on ``s3:prefix``) and answers 403 AccessDenied as MinIO would.

Through it, each role's real code path runs with its own keys and the environment its Secret gives it (no
region, as in s3-endpoint.env: minio-py asks for the bucket's location): KServe's logger agent writing payload
logs (logger.storage: one PutObject per object, as pkg/agent/storage/s3.go's upload of a small batch), the drift
monitor (reading those logs with ``kserve_store``, and a drift trigger with the KFP runner: audit entries and its
retrain table), the CT pipeline (``driftloop run``, kfp.local, on that table: registering v2) and KServe's storage
initializer (its boto3 calls, from kserve_storage ``_download_s3``; then driftloop's runtime loads what it
fetched). Every request of those runs is one the
rules know and none is refused; every Allow of every policy is used; then each role tries what it must not
do, with the same clients, and is refused with nothing changed.

What is not checked here: MinIO itself (not available offline), only its documented evaluation rules; the
s3:HeadBucket action newer MinIO releases check first (the policies grant s3:ListBucket, which both accept)."""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from driftloop import synthetic
from driftloop.registry import PRODUCTION
from driftloop.registry.s3 import S3Registry
from driftloop.storage import S3Settings

from ..conftest import ServerThread, register_trained, run_cli
from ..s3_policy import Authz, authz_of, check_document, evaluate
from ..s3_proxy import Request, S3Proxy
from .manifests_render import POLICIES

ROLES = ("pipeline", "monitor", "serving", "logger")
ADMIN = "admin-test-key"  # sets the bucket up and reads back what happened; not a role
REGISTRY, DATA, RETRAIN = "registry", "data", "retrain"  # the prefixes monitor.yaml and the policies name
PAYLOAD_LOGS = "payload-logs"  # components/logger-storage's logger url and the policies' prefix
MODEL = "churn"


@dataclass
class Seen:
    role: str
    request: Request
    authz: Authz | None
    allowed: bool
    allowed_by: tuple[str, ...]


@dataclass
class Enforcer:
    """The proxy's ``authorize`` hook: each access key is one MinIO user with one policy."""

    policies: dict[str, tuple[str, dict]]  # access key -> (role, policy document)
    seen: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Request) -> bool:
        if request.access_key == ADMIN:
            return True
        role, policy = self.policies.get(request.access_key, ("unknown", {"Statement": []}))
        authz = authz_of(request.method, request.path, request.query)
        decision = evaluate(policy, authz) if authz is not None else None
        allowed = bool(decision and decision.allowed)
        with self._lock:
            self.seen.append(Seen(role, request, authz, allowed, decision.allowed_by if decision else ()))
        return allowed

    def mark(self) -> int:
        return len(self.seen)

    def since(self, mark: int, role: str | None = None) -> list[Seen]:
        return [s for s in self.seen[mark:] if role is None or s.role == role]


def policy(role: str, bucket: str) -> dict:
    """The shipped document, with its bucket ("driftloop", monitor.yaml's) renamed to this test's bucket."""
    text = (POLICIES / f"{role}.json").read_text()
    assert text.count("arn:aws:s3:::") == text.count("arn:aws:s3:::driftloop")
    return json.loads(text.replace("arn:aws:s3:::driftloop", f"arn:aws:s3:::{bucket}"))


@dataclass
class World:
    bucket: str
    proxy: S3Proxy
    enforcer: Enforcer
    admin: S3Settings
    env: dict[str, dict[str, str]]  # role -> the environment its Secret gives it
    runs: dict[str, tuple[int, int]] = field(default_factory=dict)  # what each legitimate run saw (marks)
    fetched: dict[int, Path] = field(default_factory=dict)  # version -> what the storage initializer fetched

    @property
    def registry_uri(self) -> str:
        return f"s3://{self.bucket}/{REGISTRY}"

    def settings(self, role: str) -> S3Settings:
        return S3Settings.from_env(self.env[role])

    def exists(self, key: str) -> bytes | None:
        from minio.error import S3Error

        try:
            response = self.admin.client().get_object(self.bucket, key)
        except S3Error:
            return None
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()


@pytest.fixture(scope="module")
def world(s3_server) -> Iterator[World]:
    bucket = f"driftloop-{uuid.uuid4().hex[:8]}"
    enforcer = Enforcer({f"{role}-test-key": (role, policy(role, bucket)) for role in ROLES})
    with S3Proxy(s3_server.endpoint, authorize=enforcer) as proxy:
        base = {"DRIFTLOOP_S3_ENDPOINT": f"http://{proxy.endpoint}"}  # s3-endpoint.env: no region
        env = {role: {**base, "AWS_ACCESS_KEY_ID": f"{role}-test-key",
                      "AWS_SECRET_ACCESS_KEY": f"{role}-test-secret"} for role in ROLES}
        admin = S3Settings.from_env({**base, "AWS_ACCESS_KEY_ID": ADMIN, "AWS_SECRET_ACCESS_KEY": "admin",
                                     "AWS_REGION": "us-east-1"})
        admin.client().make_bucket(bucket)
        yield World(bucket, proxy, enforcer, admin, env)


def run_pipeline(world: World, tmp_path: Path, data_key: str) -> None:
    """The CT pipeline as kfp.local runs it, its steps' environment that of the driftloop-s3 Secret. The gate
    is opened wide: what is judged here is what the steps may touch, and registering is one of them."""
    environ = {"AWS_REGION": "", "AWS_DEFAULT_REGION": "", **world.env["pipeline"]}
    result = run_cli("run", "--home", str(tmp_path), "--registry", world.registry_uri, "--data",
                     f"s3://{world.bucket}/{data_key}", "--model-name", MODEL, "--target", "churned", "--id-column", "customer_id",
                     "--timestamp-column", "event_time", "--min-gate-value", "0", "--max-regression", "1",
                     "--json", env=environ)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def loop(world: World, tmp_path_factory) -> World:
    """The closed loop on S3 with a Secret per role. Version 1 is set up directly (trained on data/churn.csv,
    production); the monitor sees drift and writes its retrain table and audit entries; the CT pipeline
    retrains on that table (v2, canary); KServe's storage initializer fetches each version's model directory."""
    frame = synthetic.generate(1500, seed=3)
    admin = S3Registry(world.registry_uri, world.admin)
    register_trained(admin, tmp_path_factory.mktemp("v1"), frame)
    admin.promote(MODEL, 1, actor="test")
    data = frame.to_csv(index=False).encode()
    world.admin.client().put_object(world.bucket, f"{DATA}/churn.csv", io.BytesIO(data), len(data))

    mark = world.enforcer.mark()
    log_objects = write_like_kserves_agent(world)
    world.runs["logger"] = (mark, world.enforcer.mark())

    mark = world.enforcer.mark()
    table = run_monitor_trigger(world, tmp_path_factory.mktemp("monitor"), f"s3://{world.bucket}/{DATA}/churn.csv",
                                log_objects)
    world.runs["monitor"] = (mark, world.enforcer.mark())

    mark = world.enforcer.mark()
    run_pipeline(world, tmp_path_factory.mktemp("retrain"), table)
    world.runs["pipeline"] = (mark, world.enforcer.mark())

    mark = world.enforcer.mark()
    world.fetched = {n: fetch_like_kserve(world, n, tmp_path_factory.mktemp(f"mnt-v{n}")) for n in (1, 2)}
    world.runs["serving"] = (mark, world.enforcer.mark())
    return world


def write_like_kserves_agent(world: World) -> int:
    """KServe's agent with logger.storage writes two exchanges, one object per event half (batch size 1): a
    PutObject each (aws-sdk-go-v2's transfer manager, one part below 8 MiB), with the logger Secret's keys and
    region (s3-region annotation → AWS_REGION), path-style (s3-usevirtualbucket "false"). Returns the count."""
    import boto3
    import orjson

    from driftloop.logger_storage import object_key
    from driftloop.serving.payload_logger import REQUEST_TYPE, RESPONSE_TYPE

    from .test_monitor_ingest_modes import kserve_record

    env = world.env["logger"]
    s3 = boto3.client("s3", endpoint_url=env["DRIFTLOOP_S3_ENDPOINT"], region_name="us-east-1",
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    frame = synthetic.generate(2, seed=9)
    rows = json.loads(frame.drop(columns=[synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN])
                      .to_json(orient="records"))
    written = 0
    for i, row in enumerate(rows):
        for kind, body in ((REQUEST_TYPE, {"instances": [row]}), (RESPONSE_TYPE, {"predictions": [0]})):
            key = object_key(f"s3://{world.bucket}/{PAYLOAD_LOGS}", "ml", MODEL, f"logged-{i}", kind,
                             "json")
            s3.put_object(Bucket=world.bucket, Key=key, Body=orjson.dumps(kserve_record(f"logged-{i}", kind, body)))
            written += 1
    return written


def run_monitor_trigger(world: World, tmp_path: Path, reference_uri: str, log_objects: int) -> str:
    """The drift monitor, with the monitor's keys in its environment (as envFrom gives them) and its registry
    on S3, reads the payload logs the agent wrote (kserve_store), sees a drifted window and starts a retrain
    on (fake) KFP: returns the retrain table's key."""
    import kfp

    from driftloop.monitor.app import Monitor
    from driftloop.monitor.config import MonitorConfig
    from driftloop.replay import ReplayPlan, replay
    from driftloop.serving.gateway import Gateway
    from tests.kfp_fake import FakeKfp

    from .test_monitor_loop import wait_for

    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            patch.delenv(name, raising=False)
        for name, value in world.env["monitor"].items():
            patch.setenv(name, value)
        patch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
        fake = FakeKfp()
        with ServerThread(fake.app()) as kfp_api:
            fake.url = kfp_api.url
            config = MonitorConfig.from_dict({
                "window": {"rows": 300, "seconds": 3600}, "trigger": {"m": 1, "n": 1},
                "retrain": {"runner": "kfp", "kfp_host": kfp_api.url, "reference_uri": reference_uri,
                            "data_dir": f"s3://{world.bucket}/{RETRAIN}"},
                "kserve_store": {"uri": f"s3://{world.bucket}/{PAYLOAD_LOGS}", "poll_seconds": 0.2}})
            monitor = Monitor(S3Registry(world.registry_uri), tmp_path / "store", config, tick_seconds=0.2)
            traffic = synthetic.generate(300, seed=5, covariate_shift=0.8, id_offset=50_000)
            plan = ReplayPlan.from_tables(traffic, id_column="customer_id", label_column="churned",
                                          timestamp_column="event_time")
            with ServerThread(monitor.app, http=monitor.http_protocol()) as receiver:
                # The gateway stands in for KServe's predictor, which is not an S3 role of the cluster (its
                # storage initializer is: fetch_like_kserve), so it reads the registry with the admin keys.
                predictor = Gateway(S3Registry(world.registry_uri, world.admin), logger_url=receiver.url + "/events")
                with ServerThread(predictor.app) as gateway:
                    assert replay(plan, gateway.url, MODEL, rate=500, monitor_url=receiver.url, label_delay=0).ok
                    wait_for(lambda: fake.calls("POST", "runs"), what="a KFP run")
                    wait_for(lambda: monitor.kserve_store.status()["objects_taken"] == log_objects,
                             what="the payload log objects")
            assert monitor.kserve_store.status()["objects_refused"] == 0
    data_uri = fake.calls("POST", "runs")[0].json["runtime_config"]["parameters"]["data_uri"]
    prefix = f"s3://{world.bucket}/"
    assert data_uri.startswith(f"{prefix}{RETRAIN}/{MODEL}/")
    return data_uri.removeprefix(prefix)


def fetch_like_kserve(world: World, version: int, mount: Path) -> Path:
    """KServe's storage initializer for ``storageUri`` s3://…/versions/<n>/model/ with the serving Secret: the
    boto3 calls of kserve_storage ``_download_s3`` (head_bucket, list by prefix, download_file each object;
    kserve/kserve python/storage/kserve_storage/kserve_storage.py), region and endpoint from the Secret's
    serving.kserve.io/s3-* annotations."""
    import boto3

    env = world.env["serving"]
    s3 = boto3.resource("s3", endpoint_url=env["DRIFTLOOP_S3_ENDPOINT"], region_name="us-east-1",
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    prefix = f"{REGISTRY}/models/{MODEL}/versions/{version}/model/"
    s3.meta.client.head_bucket(Bucket=world.bucket)
    bucket = s3.Bucket(world.bucket)
    for obj in bucket.objects.filter(Prefix=prefix):
        if obj.key.endswith("/") or obj.size == 0:
            continue
        target = mount / obj.key.removeprefix(prefix).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        bucket.download_file(obj.key, str(target))
    return mount


# --- the evaluator ---------------------------------------------------------------------------------

def test_the_evaluator_follows_the_iam_rules_it_claims() -> None:
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Read", "Effect": "Allow", "Action": ["s3:Get*"], "Resource": ["arn:aws:s3:::b/models/*/model/*"]},
        {"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
         "Condition": {"StringLike": {"s3:prefix": ["models/*"]}}},
        {"Sid": "NotThere", "Effect": "Deny", "Action": "s3:getobject", "Resource": "arn:aws:s3:::b/models/x/*"}]}
    assert evaluate(policy, authz_of("GET", "/b/models/m/versions/1/model/f", "")).allowed_by == ("Read",)
    assert evaluate(policy, authz_of("HEAD", "/b/models/a/b/model/c", "")).allowed  # * spans /
    assert not evaluate(policy, authz_of("GET", "/b/models/m/versions/1/spec.json", "")).allowed
    assert not evaluate(policy, authz_of("GET", "/b/models/x/model/f", "")).allowed  # an explicit Deny wins
    assert evaluate(policy, authz_of("GET", "/b", "list-type=2&prefix=models%2Fm%2F")).allowed
    assert not evaluate(policy, authz_of("GET", "/b", "list-type=2&prefix=data%2F")).allowed
    assert not evaluate(policy, authz_of("GET", "/b", "list-type=2")).allowed  # no prefix: the condition fails
    assert not evaluate(policy, authz_of("HEAD", "/b", "")).allowed  # HeadBucket is ListBucket without a prefix
    assert not evaluate(policy, authz_of("PUT", "/b/models/m/model/f", "")).allowed  # implicit deny
    assert authz_of("PUT", "/b/k", "uploadId=1&partNumber=1") is None  # not a request these rules know
    with pytest.raises(ValueError):
        evaluate({"Statement": [{"Effect": "Allow", "NotAction": "s3:PutObject", "Resource": "*"}]},
                 authz_of("GET", "/b/k", ""))


@pytest.mark.parametrize("role", ROLES)
def test_each_policy_is_a_document_minio_accepts_for_the_manifests_bucket(role) -> None:
    import yaml

    config = yaml.safe_load((POLICIES.parent / "base" / "monitor.yaml").read_text())
    assert config["registry"] == f"s3://driftloop/{REGISTRY}" and config["retrain"]["data_dir"] == \
        f"s3://driftloop/{RETRAIN}"
    document = json.loads((POLICIES / f"{role}.json").read_text())
    check_document(document)
    resources = {r for s in document["Statement"] for r in ([s["Resource"]] if isinstance(s["Resource"], str)
                                                             else s["Resource"])}
    assert all(r == "arn:aws:s3:::driftloop" or r.startswith("arn:aws:s3:::driftloop/") for r in resources)


# --- each role's real code path, with its own keys ----------------------------------------------

def test_every_request_of_each_roles_runs_is_known_and_allowed(loop: World) -> None:
    assert set(loop.runs) == set(ROLES)
    for role, (start, end) in loop.runs.items():
        seen = loop.enforcer.seen[start:end]
        assert seen and {s.role for s in seen} == {role}, role
        unknown = [s.request for s in seen if s.authz is None]
        refused = [(s.request.method, s.request.path) for s in seen if not s.allowed]
        assert not unknown and not refused, (role, unknown, refused)


def test_the_loop_did_its_work_with_these_keys(loop: World) -> None:
    """Not a vacuous pass: the monitor's entries and table, v2 registered from that table, both versions fetched."""
    from driftloop.serving.versions import ServedVersion
    from driftloop.signing import Trust, load_signing_key

    registry = S3Registry(loop.registry_uri, loop.admin)
    assert [v.version for v in registry.list_versions(MODEL)] == [1, 2]
    assert registry.get_version(MODEL, 2).lineage["data_uri"].startswith(f"s3://{loop.bucket}/{RETRAIN}/")
    assert registry.aliases(MODEL)[PRODUCTION] == 1
    assert "retrain-triggered" in {e.action for e in registry.history(MODEL) if e.actor == "drift-monitor"}
    assert registry.verify(MODEL) == []
    # What the serving role can read is all the runtime needs: it serves v2, its signature required.
    trust = Trust([load_signing_key().public_key], require=True)
    served = ServedVersion.from_directory(str(loop.fetched[2]), trust)
    assert (served.name, served.version) == (MODEL, 2)


def test_every_grant_of_every_policy_is_used(loop: World) -> None:
    """Least privilege, read the other way: no Allow statement, and no resource in one, that no run needed —
    but two, each the same request as one that ran, on another prefix: the monitor reads a retrain table as
    reference data once the version it retrains from was trained on one (the next loop), and a pipeline run
    on a user's data reads it from data/ as this one read the monitor's table from retrain/."""
    unexercised_on_purpose = {("monitor", f"arn:aws:s3:::{loop.bucket}/{RETRAIN}/*"),
                              ("pipeline", f"arn:aws:s3:::{loop.bucket}/{DATA}/*")}
    for role in ROLES:
        document = policy(role, loop.bucket)
        seen = [s for s in loop.enforcer.seen if s.role == role and s.allowed]
        for statement in document["Statement"]:
            if statement["Effect"] != "Allow":
                continue
            resources = [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
            for resource in resources:
                narrowed = {**statement, "Resource": [resource]}
                used = any(evaluate({"Statement": [narrowed]}, s.authz).allowed for s in seen)
                assert used or (role, resource) in unexercised_on_purpose, (role, statement["Sid"], resource)


def test_each_role_is_refused_what_it_must_not_do(loop: World) -> None:
    """The same clients, the same keys: each forbidden write or read is AccessDenied and changes nothing."""
    import boto3
    from botocore.exceptions import ClientError
    from minio.error import S3Error

    from driftloop import storage
    from driftloop.errors import DataError, RegistryError

    bucket, version = f"s3://{loop.bucket}", f"{REGISTRY}/models/{MODEL}/versions/1"
    model_file, entry = f"{version}/model/model.joblib", f"{REGISTRY}/models/{MODEL}/audit/0000000000.json"
    before = {key: loop.exists(key) for key in (model_file, entry, f"{DATA}/churn.csv", f"{version}/version.json")}
    mark = loop.enforcer.mark()

    # The monitor writes audit entries and retrain tables, never a version (nor into one through the audit
    # patterns, whose * spans /), and deletes nothing but its probe.
    monitor = loop.settings("monitor")
    with pytest.raises(RegistryError, match="AccessDenied"):
        S3Registry(loop.registry_uri, monitor).register(MODEL, loop.fetched[1], model_format="sklearn", lineage={},
                                                        metrics={}, attachments={}, actor="drift-monitor")
    for key in (model_file, f"{version}/model/audit/0000000099.json", f"{version}/model/audit-head.json",
                f"{DATA}/churn.csv"):
        with pytest.raises(DataError, match="AccessDenied"):
            storage.write_bytes(f"{bucket}/{key}", b"not a model", monitor)
    with pytest.raises(S3Error, match="AccessDenied"):
        monitor.client().remove_object(loop.bucket, entry)

    # The pipeline writes versions and audit entries, never the monitor's tables or the user's data.
    pipeline = loop.settings("pipeline")
    for key in (f"{RETRAIN}/{MODEL}/retrain-forged.parquet", f"{DATA}/churn.csv"):
        with pytest.raises(DataError, match="AccessDenied"):
            storage.write_bytes(f"{bucket}/{key}", b"forged rows", pipeline)
    with pytest.raises(S3Error, match="AccessDenied"):
        pipeline.client().remove_object(loop.bucket, model_file)

    # The storage initializer reads model directories and nothing else, and writes nothing. It can list key
    # names (KServe's HeadBucket is authorised as ListBucket without a prefix), never read what they hold.
    env = loop.env["serving"]
    s3 = boto3.client("s3", endpoint_url=env["DRIFTLOOP_S3_ENDPOINT"], region_name="us-east-1",
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    for key in (f"{version}/version.json", f"{version}/spec.json", entry, f"{DATA}/churn.csv",
                f"{REGISTRY}/models/{MODEL}/audit-head.json"):
        with pytest.raises(ClientError, match="AccessDenied"):
            s3.get_object(Bucket=loop.bucket, Key=key)
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.put_object(Bucket=loop.bucket, Key=model_file, Body=b"not a model")
    listed = s3.list_objects_v2(Bucket=loop.bucket, Prefix=f"{DATA}/")
    assert [o["Key"] for o in listed["Contents"]] == [f"{DATA}/churn.csv"]

    # KServe's agent writes payload logs and nothing else: it cannot read them back, list them, or touch the
    # registry.
    env = loop.env["logger"]
    agent = boto3.client("s3", endpoint_url=env["DRIFTLOOP_S3_ENDPOINT"], region_name="us-east-1",
                         aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    [logged] = [o["Key"] for o in boto3.client(
        "s3", endpoint_url=env["DRIFTLOOP_S3_ENDPOINT"], region_name="us-east-1", aws_access_key_id=ADMIN,
        aws_secret_access_key="admin").list_objects_v2(Bucket=loop.bucket, Prefix=f"{PAYLOAD_LOGS}/")["Contents"]
        if o["Key"].endswith("logged-0-request.json")]
    with pytest.raises(ClientError, match="AccessDenied"):
        agent.get_object(Bucket=loop.bucket, Key=logged)
    with pytest.raises(ClientError, match="AccessDenied"):
        agent.list_objects_v2(Bucket=loop.bucket, Prefix=f"{PAYLOAD_LOGS}/")
    with pytest.raises(ClientError, match="AccessDenied"):
        agent.put_object(Bucket=loop.bucket, Key=model_file, Body=b"not a model")

    assert {key: loop.exists(key) for key in before} == before
    refused = [s for s in loop.enforcer.since(mark) if not s.allowed]
    assert all(s.authz is not None for s in refused)  # refused by a policy, not for being unknown
    assert {s.role for s in refused} == set(ROLES)
