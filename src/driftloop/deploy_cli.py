"""``driftloop deploy``: put a registry version behind KServe (or the local gateway) and steer it."""

from __future__ import annotations

import argparse
import json

from driftloop.errors import ConfigError
from driftloop.settings import Settings


def add_deploy_parser(sub, add_common) -> None:
    deploy = sub.add_parser("deploy", help="deploy a version as an InferenceService (KServe) or to the local gateway")
    deploy.add_argument("name")
    deploy.add_argument("--version", type=int, help="default: the canary, else production")
    deploy.add_argument("--target", choices=["local", "kserve"], default="local")
    action = deploy.add_mutually_exclusive_group()
    action.add_argument("--promote", action="store_true", help="the canary takes all traffic")
    action.add_argument("--rollback", action="store_true", help="the previous version takes all traffic")
    action.add_argument("--status", action="store_true", help="show the traffic split (KServe)")
    deploy.add_argument("--canary-percent", type=int, default=10)
    deploy.add_argument("--dry-run", action="store_true", help="print the InferenceService YAML; change nothing")
    deploy.add_argument("--namespace", default="default")
    deploy.add_argument("--service-account", default="driftloop-serving")
    deploy.add_argument("--logger-url", default="", help="the drift monitor's Service URL for payload logging")
    deploy.add_argument("--deployment-mode", default="Serverless", choices=["Serverless", "RawDeployment"])
    deploy.add_argument("--context", help="kubeconfig context")
    add_common(deploy)


def run_deploy(args: argparse.Namespace) -> int:
    from driftloop.deploy.inference_service import ServingConfig, build_inference_service, to_yaml
    from driftloop.registry import CANARY, PRODUCTION, open_registry

    registry = open_registry(Settings.resolve(args.home, args.registry).registry_uri)
    registry.require_model(args.name)
    aliases = registry.aliases(args.name)
    actor = "driftloop deploy"
    if args.version is not None and args.version in registry.state(args.name).archived:
        raise ConfigError(f"{args.name} v{args.version} is archived; it cannot be deployed")
    if args.target == "local":
        if args.dry_run:
            raise ConfigError("--dry-run prints an InferenceService; use it with --target kserve")
        return _local(args, registry, aliases, actor)
    config = ServingConfig(namespace=args.namespace, service_account=args.service_account,
                           logger_url=args.logger_url, deployment_mode=args.deployment_mode)
    number = args.version or aliases.get(CANARY) or aliases.get(PRODUCTION)
    if number is None:
        raise ConfigError(f"model '{args.name}' has no canary or production version; pass --version")
    version = registry.get_version(args.name, number)
    canary = None if aliases.get(PRODUCTION) in (None, number) else args.canary_percent
    if args.dry_run:
        print(to_yaml(build_inference_service(version, config, canary)), end="")
        return 0
    from driftloop.deploy.kserve_client import KServeDeployer

    deployer = KServeDeployer.from_kubeconfig(config, args.context)
    if args.status:
        split = deployer.traffic(args.name)
        print(json.dumps({"ready": split.ready, "traffic": split.revisions}) if args.json else split.describe())
        return 0
    if args.promote:
        deployer.promote(args.name)
        if aliases.get(CANARY) is not None:
            registry.promote(args.name, actor=actor, reason="promoted on KServe")
    elif args.rollback:
        deployer.rollback(args.name)
        if aliases.get(CANARY) is not None:
            registry.remove_alias(args.name, CANARY, actor=actor, action="rollout-abort", reason="rolled back on KServe")
        else:  # no canary: the previous revision takes over, so production returns to the version before
            registry.rollback(args.name, actor=actor, reason="rolled back on KServe")
    else:
        deployer.deploy(version, canary)
        if canary is not None:
            registry.set_alias(args.name, CANARY, number, actor=actor, action="deploy-canary",
                               reason=f"KServe canary at {canary}%", evidence={"canary_traffic_percent": canary})
        elif aliases.get(PRODUCTION) != number:
            registry.promote(args.name, number, actor=actor, reason="deployed on KServe")
    print(f"{args.name}: {deployer.traffic(args.name).describe()}")
    return 0


def _local(args, registry, aliases, actor) -> int:
    from driftloop import steps
    from driftloop.registry import CANARY, PRODUCTION

    if args.promote:
        entry = registry.promote(args.name, actor=actor)
    elif args.rollback:
        entry = registry.rollback(args.name, actor=actor)
    elif args.status:
        print(json.dumps(registry.aliases(args.name)))
        return 0
    else:
        number = args.version or aliases.get(CANARY) or aliases.get(PRODUCTION)
        result = steps.deploy(registry.uri, args.name, number, args.canary_percent, actor=actor)
        print(f"{args.name} v{result.version}: {result.action}")
        return 0
    print(f"{entry.action}: {args.name} → v{entry.to_version}")
    return 0
