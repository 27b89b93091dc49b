"""Approvals without serving: who the actor is, and the rules a policy in the audit trail enforces."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubernetes.client import ApiClient, Configuration

from driftloop.deploy import approval
from driftloop.deploy.local import LocalDeployment
from driftloop.errors import ConfigError
from driftloop.identity import Actor, resolve_actor
from driftloop.registry import CANARY, PRODUCTION, LocalRegistry, replay
from driftloop.registry.approvals import ApprovalPolicy, ApprovalRefused, parse_duration

# -- who is acting -----------------------------------------------------------------------------------------


def _token(path: Path, claims: dict) -> Path:
    """A token shaped as the kubelet projects it (header.claims.signature, base64url without padding)."""
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    path.write_text(f"{part({'alg': 'RS256', 'kid': 'k1'})}.{part(claims)}.c2lnbmF0dXJl")
    return path


def test_in_a_pod_the_actor_is_the_service_account_and_a_declared_name_is_only_noted(tmp_path) -> None:
    token = _token(tmp_path / "token", {"iss": "https://kubernetes.default.svc", "aud": ["https://kubernetes.default.svc"],
                                        "sub": "system:serviceaccount:ml-team:release-bot",
                                        "kubernetes.io": {"namespace": "ml-team",
                                                          "serviceaccount": {"name": "release-bot"}}})
    actor = resolve_actor("alice", token_path=token)
    assert actor == Actor("system:serviceaccount:ml-team:release-bot", True, "serviceaccount-token", declared="alice")


def test_without_a_verified_identity_the_name_is_self_declared(tmp_path) -> None:
    not_a_service_account = _token(tmp_path / "token", {"sub": "alice"})
    assert resolve_actor("alice", token_path=not_a_service_account) == Actor("alice", False, "declared")
    garbage = tmp_path / "garbage"
    garbage.write_text("not a token")
    login = resolve_actor(None, token_path=garbage)
    assert not login.verified and login.source == "login" and login.name


class _ApiServer(BaseHTTPRequestHandler):
    """The one endpoint of kube-apiserver asked here: POST selfsubjectreviews (authentication.k8s.io/v1), answered
    as the API server does (201, the review with status.userInfo), or 404 where the API is not served."""

    username: str | None = "alice@example.com"
    requests: list = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).requests.append((self.path, body))
        if self.path != "/apis/authentication.k8s.io/v1/selfsubjectreviews" or self.username is None:
            status, answer = 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                                   "message": "the server could not find the requested resource", "code": 404}
        else:
            status, answer = 201, {**body, "status": {"userInfo": {
                "username": self.username, "uid": "0f2c", "groups": ["ml-approvers", "system:authenticated"]}}}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("username", ["alice@example.com", None])
def test_with_a_kubeconfig_the_api_server_says_who_we_are_or_we_say_we_could_not_ask(tmp_path, username) -> None:
    _ApiServer.username, _ApiServer.requests = username, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = Configuration(host=f"http://127.0.0.1:{server.server_port}")
        actor = resolve_actor("bob", api_client=ApiClient(config), token_path=tmp_path / "no-token")
    finally:
        server.shutdown()
    assert _ApiServer.requests == [("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                     {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})]
    if username:
        assert actor == Actor("alice@example.com", True, "selfsubjectreview", declared="bob")
    else:
        assert (actor.name, actor.verified, actor.source) == ("bob", False, "declared")
        assert "HTTP 404 to a SelfSubjectReview" in actor.note and "self-declared" in actor.note


# -- the policy in the trail ---------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path) -> LocalRegistry:
    """v1 in production, v2 (registered by carol) the canary at 30 %."""
    registry = LocalRegistry(tmp_path / "registry")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.joblib").write_bytes(b"a stand-in: nothing here loads it")
    for actor in ("ci", "carol"):
        registry.register("churn", tmp_path / "m", model_format="sklearn", lineage={"triggered_by": "drift:w7"},
                          metrics={}, attachments={}, actor=actor)
    registry.promote("churn", 1, actor="ci")
    registry.set_alias("churn", CANARY, 2, actor="ci", evidence={"canary_traffic_percent": 30})
    return registry


def test_the_policy_is_an_audit_entry_replayed_into_the_state(registry) -> None:
    policy = ApprovalPolicy(approvers=("alice",), four_eyes=True, timeout_seconds=parse_duration("90m"))
    registry.set_approval_policy("churn", policy, actor="erin")
    assert registry.state("churn").approval_policy == policy
    assert replay(registry.history("churn")).approval_policy == policy
    registry.set_approval_policy("churn", None, actor="erin", reason="pilot over")
    entries = registry.history("churn")[-2:]
    assert [(e.action, e.actor) for e in entries] == [("approval-policy", "erin")] * 2
    assert entries[1].evidence == {"approval_policy": None, "previous": policy.to_dict()}
    assert registry.state("churn").approval_policy is None and registry.verify("churn") == []


def test_under_a_policy_only_an_approval_moves_production_forward(registry) -> None:
    registry.set_approval_policy("churn", ApprovalPolicy(), actor="erin")
    for move in (lambda: registry.promote("churn", actor="ops"),
                 lambda: registry.set_alias("churn", PRODUCTION, 2, actor="ops"),
                 lambda: LocalDeployment(registry, "ops").promote("churn"),
                 lambda: LocalDeployment(registry, "ops").roll_out("churn", 2, 100)):
        with pytest.raises(ApprovalRefused, match="churn requires approval"):
            move()
    with pytest.raises(ApprovalRefused, match="churn v2 is not pending approval"):
        registry.promote("churn", actor="ops", action="approve")
    assert registry.aliases("churn") == {PRODUCTION: 1, CANARY: 2}
    registry.promote("churn", 1, actor="ops")  # re-promoting what serves is no new version


def test_who_may_decide(registry) -> None:
    deployment = LocalDeployment(registry, "rollout")
    registry.set_approval_policy("churn", ApprovalPolicy(approvers=("alice", "carol"), four_eyes=True,
                                                         verified_only=True), actor="erin")
    assert deployment.conclude("churn", "passed", {"steps": []}) == "pending-approval"
    pending = registry.state("churn").pending_approval
    assert (pending.version, pending.stable_version, pending.registered_by, pending.triggered_by) == (
        2, 1, "carol", "drift:w7")
    assert registry.state("churn").canary_percent == 30  # held where it was
    alice_declared, alice = Actor("alice", False, "declared"), Actor("alice", True, "selfsubjectreview")
    carol = Actor("carol", True, "selfsubjectreview")
    with pytest.raises(ApprovalRefused, match="verified identities only; 'alice' is self-declared"):
        approval.approve(deployment, "churn", 2, alice_declared, "ok")
    with pytest.raises(ApprovalRefused, match="four eyes: 'carol' registered churn v2"):
        approval.reject(deployment, "churn", 2, carol, "no")
    with pytest.raises(ConfigError, match="needs a reason"):
        approval.approve(deployment, "churn", 2, alice, " ")
    with pytest.raises(ApprovalRefused, match="churn v1 is not pending approval \\(v2 is\\)"):
        approval.approve(deployment, "churn", 1, alice, "ok")
    approval.approve(deployment, "churn", 2, alice, "ok")
    assert registry.aliases("churn") == {PRODUCTION: 2}
    assert registry.history("churn")[-1].evidence["approval"]["identity"] == {"source": "selfsubjectreview"}


def test_a_decision_goes_through_the_backend_the_canary_serves_on(registry) -> None:
    registry.set_approval_policy("churn", ApprovalPolicy(), actor="erin")
    registry.request_approval("churn", 2, actor="rollout", serving={"target": "kserve", "namespace": "ml-team"})
    with pytest.raises(ConfigError, match="waits on target kserve namespace ml-team; decide there "
                                          "\\(--target kserve --namespace ml-team\\)"):
        approval.approve(LocalDeployment(registry, "ops"), "churn", 2, Actor("alice", False, "declared"), "ok")
    assert registry.aliases("churn") == {PRODUCTION: 1, CANARY: 2}


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "30m", "24h", "2d", "0.5h")] == [90, 90, 1800, 86400,
                                                                                     172800, 1800]
    for bad in ("0", "-1h", "soon", "3w", ""):
        with pytest.raises(ConfigError, match="timeout must be a positive duration"):
            parse_duration(bad)
