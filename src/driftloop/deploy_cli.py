"""``driftloop deploy``: serve a registry version locally or on KServe, and steer its traffic by hand.

Both targets go through the deployment port (:mod:`driftloop.deploy`), the same code the pipeline's deploy
step runs; the defaults are the CT parameters' (:mod:`driftloop.ct_params`).
"""

from __future__ import annotations

import argparse
import json

from driftloop.cli_style import exit_codes
from driftloop.ct_params import DEPLOYMENT_MODES, LOGGER_SETTINGS, SERVE_TARGETS, default_of
from driftloop.errors import ConfigError
from driftloop.logger_storage import FORMATS as LOG_FORMATS
from driftloop.settings import Settings


def add_deploy_parser(sub, add_common) -> None:
    deploy = sub.add_parser("deploy", help="serve a version (local gateway or a KServe InferenceService) and "
                            "steer its traffic",
                            epilog=exit_codes("the change could not be made (the cluster refused or did not answer, "
                                              "the version did not become ready in time)"))
    deploy.add_argument("name")
    deploy.add_argument("--version", type=int, help="default: the canary, else production")
    add_serving_arguments(deploy)
    action = deploy.add_mutually_exclusive_group()
    action.add_argument("--promote", action="store_true", help="the canary takes all traffic and becomes production")
    action.add_argument("--rollback", action="store_true",
                        help="take the canary out of service; without one, production returns to the version before")
    action.add_argument("--traffic", type=int, metavar="PERCENT", help="give the canary this share of traffic")
    action.add_argument("--status", action="store_true", help="show what serves and the traffic split")
    deploy.add_argument("--canary-percent", type=int, default=default_of("canary_percent"),
                        help="a new version's share beside production (100: no canary)")
    deploy.add_argument("--dry-run", action="store_true", help="print the InferenceService YAML; change nothing")
    add_common(deploy)


def add_serving_arguments(parser: argparse.ArgumentParser, *, as_recorded: bool = False) -> None:
    """Where versions serve: ``--target`` and the KServe settings, with the CT parameters' defaults.

    Args:
        as_recorded: Default every setting to None, meaning "where the waiting canary serves, as its approval
            request recorded it" (``driftloop models approve | reject | pending``).
    """
    def option(flag: str, name: str, help_text: str, shown: str = "%(default)s", **kwargs) -> None:
        default = None if as_recorded else default_of(name)
        shown = "as the approval request recorded" if as_recorded else shown
        parser.add_argument(flag, default=default, help=f"{help_text} (default: {shown})", **kwargs)

    option("--target", "serve_target", "where versions serve", choices=SERVE_TARGETS)
    option("--namespace", "serving_namespace", "KServe namespace", "the kubeconfig context's")
    option("--service-account", "serving_account", "predictor ServiceAccount")
    option("--logger-url", "logger_url", "the drift monitor's /events URL for payload logging", "none")
    option("--logger-storage", "logger_storage", "s3://bucket/prefix KServe's agent writes payload logs to "
           "instead (the monitor's kserve_store uri)", "none")
    option("--logger-storage-format", "logger_storage_format", "format of those objects (parquet, csv: KServe "
           ">= 0.17)", choices=LOG_FORMATS)
    option("--logger-storage-account", "logger_storage_account", "ServiceAccount holding the agent's S3 write "
           "credentials")
    option("--logger-batch-size", "logger_batch_size", "records per logged object", type=int)
    option("--deployment-mode", "deployment_mode", "KServe deployment mode", choices=DEPLOYMENT_MODES)
    option("--ready-timeout", "ready_timeout", "seconds a change may take to become ready", type=float)
    parser.add_argument("--context", help="kubeconfig context")


def serving_arguments(args: argparse.Namespace) -> dict:
    """The settings :func:`add_serving_arguments` added, as :func:`~driftloop.deploy.open_deployment` takes them
    (``context`` aside)."""
    return {"target": args.target, "namespace": args.namespace, "deployment_mode": args.deployment_mode,
            "service_account": args.service_account, "ready_timeout": args.ready_timeout,
            **{name: getattr(args, name) for name in LOGGER_SETTINGS}}


def run_deploy(args: argparse.Namespace) -> int:
    from driftloop.deploy import open_deployment
    from driftloop.models_cli import open_existing_registry
    from driftloop.registry import CANARY, PRODUCTION

    registry = open_existing_registry(Settings.resolve(args.home, args.registry).registry_uri)
    registry.require_model(args.name)
    aliases = registry.aliases(args.name)
    if args.version is not None and args.version in registry.state(args.name).archived:
        raise ConfigError(f"{args.name} v{args.version} is archived; it cannot be deployed")
    if args.dry_run:
        return _dry_run(args, registry, aliases)
    settings = serving_arguments(args)
    deployment = open_deployment(registry, settings.pop("target"), actor="driftloop deploy", context=args.context,
                                 **settings)
    if args.status:
        traffic = deployment.observe(args.name)
        if args.json:
            print(json.dumps(traffic.to_dict() if traffic else None))
        else:
            print(f"{args.name}: {traffic.describe() if traffic else 'nothing serves it here'}")
        return 0
    if args.promote:
        traffic = deployment.promote(args.name, reason="promoted by an operator")
    elif args.rollback:
        traffic = deployment.roll_back(args.name, reason="rolled back by an operator")
    elif args.traffic is not None:
        traffic = deployment.set_traffic(args.name, args.traffic, reason=f"set to {args.traffic}% by an operator")
    else:
        number = args.version or aliases.get(CANARY) or aliases.get(PRODUCTION)
        if number is None:
            raise ConfigError(f"model '{args.name}' has no canary or production version; pass --version")
        traffic = deployment.roll_out(args.name, number, args.canary_percent).traffic
    print(json.dumps(traffic.to_dict()) if args.json else f"{args.name}: {traffic.describe()}")
    return 0


def _dry_run(args: argparse.Namespace, registry, aliases: dict) -> int:
    """The InferenceService a roll out of the version would produce, as YAML for ``kubectl apply -f -``."""
    from driftloop.deploy.inference_service import ServingConfig, build_inference_service, to_yaml
    from driftloop.registry import CANARY, PRODUCTION

    if args.target != "kserve":
        raise ConfigError("--dry-run prints an InferenceService; use it with --target kserve")
    number = args.version or aliases.get(CANARY) or aliases.get(PRODUCTION)
    if number is None:
        raise ConfigError(f"model '{args.name}' has no canary or production version; pass --version")
    config = ServingConfig(namespace=args.namespace or "default", service_account=args.service_account,
                           deployment_mode=args.deployment_mode,
                           **{name: getattr(args, name) for name in LOGGER_SETTINGS})
    version = registry.get_version(args.name, number)
    production = aliases.get(PRODUCTION)
    if production in (None, number) or args.canary_percent >= 100:
        isvc = build_inference_service(version, config)
    else:
        isvc = build_inference_service(registry.get_version(args.name, production), config, version,
                                       args.canary_percent)
    print(to_yaml(isvc), end="")
    return 0
