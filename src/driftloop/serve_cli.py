"""``driftloop serve`` (the local gateway) and ``driftloop rollout`` (automated canary analysis)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from driftloop.errors import ConfigError
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
    serve.add_argument("--logger-url", help="payload log receiver (the drift monitor), e.g. http://127.0.0.1:8090/events")
    serve.add_argument("--poll-interval", type=float, default=1.0, help="seconds between registry checks")
    serve.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024)
    serve.add_argument("--namespace", default="local", help="namespace named in payload log events")
    add_common(serve, with_json=False)

    rollout = sub.add_parser("rollout", help="step a model's canary up, judging it against stable; promote or abort")
    rollout.add_argument("name")
    rollout.add_argument("--gateway", default="http://127.0.0.1:8080", help="gateway base URL (its /metrics is read)")
    rollout.add_argument("--steps", default="10,25,50,100", help="canary percentages, ending at 100")
    rollout.add_argument("--interval", type=float, default=30.0, help="seconds per step")
    rollout.add_argument("--min-requests", type=int, default=50, help="canary requests a step needs to count")
    rollout.add_argument("--max-error-rate", type=float, default=0.01)
    rollout.add_argument("--max-latency-ratio", type=float, default=1.5)
    rollout.add_argument("--max-inconclusive", type=int, default=3)
    rollout.add_argument("--abort", action="store_true", help="remove the canary now (100%% to stable)")
    add_common(rollout)


def run_serve(args: argparse.Namespace) -> int:
    from driftloop.serving.gateway import Gateway

    # KServe's --enable_grpc is ignored: the local gateway speaks REST (V1 and V2) only.
    if getattr(args, "workers", 1) != 1:
        raise ConfigError("the local gateway runs one worker process; drop --workers")
    settings = Settings.resolve(args.home, args.registry)
    port = args.port or getattr(args, "http_port", 8080)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    gateway = Gateway(settings.registry_uri, logger_url=args.logger_url, poll_interval=args.poll_interval,
                      max_body_bytes=args.max_body_bytes, namespace=args.namespace)
    print(f"driftloop gateway on http://{args.host}:{port} serving {settings.registry_uri}", file=sys.stderr)
    gateway.run(args.host, port)
    return 0


def run_rollout_command(args: argparse.Namespace) -> int:
    from driftloop.console import print_rollout_step
    from driftloop.registry import CANARY, open_registry
    from driftloop.rollout import RolloutPolicy, run_rollout, scrape_gateway

    registry = open_registry(Settings.resolve(args.home, args.registry).registry_uri)
    registry.require_model(args.name)
    if args.abort:
        entry = registry.remove_alias(args.name, CANARY, actor="cli", action="rollout-abort",
                                      reason="aborted by an operator")
        print(json.dumps(entry.to_dict()) if args.json else f"canary v{entry.from_version} removed; stable takes 100%")
        return 0
    try:
        steps = tuple(int(s) for s in args.steps.split(","))
    except ValueError:
        raise ConfigError(f"--steps must be comma-separated percentages, got '{args.steps}'") from None
    policy = RolloutPolicy(steps=steps, interval=args.interval, min_requests=args.min_requests,
                           max_error_rate=args.max_error_rate, max_latency_ratio=args.max_latency_ratio,
                           max_inconclusive=args.max_inconclusive)
    metrics_url = args.gateway.rstrip("/") + "/metrics"
    scrape_gateway(metrics_url, args.name)  # fail now, clearly, if the gateway is not there
    result = run_rollout(registry, args.name, lambda: scrape_gateway(metrics_url, args.name), policy,
                         on_step=None if args.json else print_rollout_step)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"{result.outcome}: {args.name} v{result.canary_version} — {result.reason}")
    return 0 if result.outcome == "promoted" else 1
