"""``driftloop serve`` (the local gateway) and ``driftloop rollout`` (automated canary analysis)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from driftloop.ct_params import DEPLOYMENT_MODES, SERVE_TARGETS, default_of
from driftloop.errors import ConfigError
from driftloop.http_guard import DEFAULT_MAX_BODY_BYTES
from driftloop.rollout.policy import RolloutPolicy
from driftloop.settings import Settings


def add_serve_parsers(sub, add_common, argv: list[str]) -> None:
    # Server flags extend KServe's own parser (--http_port, --workers, …); importing it costs seconds,
    # so only `driftloop serve` pays for it.
    parents = []
    if argv[:1] == ["serve"]:
        from kserve.model_server import parser as kserve_parser

        parents = [kserve_parser]
    serve = sub.add_parser("serve", parents=parents, conflict_handler="resolve",
                           help="serve every registered model's production version and canary (KServe V1/V2)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP port (default: KServe's --http_port, 8080)")
    serve.add_argument("--logger-url", help="payload log receiver (the drift monitor), e.g. http://127.0.0.1:8090/events; "
                       "its token from DRIFTLOOP_EVENTS_TOKEN or DRIFTLOOP_EVENTS_TOKEN_FILE")
    serve.add_argument("--payload-log-batch", type=int, default=0, metavar="N",
                       help="post up to N payload events per request as one CloudEvents batch "
                            "(application/cloudevents-batch+json; driftloop's monitor only). Default 0: one "
                            "binary-mode event per request, as KServe's agent sends them")
    serve.add_argument("--poll-interval", type=float, default=1.0, help="seconds between registry checks")
    serve.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    serve.add_argument("--namespace", default="local", help="namespace named in payload log events")
    add_common(serve, with_json=False)

    rollout = sub.add_parser("rollout", help="step a model's canary up, judging it against stable; promote or abort")
    rollout.add_argument("name")
    rollout.add_argument("--target", choices=SERVE_TARGETS, default=default_of("serve_target"),
                         help="where the canary serves (default: %(default)s)")
    rollout.add_argument("--gateway", default="http://127.0.0.1:8080",
                         help="local: the gateway whose /metrics is read (default: %(default)s)")
    rollout.add_argument("--prometheus", help="kserve: the Prometheus to query, e.g. http://prometheus.monitoring:9090")
    rollout.add_argument("--namespace", default=default_of("serving_namespace"),
                         help="kserve: the InferenceService's namespace (default: the kubeconfig context's)")
    rollout.add_argument("--deployment-mode", default=default_of("deployment_mode"), choices=DEPLOYMENT_MODES)
    rollout.add_argument("--context", help="kubeconfig context")
    rollout.add_argument("--monitor", help="the drift monitor's URL: also compare realised quality")
    defaults = RolloutPolicy()
    rollout.add_argument("--steps", default=",".join(map(str, defaults.steps)),
                         help="canary percentages, ending at 100 (default: %(default)s)")
    rollout.add_argument("--interval", type=float, default=defaults.interval, help="seconds per step (default: %(default)s)")
    rollout.add_argument("--min-requests", type=int, default=defaults.min_requests,
                         help="canary requests a step needs to count (default: %(default)s)")
    rollout.add_argument("--max-error-rate", type=float, default=defaults.max_error_rate,
                         help="(default: %(default)s)")
    rollout.add_argument("--max-latency-ratio", type=float, default=defaults.max_latency_ratio,
                         help="(default: %(default)s)")
    rollout.add_argument("--max-inconclusive", type=int, default=defaults.max_inconclusive,
                         help="(default: %(default)s)")
    rollout.add_argument("--abort", action="store_true", help="take the canary out of service now (stable takes 100%%)")
    add_common(rollout)


def run_serve(args: argparse.Namespace) -> int:
    from driftloop.serving.gateway import Gateway

    # KServe's --enable_grpc is ignored: the local gateway speaks REST (V1 and V2) only.
    if getattr(args, "workers", 1) != 1:
        raise ConfigError("the local gateway runs one worker process; drop --workers")
    if args.payload_log_batch < 0 or (args.payload_log_batch and not args.logger_url):
        raise ConfigError("--payload-log-batch takes a number of events >= 0, and needs --logger-url")
    settings = Settings.resolve(args.home, args.registry)
    port = args.port or getattr(args, "http_port", 8080)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from driftloop.http_guard import EVENTS

    gateway = Gateway(settings.registry_uri, logger_url=args.logger_url, poll_interval=args.poll_interval,
                      max_body_bytes=args.max_body_bytes, namespace=args.namespace,
                      logger_token=EVENTS.token() if args.logger_url else None,
                      logger_batch=args.payload_log_batch)
    print(f"driftloop gateway on http://{args.host}:{port} serving {settings.registry_uri}", file=sys.stderr)
    gateway.run(args.host, port)
    return 0


def run_rollout_command(args: argparse.Namespace) -> int:
    from driftloop.console import print_rollout_step
    from driftloop.deploy import open_deployment
    from driftloop.registry import open_registry
    from driftloop.registry.approvals import PENDING_APPROVAL
    from driftloop.rollout import GatewayRequestMetrics, quality_reader, run_rollout

    registry = open_registry(Settings.resolve(args.home, args.registry).registry_uri)
    registry.require_model(args.name)
    deployment = open_deployment(registry, args.target, actor="driftloop rollout", namespace=args.namespace,
                                 deployment_mode=args.deployment_mode, context=args.context)
    if args.abort:
        traffic = deployment.abort(args.name, "aborted by an operator")
        print(json.dumps(traffic.to_dict()) if args.json else f"canary removed; {args.name}: {traffic.describe()}")
        return 0
    try:
        steps = tuple(int(s) for s in args.steps.split(","))
    except ValueError:
        raise ConfigError(f"--steps must be comma-separated percentages, got '{args.steps}'") from None
    policy = RolloutPolicy(steps=steps, interval=args.interval, min_requests=args.min_requests,
                           max_error_rate=args.max_error_rate, max_latency_ratio=args.max_latency_ratio,
                           max_inconclusive=args.max_inconclusive)
    if args.target == "local":
        metrics = GatewayRequestMetrics(args.gateway, args.name)
    else:
        if not args.prometheus:
            raise ConfigError("--target kserve reads Prometheus: pass --prometheus URL")
        from driftloop.rollout.prometheus import PrometheusMetrics

        series = "runtime" if args.deployment_mode == "Standard" else "auto"
        metrics = PrometheusMetrics(args.prometheus, deployment.config.namespace, args.name, series=series)
    metrics.mark()  # fail now, clearly, if the metrics source is not there
    result = run_rollout(deployment, args.name, metrics, policy, on_step=None if args.json else print_rollout_step,
                         read_quality=quality_reader(args.monitor, args.name) if args.monitor else None)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"{result.outcome}: {args.name} v{result.canary_version} — {result.reason}")
    # A canary held for approval passed: waiting for a person is not a failure.
    return 0 if result.outcome in ("promoted", PENDING_APPROVAL) else 1
