"""``driftloop models …``: inspect and steer the registry from the command line."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from driftloop import signing
from driftloop.cli_style import exit_codes
from driftloop.errors import ConfigError, DriftloopError, RegistryError
from driftloop.identity import login_name
from driftloop.registry import ModelRegistry, open_registry
from driftloop.settings import Settings

EXIT_PROBLEMS = 1


def add_models_parser(sub, add_common) -> None:
    models = sub.add_parser("models", help="list, inspect, promote, roll back, verify and reproduce model versions",
                            epilog=exit_codes("see each verb's --help"))
    verbs = models.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help_text: str, failure: str = "the registry could not be read or changed (a store "
             "did not answer, a stored file is corrupt)") -> argparse.ArgumentParser:
        parser = verbs.add_parser(name, help=help_text, epilog=exit_codes(failure))
        add_common(parser)
        return parser

    verb("list", "registered models with their production and canary versions")
    show = verb("show", "a model's versions, or one version's lineage, files and metrics")
    show.add_argument("name")
    show.add_argument("version", nargs="?", type=int)
    promote = verb("promote", "make a version (default: the canary) production")
    promote.add_argument("name")
    promote.add_argument("version", nargs="?", type=int)
    rollback = verb("rollback", "return production to the version it replaced; clears any canary")
    rollback.add_argument("name")
    set_alias = verb("set-alias", "point an alias at a version (or remove it with --remove)")
    set_alias.add_argument("name")
    set_alias.add_argument("alias")
    set_alias.add_argument("version", nargs="?", type=int)
    set_alias.add_argument("--remove", action="store_true")
    archive = verb("archive", "retire a version: it keeps its files but can take no alias")
    archive.add_argument("name")
    archive.add_argument("version", type=int)
    history = verb("history", "the audit trail: who did what, when, from which version to which, and why")
    history.add_argument("name")
    verify = verb("verify", "check the audit chain, every signature and every stored file's checksum",
                  "problems were found (each is listed)")
    verify.add_argument("name", nargs="?", help="default: every model")
    reproduce = verb("reproduce", "retrain a version from its lineage and compare metrics and predictions",
                     "the retrained model differs (metrics, predictions or data)")
    reproduce.add_argument("name")
    reproduce.add_argument("version", type=int)
    keygen = verbs.add_parser("keygen", help="make the registry's signing key pair: the private key for writers, "
                              "the public key for readers", epilog=exit_codes("the key files could not be written"))
    keygen.add_argument("--out", required=True, metavar="DIR",
                        help=f"directory for {signing.PRIVATE_KEY_FILE} (mode 0600) and {signing.PUBLIC_KEY_FILE}; "
                        "existing files are never overwritten")
    keygen.add_argument("--json", action="store_true", help="print the key id and the two paths as JSON")
    for parser in (promote, rollback, set_alias, archive):
        parser.add_argument("--reason", default="", help="recorded in the audit trail")
        parser.add_argument("--actor", help="who is acting (default: the login name)")
    _add_approval_parsers(verb)


def _add_approval_parsers(verb) -> None:
    """``policy``, ``approve``, ``reject`` and ``pending``: governance of promotions."""
    from driftloop.deploy_cli import add_serving_arguments
    from driftloop.registry.approvals import DEFAULT_TIMEOUT

    policy = verb("policy", "show or set the model's approval policy: a canary that passed its analysis waits "
                  "for a person's approval before it becomes production")
    policy.add_argument("name")
    switch = policy.add_mutually_exclusive_group()
    switch.add_argument("--require-approval", action="store_true", help="switch the policy on (or change it)")
    switch.add_argument("--off", action="store_true", help="switch the policy off")
    policy.add_argument("--approvers", default="", help="comma-separated actors who may decide (default: anyone)")
    policy.add_argument("--four-eyes", action="store_true",
                        help="the decider must differ from whoever registered the version or triggered its run")
    policy.add_argument("--verified-only", action="store_true",
                        help="only verified identities (a Kubernetes user or ServiceAccount) may decide")
    policy.add_argument("--timeout", help="how long a canary may wait before it is rolled back, e.g. 90m, 24h, 2d "
                        f"(default: {DEFAULT_TIMEOUT})")
    decisions = []
    for name, help_text in (("approve", "promote a canary that waits for approval"),
                            ("reject", "take a canary that waits for approval out of service")):
        decision = verb(name, help_text)
        decision.add_argument("name")
        decision.add_argument("version", type=int)
        decision.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
        decisions.append(decision)
    pending = verb("pending", "canaries waiting for approval, with their age and deadline; rolls back those past "
                   "their timeout (run it from cron to enforce timeouts without a monitor)")
    pending.add_argument("name", nargs="?", help="default: every model")
    for parser in (policy, *decisions, pending):
        parser.add_argument("--actor", help="who is acting when no verified identity exists (a pod's "
                            "ServiceAccount, or the kubeconfig's user); default: the login name")
    for parser in (*decisions, pending):
        add_serving_arguments(parser, as_recorded=True)


def run_models(args: argparse.Namespace) -> int:
    from driftloop import console

    if args.verb == "keygen":
        return _keygen(args)
    registry = open_existing_registry(Settings.resolve(args.home, args.registry).registry_uri)
    actor = getattr(args, "actor", None) or login_name()
    verb = args.verb
    if getattr(args, "name", None):
        registry.require_model(args.name)
    if verb in {"policy", "approve", "reject", "pending"}:
        return _governance(registry, args)
    if verb == "list":
        rows = [_model_row(registry, name) for name in registry.list_models()]
        return _emit(args, rows, lambda: console.print_models(rows, registry.uri))
    if verb == "show":
        if args.version is None:
            versions = registry.list_versions(args.name)
            state = registry.state(args.name)
            pending = state.pending_approval
            rows = [v.to_dict() | {"aliases": sorted(a for a, n in state.aliases.items() if n == v.version),
                                   "archived": v.version in state.archived,
                                   "pending_approval": pending.to_dict() if pending and pending.version == v.version
                                   else None} for v in versions]
            task = _task_words(_spec_of(registry, args.name, versions[-1].version)) if versions else ""
            return _emit(args, rows, lambda: console.print_versions(args.name, rows, state.approval_policy,
                                                                    time.time(), task))
        version = registry.get_version(args.name, args.version).to_dict()
        task = _task_words(_spec_of(registry, args.name, args.version))
        return _emit(args, version, lambda: console.print_version(version, _gate_decision(registry, version), task))
    if verb in {"promote", "rollback", "set-alias", "archive"}:
        entry = _steer(registry, args, actor)
        return _emit(args, entry.to_dict(), lambda: console.print_audit_entry(entry))
    if verb == "history":
        entries = registry.history(args.name)
        return _emit(args, [e.to_dict() for e in entries], lambda: console.print_history(args.name, entries))
    if verb == "verify":
        names = [args.name] if args.name else registry.list_models()
        report = {name: registry.verify_report(name) for name in names}
        _emit(args, {name: r.to_dict() for name, r in report.items()},
              lambda: console.print_verification(report, anchored=registry.trust.anchored))
        return EXIT_PROBLEMS if any(r.problems for r in report.values()) else 0
    if verb == "reproduce":
        from driftloop.reproduce import reproduce

        outcome = reproduce(registry, args.name, args.version)
        _emit(args, outcome.to_dict(), lambda: console.print_reproduction(outcome))
        return 0 if outcome.reproduced else EXIT_PROBLEMS
    raise ConfigError(f"unknown verb {verb}")


def open_existing_registry(uri: str) -> ModelRegistry:
    """The registry at ``uri``; a local path that holds no registry is a mistake (a typo), not an empty list."""
    if "://" not in uri or uri.startswith("file://"):
        root = Path(uri.removeprefix("file://")).expanduser()
        if not (root / "models").is_dir():
            what = "does not exist" if not root.exists() else "holds no registry (no models/ directory)"
            raise RegistryError(f"no registry at {uri}: the path {what}; pass --registry (or set "
                                "DRIFTLOOP_REGISTRY) to one that 'driftloop run' has registered models in")
    return open_registry(uri)


def _gate_decision(registry: ModelRegistry, version: dict) -> dict | None:
    """The gate decision the version was registered with (candidate and champion metrics side by side)."""
    if "evaluation.json" not in version["files"]:
        return None
    evaluation = json.loads(registry.read_file(version["name"], version["version"], "evaluation.json"))
    return evaluation.get("decision")


def _keygen(args: argparse.Namespace) -> int:
    """Writes a key pair and says where each half goes; never prints key material."""
    out = Path(args.out).expanduser()
    key = signing.write_key_pair(out)
    private, public = out / signing.PRIVATE_KEY_FILE, out / signing.PUBLIC_KEY_FILE
    if args.json:
        print(json.dumps({"key_id": key.key_id, "private_key": str(private), "public_key": str(public)}, indent=2))
        return 0
    print(f"key id {key.key_id}\n"
          f"  {private}  private (mode 0600): only for writers; keep it secret, back it up, never commit it\n"
          f"  {public}  public: for every reader\n"
          "next steps:\n"
          f"  cluster: put both files in manifests/base/ (git-ignored there); kustomize makes the Secret "
          f"driftloop-signing ({signing.SIGNING_KEY_ENV}) for the pipeline's writing steps and the monitor, and the "
          f"ConfigMap driftloop-verify-key ({signing.VERIFY_KEY_ENV}) for every reader (manifests/README.md)\n"
          f"  writers on this machine: export {signing.SIGNING_KEY_FILE_ENV}={private}\n"
          f"  readers: export {signing.VERIFY_KEY_FILE_ENV}={public}, or pin the id: "
          f"{signing.TRUSTED_KEY_IDS_ENV}={key.key_id}\n"
          f"  once every version you serve is signed: {signing.REQUIRE_SIGNATURES_ENV}=1 "
          "(the runtime: --require_signatures)")
    return 0


def _steer(registry: ModelRegistry, args: argparse.Namespace, actor: str):
    if args.verb == "promote":
        return registry.promote(args.name, args.version, actor=actor, reason=args.reason)
    if args.verb == "rollback":
        return registry.rollback(args.name, actor=actor, reason=args.reason)
    if args.verb == "archive":
        return registry.archive(args.name, args.version, actor=actor, reason=args.reason)
    if args.remove:
        return registry.remove_alias(args.name, args.alias, actor=actor, reason=args.reason)
    if args.version is None:
        raise ConfigError("set-alias needs a VERSION (or --remove)")
    return registry.set_alias(args.name, args.alias, args.version, actor=actor, reason=args.reason)


def _governance(registry: ModelRegistry, args: argparse.Namespace) -> int:
    from driftloop import console  # not driftloop.api: it imports pandas, seconds for a one-line answer
    from driftloop.deploy.approval import decide, deployment_for, expire_pending, pending_approvals
    from driftloop.deploy_cli import serving_arguments
    from driftloop.identity import resolve_actor

    if args.verb == "policy":
        settings = [flag for flag, given in (("--approvers", args.approvers), ("--four-eyes", args.four_eyes),
                                             ("--verified-only", args.verified_only), ("--timeout", args.timeout))
                    if given]
        if settings and not args.require_approval:
            raise ConfigError(f"{', '.join(settings)} set(s) the policy: add --require-approval")
        if not (args.require_approval or args.off):
            policy = registry.state(args.name).approval_policy
            return _emit(args, policy.to_dict() if policy else None, lambda: console.print_policy(args.name, policy))
        new = None if args.off else _policy_from(args)
        entry = registry.set_approval_policy(args.name, new, actor=resolve_actor(args.actor).name)
        return _emit(args, entry.to_dict(), lambda: console.print_policy(args.name, new, entry))
    if args.verb in ("approve", "reject"):
        traffic = decide(args.verb, registry, args.name, args.version, args.reason, actor=args.actor,
                         context=args.context, **serving_arguments(args))
        return _emit(args, traffic.to_dict(), lambda: print(f"{args.name} v{args.version} {args.verb}d; "
                                                           f"{traffic.describe()}"))
    # pending: roll back what is past its deadline (through the backend it serves on), then list what waits.
    names = [args.name] if args.name else registry.list_models()
    now, expired = time.time(), []
    for name in names:
        if registry.state(name).pending_approval is None:
            continue
        deployment = deployment_for(registry, name, "driftloop", context=args.context, **serving_arguments(args))
        deployment.actor = resolve_actor(args.actor, api_client=getattr(deployment, "api_client", None)).name
        gone = expire_pending(deployment, name, now)
        if gone is not None:
            expired.append(gone)
    waiting = pending_approvals(registry, args.name)
    payload = {"pending": [p.to_dict() | {"age_seconds": p.age_seconds(now)} for p in waiting],
               "expired": [p.to_dict() for p in expired]}
    return _emit(args, payload, lambda: console.print_pending(waiting, expired, now))


def _policy_from(args: argparse.Namespace):
    from driftloop.registry.approvals import DEFAULT_TIMEOUT, ApprovalPolicy, parse_duration

    approvers = tuple(a.strip() for a in args.approvers.split(",") if a.strip())
    return ApprovalPolicy(approvers=approvers, four_eyes=args.four_eyes,
                          timeout_seconds=parse_duration(args.timeout or DEFAULT_TIMEOUT),
                          verified_only=args.verified_only)


def _spec_of(registry: ModelRegistry, name: str, version: int):
    """A version's dataset spec (None when it has none to read)."""
    from driftloop.data import DatasetSpec

    try:
        return DatasetSpec.from_json(registry.read_file(name, version, "spec.json").decode())
    except (DriftloopError, ValueError, KeyError, OSError):
        return None


def _task_words(spec) -> str:
    """``multiclass (3 classes: …)`` for a spec, "" without one."""
    from driftloop.tasks import describe_task

    return describe_task(spec.task, spec.target_classes) if spec is not None else ""


def _model_row(registry: ModelRegistry, name: str) -> dict:
    versions = registry.list_versions(name)
    history = registry.history(name)
    state = registry.state(name)
    spec = _spec_of(registry, name, versions[-1].version) if versions else None
    return {
        "name": name, "task": spec.task if spec is not None else None, "versions": len(versions),
        "latest": versions[-1].version if versions else None,
        "aliases": state.aliases, "last_change": history[-1].at if history else None,
        "last_action": history[-1].action if history else None,
    }


def _emit(args: argparse.Namespace, payload, render) -> int:
    if args.json:
        print(json.dumps(payload, indent=2, sort_keys=True, default=str))
    else:
        render()
    return 0

