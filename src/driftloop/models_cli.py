"""``driftloop models …``: inspect and steer the registry from the command line."""

from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path

from driftloop import signing
from driftloop.errors import ConfigError
from driftloop.registry import ModelRegistry, open_registry
from driftloop.settings import Settings

EXIT_PROBLEMS = 1


def add_models_parser(sub, add_common) -> None:
    models = sub.add_parser("models", help="list, inspect, promote, roll back, verify and reproduce model versions")
    verbs = models.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = verbs.add_parser(name, help=help_text)
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
    verify = verb("verify", "check the audit chain, every signature and every stored file's checksum")
    verify.add_argument("name", nargs="?", help="default: every model")
    reproduce = verb("reproduce", "retrain a version from its lineage and compare metrics and predictions")
    reproduce.add_argument("name")
    reproduce.add_argument("version", type=int)
    keygen = verbs.add_parser("keygen", help="make the registry's signing key pair: the private key for writers, "
                              "the public key for readers")
    keygen.add_argument("--out", required=True, metavar="DIR",
                        help=f"directory for {signing.PRIVATE_KEY_FILE} (mode 0600) and {signing.PUBLIC_KEY_FILE}; "
                        "existing files are never overwritten")
    keygen.add_argument("--json", action="store_true", help="print the key id and the two paths as JSON")
    for parser in (promote, rollback, set_alias, archive):
        parser.add_argument("--reason", default="", help="recorded in the audit trail")
        parser.add_argument("--actor", help="who is acting (default: the login name)")


def run_models(args: argparse.Namespace) -> int:
    from driftloop import console

    if args.verb == "keygen":
        return _keygen(args)
    registry = open_registry(Settings.resolve(args.home, args.registry).registry_uri)
    actor = getattr(args, "actor", None) or _login()
    verb = args.verb
    if getattr(args, "name", None):
        registry.require_model(args.name)
    if verb == "list":
        rows = [_model_row(registry, name) for name in registry.list_models()]
        return _emit(args, rows, lambda: console.print_models(rows, registry.uri))
    if verb == "show":
        if args.version is None:
            versions = registry.list_versions(args.name)
            state = registry.state(args.name)
            rows = [v.to_dict() | {"aliases": sorted(a for a, n in state.aliases.items() if n == v.version),
                                   "archived": v.version in state.archived} for v in versions]
            return _emit(args, rows, lambda: console.print_versions(args.name, rows))
        version = registry.get_version(args.name, args.version).to_dict()
        return _emit(args, version, lambda: console.print_version(version))
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


def _model_row(registry: ModelRegistry, name: str) -> dict:
    versions = registry.list_versions(name)
    history = registry.history(name)
    state = registry.state(name)
    return {
        "name": name, "versions": len(versions), "latest": versions[-1].version if versions else None,
        "aliases": state.aliases, "last_change": history[-1].at if history else None,
        "last_action": history[-1].action if history else None,
    }


def _emit(args: argparse.Namespace, payload, render) -> int:
    if args.json:
        print(json.dumps(payload, indent=2, sort_keys=True, default=str))
    else:
        render()
    return 0


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"
