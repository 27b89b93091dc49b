"""Who is acting: a verified Kubernetes identity where one exists, else a self-declared name, marked as such.

Approvals name their actor. In a pod, the identity is the pod's ServiceAccount: the ``sub`` claim
(``system:serviceaccount:<namespace>:<name>``) of the token the kubelet projects into it. Outside a pod but with
a kubeconfig, the API server says who the credentials belong to (a ``SelfSubjectReview``,
``authentication.k8s.io/v1``, Kubernetes >= 1.28). Otherwise — or when the API server cannot say — the name is
``--actor`` or the login name, recorded with ``"verified": false`` so nobody mistakes it for more.
"""

from __future__ import annotations

import base64
import getpass
import json
from dataclasses import asdict, dataclass
from pathlib import Path

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@dataclass(frozen=True)
class Actor:
    """Who is acting.

    Attributes:
        name: The name audit entries record (a verified identity's username, else the declared name).
        verified: Whether ``name`` comes from a credential the cluster vouches for.
        source: "serviceaccount-token", "selfsubjectreview", "declared" (``--actor``) or "login".
        declared: A name given with ``--actor`` that differs from the verified identity (kept, not trusted).
        note: Why a verified identity was not used, when one was looked for.
    """

    name: str
    verified: bool
    source: str
    declared: str | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


def resolve_actor(declared: str | None = None, *, api_client=None,
                  token_path: Path = SERVICE_ACCOUNT_TOKEN) -> Actor:
    """The actor behind this call.

    Args:
        declared: ``--actor``; recorded as self-declared unless nothing verified exists.
        api_client: A configured kubernetes ``ApiClient`` to ask for a SelfSubjectReview (the caller has a
            cluster to talk to); None: do not ask.
        token_path: The projected ServiceAccount token (a pod's).
    """
    verified, note = _service_account(token_path), ""
    if verified is None and api_client is not None:
        verified, note = _self_subject_review(api_client)
    if verified is not None:
        return Actor(verified[0], True, verified[1], declared if declared and declared != verified[0] else None)
    if declared:
        return Actor(declared, False, "declared", note=note)
    return Actor(login_name(), False, "login", note=note)


def _service_account(token_path: Path) -> tuple[str, str] | None:
    """The ``sub`` claim of the pod's projected ServiceAccount token (read, not re-verified: the kubelet
    mounted it read-only into this pod, and the API server checks it on every call it is used for)."""
    try:
        payload = token_path.read_text().strip().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (OSError, IndexError, ValueError):
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    if isinstance(subject, str) and subject.startswith("system:serviceaccount:"):
        return subject, "serviceaccount-token"
    return None


def _self_subject_review(api_client) -> tuple[tuple[str, str] | None, str]:
    """The username the API server sees behind the kubeconfig's credentials, or why it cannot say."""
    from kubernetes.client import AuthenticationV1Api, V1SelfSubjectReview
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        review = AuthenticationV1Api(api_client).create_self_subject_review(
            V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"))
    except ApiException as exc:
        return None, (f"the Kubernetes API server answered HTTP {exc.status} to a SelfSubjectReview "
                      "(authentication.k8s.io/v1, Kubernetes >= 1.28); the actor is self-declared")
    except (HTTPError, OSError) as exc:
        return None, f"cannot reach the Kubernetes API for a SelfSubjectReview ({type(exc).__name__}); the actor " \
                     "is self-declared"
    username = getattr(getattr(getattr(review, "status", None), "user_info", None), "username", None)
    if not username:
        return None, "the SelfSubjectReview named no user; the actor is self-declared"
    return (username, "selfsubjectreview"), ""


def login_name() -> str:
    """The operating system login name (a self-declared identity)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"
