"""``driftloop serve`` (the local gateway) and ``driftloop rollout`` (automated canary analysis)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from driftloop.cli_style import exit_codes
from driftloop.ct_params import DEPLOYMENT_MODES, SERVE_TARGETS, default_of
from driftloop.errors import ConfigError
from driftloop.http_guard import DEFAULT_MAX_BODY_BYTES, EVENTS
from driftloop.rollout.policy import RolloutPolicy
from driftloop.settings import Settings

GATEWAY_PORT = 8080  # KServe's own default HTTP port, so clients address the gateway as they would a predictor
# kserve.model_server.parser's flags (KServe 0.21), named here so a refusal needs no seconds-long KServe import;
# tests/integration/test_cli_errors.py ties the set to the installed KServe.
KSERVE_SERVER_OPTIONS = frozenset({
    "--access_log_format", "--configure_logging", "--enable_docs_url", "--enable_grpc", "--enable_latency_logging",
    "--enable_predictor_health_check", "--event-loop", "--grpc_max_receive_message_length",
    "--grpc_max_send_message_length", "--grpc_port", "--http_port", "--log_config_file", "--max_asyncio_workers",
    "--max_threads", "--model_name", "--predictor_host", "--predictor_protocol", "--predictor_request_retries",
    "--predictor_request_timeout_seconds", "--predictor_use_ssl", "--protocol", "--ssl_certfile", "--ssl_keyfile",
    "--timeout-keep-alive", "--workers",
})
KSERVE_SWITCHES = frozenset({"--enable_predictor_health_check"})  # the KServe options above that take no value


def add_serve_parsers(sub, add_common) -> None:
    # The local gateway's own options; the cluster runtime (python -m driftloop.serving.runtime) keeps KServe's
    # parser, because the ServingRuntime passes KServe's flags.
    serve = sub.add_parser("serve", help="serve every registered model's production version and canary (KServe V1/V2)",
                           description="The local gateway: serves each model's production version and canary from the "
                           "registry, following its aliases, over KServe's V1 and V2 REST protocols on one port. KServe "
                           "model-server options (--http_port, --grpc_port, --workers, --ssl_certfile, …) belong to the "
                           "cluster runtime and are refused here.",
                           epilog=exit_codes("the gateway could not start (the port is taken, the registry cannot be "
                                             "read)"))
    serve.add_argument("--host", default="127.0.0.1", help="address to bind; beyond loopback only behind a network "
                       "policy")
    serve.add_argument("--port", type=int, default=GATEWAY_PORT, help="HTTP port")
    serve.add_argument("--logger-url", help="payload log receiver (the drift monitor's /events URL, e.g. "
                       "http://127.0.0.1:8090/events); none: no payload logging")
    serve.add_argument("--logger-token-file", metavar="FILE", help=f"the monitor's events token (default: "
                       f"${EVENTS.env}, or the file ${EVENTS.env}_FILE names)")
    serve.add_argument("--payload-log-batch", type=int, default=0, metavar="N",
                       help="post up to N payload events per request as one CloudEvents batch "
                            "(application/cloudevents-batch+json; driftloop's monitor only); 0: one binary-mode "
                            "event per request, as KServe's agent sends them")
    serve.add_argument("--poll-interval", type=float, default=1.0, help="seconds between registry checks")
    serve.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                       help="larger request bodies are refused (413)")
    serve.add_argument("--namespace", default="local", help="namespace named in payload log events")
    from driftloop.serving.batching import add_batching_flags

    add_batching_flags(serve, "-")
    add_common(serve, with_json=False)
    serve.set_defaults(refuse_unknown=_refuse_kserve_options)

    rollout = sub.add_parser("rollout", help="step a model's canary up, judging it against stable; promote or abort",
                             epilog=exit_codes("the canary was rolled back (it failed its analysis), or its metrics "
                                               "could not be read", success="promoted, or held for approval"))
    rollout.add_argument("name")
    rollout.add_argument("--target", choices=SERVE_TARGETS, default=default_of("serve_target"),
                         help="where the canary serves")
    rollout.add_argument("--gateway", default=f"http://127.0.0.1:{GATEWAY_PORT}",
                         help="local: the gateway whose /metrics is read")
    rollout.add_argument("--prometheus", help="kserve: the Prometheus to query, e.g. http://prometheus.monitoring:9090")
    rollout.add_argument("--namespace", default=default_of("serving_namespace"),
                         help="kserve: the InferenceService's namespace (default: the kubeconfig context's)")
    rollout.add_argument("--deployment-mode", default=default_of("deployment_mode"), choices=DEPLOYMENT_MODES)
    rollout.add_argument("--context", help="kubeconfig context")
    rollout.add_argument("--monitor", help="the drift monitor's URL: also compare realised quality")
    defaults = RolloutPolicy()
    rollout.add_argument("--steps", default=",".join(map(str, defaults.steps)),
                         help="canary percentages, ending at 100")
    rollout.add_argument("--interval", type=float, default=defaults.interval, help="seconds per step")
    rollout.add_argument("--min-requests", type=int, default=defaults.min_requests,
                         help="canary requests a step needs to count")
    rollout.add_argument("--max-error-rate", type=float, default=defaults.max_error_rate,
                         help="highest canary error rate (server errors / requests) a step may show")
    rollout.add_argument("--max-latency-ratio", type=float, default=defaults.max_latency_ratio,
                         help="highest ratio of canary to stable mean latency")
    rollout.add_argument("--latency-tolerance", type=float, default=defaults.latency_tolerance,
                         help="seconds by which the canary's mean latency may exceed stable's whatever the ratio")
    rollout.add_argument("--max-inconclusive", type=int, default=defaults.max_inconclusive,
                         help="inconclusive observations allowed in total before the rollout aborts")
    rollout.add_argument("--abort", action="store_true", help="take the canary out of service now (stable takes 100%%)")
    add_common(rollout)


def run_serve(args: argparse.Namespace) -> int:
    from driftloop.serving.gateway import Gateway

    if args.payload_log_batch < 0 or (args.payload_log_batch and not args.logger_url):
        raise ConfigError("--payload-log-batch takes a number of events >= 0, and needs --logger-url")
    settings = Settings.resolve(args.home, args.registry)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    token = EVENTS.token(file=args.logger_token_file) if args.logger_url else None
    if args.logger_token_file and not args.logger_url:
        raise ConfigError("--logger-token-file is the token for --logger-url: pass both")
    from driftloop.serving.batching import batching_from_args

    try:
        batching = batching_from_args(args)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    gateway = Gateway(settings.registry_uri, logger_url=args.logger_url, poll_interval=args.poll_interval,
                      max_body_bytes=args.max_body_bytes, namespace=args.namespace, logger_token=token,
                      logger_batch=args.payload_log_batch, batching=batching)
    print(f"driftloop gateway on http://{args.host}:{args.port} serving {settings.registry_uri}", file=sys.stderr)
    gateway.run(args.host, args.port)
    return 0


def _refuse_kserve_options(unknown: list[str]) -> str:
    """The one-line refusal for options ``driftloop serve`` does not take, naming KServe's apart."""
    kserve, other = [], []
    tokens = iter(unknown)
    for token in tokens:
        flag = token.split("=", 1)[0]
        if flag in KSERVE_SERVER_OPTIONS:
            kserve.append(flag)
            if "=" not in token and flag not in KSERVE_SWITCHES:
                next(tokens, None)  # its value: not a stray argument
        else:
            other.append(token)
    parts = []
    if kserve:
        hint = " (use --port)" if "--http_port" in kserve else ""
        parts.append(f"{', '.join(kserve)}: KServe model-server option(s) the local gateway does not support{hint}; "
                     "they belong to the cluster runtime (python -m driftloop.serving.runtime)")
    if other:
        parts.append(f"unrecognized arguments: {' '.join(other)}")
    return "; ".join(parts)


def run_rollout_command(args: argparse.Namespace) -> int:
    from driftloop.console import print_rollout_step
    from driftloop.deploy import open_deployment
    from driftloop.models_cli import open_existing_registry
    from driftloop.registry.approvals import PENDING_APPROVAL
    from driftloop.rollout import GatewayRequestMetrics, quality_reader, run_rollout

    registry = open_existing_registry(Settings.resolve(args.home, args.registry).registry_uri)
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
                           latency_tolerance=args.latency_tolerance, max_inconclusive=args.max_inconclusive)
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
