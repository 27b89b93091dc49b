"""S3 authorisation as AWS and MinIO evaluate an identity policy, for the tests: which action and resource
an S3 REST request is, and whether a policy document allows it.

Deliberately small, and strict where it is small: it knows the path-style requests driftloop's clients
(minio-py) and KServe's storage initializer (boto3) send, and says "unknown" for anything else rather than
guess; it evaluates Effect, Action, Resource and the StringLike / StringEquals conditions, and refuses a
policy that uses anything more (NotAction, NotResource, Principal, other operators). The rules it follows:

- request → action (AWS "Actions, resources and condition keys for Amazon S3"; MinIO the same names):
  GET/HEAD of an object is ``s3:GetObject``, PUT ``s3:PutObject`` (conditional or not), DELETE
  ``s3:DeleteObject``; GET of a bucket with list parameters ``s3:ListBucket`` with the condition keys
  ``s3:prefix``, ``s3:delimiter``, ``s3:max-keys`` when given; HEAD of a bucket ``s3:ListBucket`` with no
  prefix (AWS authorises HeadBucket as ListBucket); ``?location`` ``s3:GetBucketLocation``.
- evaluation: an explicit Deny in any matching statement wins, else any matching Allow allows, else the
  request is denied. Action names match case-insensitively, resources case-sensitively; ``*`` matches any
  run of characters, ``/`` included, ``?`` one character. A condition on a key the request does not carry
  is false (StringLike and StringEquals are not ``…IfExists``); the values of one key are alternatives,
  separate keys and operators must all hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import parse_qs, unquote

LIST_PARAMETERS = {"list-type", "prefix", "delimiter", "start-after", "max-keys", "continuation-token",
                   "encoding-type", "fetch-owner", "marker"}
CONDITION_KEYS = {"prefix": "s3:prefix", "delimiter": "s3:delimiter", "max-keys": "s3:max-keys"}
OPERATORS = {"StringLike", "StringEquals"}
OBJECT_METHODS = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject", "DELETE": "s3:DeleteObject"}
BUCKET_ACTIONS = {"s3:ListBucket", "s3:GetBucketLocation"}


@dataclass(frozen=True)
class Authz:
    """What a request asks to do: the action, the resource's ARN and the condition keys it carries."""

    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    allowed_by: tuple[str, ...] = ()  # the Sids of matching Allow statements
    denied_by: tuple[str, ...] = ()  # the Sids of matching Deny statements


def authz_of(method: str, path: str, query: str) -> Authz | None:
    """The action a path-style S3 request asks for, or None for a request these rules do not cover."""
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    params = parse_qs(query, keep_blank_values=True)
    if not bucket:
        return None
    if not key:
        if set(params) == {"location"} and method == "GET":
            return Authz("s3:GetBucketLocation", f"arn:aws:s3:::{bucket}")
        if method == "HEAD" and not params:
            return Authz("s3:ListBucket", f"arn:aws:s3:::{bucket}")
        if method == "GET" and set(params) <= LIST_PARAMETERS:
            context = {CONDITION_KEYS[k]: v[0] for k, v in params.items() if k in CONDITION_KEYS}
            return Authz("s3:ListBucket", f"arn:aws:s3:::{bucket}", context)
        return None
    if params or method not in OBJECT_METHODS:  # sub-resources (uploads, tagging, acl, …) are other actions
        return None
    return Authz(OBJECT_METHODS[method], f"arn:aws:s3:::{bucket}/{key}")


def evaluate(policy: dict, request: Authz) -> Decision:
    """Whether ``policy`` (an identity policy document) allows ``request``."""
    allowed_by, denied_by = [], []
    for number, statement in enumerate(_statements(policy)):
        if _matches(statement, request):
            sid = statement.get("Sid", f"statement {number}")
            (denied_by if statement["Effect"] == "Deny" else allowed_by).append(sid)
    return Decision(bool(allowed_by) and not denied_by, tuple(allowed_by), tuple(denied_by))


def check_document(policy: dict) -> None:
    """Raises ValueError where MinIO's policy parser would refuse the document (or these rules cannot judge it):
    bucket actions need a bucket ARN and object actions an object ARN in the same statement, and a condition
    key must be one the action supports (here: ``s3:prefix`` and friends on ``s3:ListBucket`` only)."""
    if policy.get("Version") != "2012-10-17":
        raise ValueError("Version must be 2012-10-17")
    for statement in _statements(policy):
        resources = _listed(statement["Resource"])
        for action in _listed(statement["Action"]):
            bucket_level = action in BUCKET_ACTIONS
            wanted = [r for r in resources if ("/" in r.removeprefix("arn:aws:s3:::")) != bucket_level]
            if not wanted:
                raise ValueError(f"{statement.get('Sid')}: {action} has no {'bucket' if bucket_level else 'object'} "
                                 "resource")
            keys = {key for condition in statement.get("Condition", {}).values() for key in condition}
            if keys and (action != "s3:ListBucket" or not keys <= set(CONDITION_KEYS.values())):
                raise ValueError(f"{statement.get('Sid')}: condition keys {sorted(keys)} do not apply to {action}")


def _statements(policy: dict) -> list[dict]:
    statements = policy["Statement"]
    statements = statements if isinstance(statements, list) else [statements]
    for statement in statements:
        unsupported = set(statement) - {"Sid", "Effect", "Action", "Resource", "Condition"}
        if unsupported or statement.get("Effect") not in ("Allow", "Deny"):
            raise ValueError(f"statement {statement.get('Sid')}: {sorted(unsupported) or 'Effect'} not supported")
        if not set(statement.get("Condition", {})) <= OPERATORS:
            raise ValueError(f"statement {statement.get('Sid')}: only {sorted(OPERATORS)} conditions are supported")
    return statements


def _matches(statement: dict, request: Authz) -> bool:
    if not any(_glob(a.lower()).fullmatch(request.action.lower()) for a in _listed(statement["Action"])):
        return False
    if not any(_glob(r).fullmatch(request.resource) for r in _listed(statement["Resource"])):
        return False
    for operator, keys in statement.get("Condition", {}).items():
        for key, wanted in keys.items():
            value = request.context.get(key)
            if value is None:
                return False
            if operator == "StringLike" and not any(_glob(w).fullmatch(value) for w in _listed(wanted)):
                return False
            if operator == "StringEquals" and value not in _listed(wanted):
                return False
    return True


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@cache
def _glob(pattern: str) -> re.Pattern:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.DOTALL)
