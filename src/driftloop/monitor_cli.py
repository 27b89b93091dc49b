"""``driftloop monitor`` (the drift monitor service and its status), ``driftloop feedback`` (post a
labelled file) and ``driftloop replay`` (a table as live traffic)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

import httpx

from driftloop.cli_style import exit_codes
from driftloop.errors import ConfigError, UnavailableError
from driftloop.http_guard import LABELS, bearer
from driftloop.serve_cli import GATEWAY_PORT
from driftloop.settings import Settings

MONITOR_PORT = 8090
DEFAULT_MONITOR = f"http://127.0.0.1:{MONITOR_PORT}"
LABELS_TOKEN_HELP = ("file holding the monitor's labels token (default: DRIFTLOOP_LABELS_TOKEN or the file "
                     "DRIFTLOOP_LABELS_TOKEN_FILE names)")


def add_monitor_parsers(sub, add_common) -> None:
    monitor = sub.add_parser("monitor", help="the drift monitor: 'serve' (default) runs it, 'status' asks it, "
                             "'resume' lets a model whose retraining stopped after repeated failures trigger again, "
                             "'ingest-batch' posts a scored table to it as traffic to watch for drift",
                             epilog=exit_codes("the monitor could not start, or (status, ingest-batch) did not "
                                               "answer"))
    monitor.add_argument("action", nargs="?", choices=["serve", "status", "resume", "ingest-batch"], default="serve")
    monitor.add_argument("--table", help="ingest-batch: the scored table ('driftloop score --with-features'), "
                         "a CSV or Parquet path or s3:// URI")
    monitor.add_argument("--config", help="monitor settings file (YAML or JSON; see docs) — windows, drift "
                         "tests, trigger policy, retrain runner")
    monitor.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    monitor.add_argument("--port", type=int, default=MONITOR_PORT)
    monitor.add_argument("--events-port", type=int, help="receive POST /events on this port only (and nothing "
                         "else there), so a NetworkPolicy can admit predictor pods to it alone")
    monitor.add_argument("--trust-network-policy", action="store_true",
                         help="declare that the network admits only the right callers (the network-guard "
                              "manifests), so the monitor may bind beyond loopback without tokens "
                              "(auth.network_guard: true in the config says the same)")
    monitor.add_argument("--store", help="rows, labels, windows and reports (default <home>/monitor); status: "
                         "read the windows from this store, no running monitor needed")
    monitor.add_argument("--window-rows", type=int, help="close a window after this many rows")
    monitor.add_argument("--window-seconds", type=float, help="… or after this many seconds")
    monitor.add_argument("--url", default=DEFAULT_MONITOR, help="status, ingest-batch: the monitor's base URL")
    monitor.add_argument("--model", help="status: only this model; resume: the model (default: the config's); "
                         "ingest-batch: the model that scored the table")
    monitor.add_argument("--reason", help="resume: what was fixed (recorded in the audit trail)")
    monitor.add_argument("--actor", help="resume: who is acting (default: the login name)")
    monitor.add_argument("--limit", type=int, default=10, help="status: windows to show")
    add_common(monitor)

    feedback = sub.add_parser("feedback", help="post labels from a file to the drift monitor",
                              epilog=exit_codes("the monitor did not answer"))
    feedback.add_argument("--labels", required=True, help="CSV or Parquet path or s3:// URI")
    feedback.add_argument("--id-column", required=True, help="the request id each label belongs to")
    feedback.add_argument("--label-column", required=True)
    feedback.add_argument("--monitor", default=DEFAULT_MONITOR, help="the monitor's base URL")
    feedback.add_argument("--model", help="the model the labels are for (default: the monitor's model): a "
                          "regression model's labels must be numbers, and labels naming a class its production "
                          "version never learned are kept, counted as wrong and reported")
    feedback.add_argument("--token-file", help=LABELS_TOKEN_HELP)

    replay = sub.add_parser("replay", help="send a table's rows to the gateway as live traffic, labels later",
                            epilog=exit_codes("some rows or labels were not accepted (the summary counts them)"))
    replay.add_argument("--data", required=True, help="CSV or Parquet path or s3:// URI")
    replay.add_argument("--labels", help="labels table (else --label-column is read from --data if present)")
    replay.add_argument("--id-column", help="row id: sent as x-request-id and used to join labels")
    replay.add_argument("--label-column", help="label column (in --labels or --data); never sent as a feature")
    replay.add_argument("--timestamp-column", help="rows are sent in this column's order")
    replay.add_argument("--features", help="comma-separated feature columns (default: all other columns)")
    replay.add_argument("--rate", type=float, default=20.0, help="rows per second")
    replay.add_argument("--label-delay", type=float, default=5.0, help="seconds before a row's label is posted")
    replay.add_argument("--gateway", default=f"http://127.0.0.1:{GATEWAY_PORT}", help="the gateway's base URL")
    replay.add_argument("--monitor", default=DEFAULT_MONITOR, help="the monitor's base URL (for labels)")
    replay.add_argument("--token-file", help=LABELS_TOKEN_HELP)
    replay.add_argument("--model", default="churn")
    replay.add_argument("--json", action="store_true", help="print the summary as JSON")


def run_monitor(args: argparse.Namespace) -> int:
    if args.action == "status":
        return _status(args)
    if args.action == "resume":
        return _resume(args)
    if args.action == "ingest-batch":
        return _ingest_batch(args)

    from driftloop.monitor.app import Monitor
    from driftloop.monitor.config import AuthConfig, MonitorConfig, WindowConfig
    from driftloop.monitor.guard import check_monitor_exposure
    from driftloop.registry import open_registry

    config = MonitorConfig.load(args.config) if args.config else MonitorConfig()
    if args.trust_network_policy:
        config = config.with_overrides(auth=AuthConfig(network_guard=True))
    check_monitor_exposure(args.host, config)  # before anything is opened or loaded
    if args.window_rows or args.window_seconds:
        config = config.with_overrides(window=WindowConfig(
            rows=args.window_rows or config.window.rows, seconds=args.window_seconds or config.window.seconds,
            min_rows=min(config.window.min_rows, args.window_rows or config.window.min_rows)))
    settings = Settings.resolve(args.home, args.registry or config.registry or None)
    store = args.store or config.store or settings.home / "monitor"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    monitor = Monitor(open_registry(settings.registry_uri), store, config, home=settings.home,
                      registry_uri=settings.registry_uri)
    events = f"port {args.events_port}" if args.events_port else "/events"
    print(f"driftloop monitor on http://{args.host}:{args.port} (events: {events}, labels: /feedback, "
          f"status: /status); store {monitor.root}; retrain runner: {config.retrain.runner}", file=sys.stderr)
    _serve(monitor, args.host, args.port, args.events_port)
    return 0


def _serve(monitor, host: str, port: int, events_port: int | None) -> None:
    """One server (one lifespan, one event loop) on the API port and, when given, the events port."""
    import socket

    import uvicorn

    from driftloop.http_server import UVICORN_OPTIONS
    from driftloop.monitor.guard import EventsPort

    if not events_port:
        uvicorn.run(monitor.app, host=host, port=port, **{**UVICORN_OPTIONS, "http": monitor.http_protocol()})
        return
    if events_port == port:
        raise ConfigError("--events-port must differ from --port")
    sockets = []
    for number in (port, events_port):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, number))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{number}: {exc.strerror}") from None
        sockets.append(sock)
    options = {**UVICORN_OPTIONS, "http": monitor.http_protocol(events_port)}
    server = uvicorn.Server(uvicorn.Config(EventsPort(monitor.app, events_port), **options))
    server.run(sockets=sockets)


def _resume(args: argparse.Namespace) -> int:
    """Records ``retrain-resumed`` in the registry's audit trail: the failure count that stopped retraining is
    kept there (so a restart does not forget it), and so is its reset; a running monitor reads it at its
    next window."""
    import getpass

    from driftloop.monitor.config import MonitorConfig
    from driftloop.monitor.coordinator import resume
    from driftloop.registry import open_registry

    if not args.reason:
        raise ConfigError("monitor resume needs --reason (what was fixed)")
    config = MonitorConfig.load(args.config) if args.config else MonitorConfig()
    settings = Settings.resolve(args.home, args.registry or config.registry or None)
    model = args.model or config.model
    try:
        actor = args.actor or getpass.getuser()
    except (KeyError, OSError):
        actor = "cli"
    entry = resume(open_registry(settings.registry_uri), model, actor=actor, reason=args.reason)
    print(f"retraining of {model} resumed (audit entry #{entry.seq})")
    return 0


def _status(args: argparse.Namespace) -> int:
    from driftloop.console import print_monitor_status

    if args.store:
        status = _stored_status(Path(args.store), args.model, args.limit)
    else:
        params = {"limit": args.limit} | ({"model": args.model} if args.model else {})
        status = _get_json(f"{args.url.rstrip('/')}/status", params)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        print_monitor_status(status, args.url)
    return 0


def _stored_status(store: Path, model: str | None, limit: int) -> dict:
    """The status a monitor would give, from the window summaries it left in ``store`` (the monitor may be
    stopped); the live counters and the trigger state are not there."""
    from driftloop.monitor.windows import SUMMARIES_DIR, read_summaries

    if not (store / SUMMARIES_DIR).is_dir():
        why = "it has no windows/ directory" if store.is_dir() else "it does not exist"
        raise ConfigError(f"no monitor store at {store} ({why}); give the directory the monitor was started "
                          "with (--store)")
    summaries = read_summaries(store)
    if model is not None and model not in summaries:
        raise ConfigError(f"no windows of model '{model}' in {store}")
    models = [model] if model else sorted(summaries)
    return {"offline": True, "store": str(store),
            "models": {m: {"aliases": {}, "windows": summaries[m][-max(1, limit):], "trigger": None, "retrains": []}
                       for m in models}}


def _ingest_batch(args: argparse.Namespace) -> int:
    from driftloop.batch.monitor_feed import feed_monitor
    from driftloop.http_guard import EVENTS
    from driftloop.models_cli import open_existing_registry

    if not args.table or not args.model:
        raise ConfigError("ingest-batch needs --table (a scored table) and --model")
    settings = Settings.resolve(args.home, args.registry)
    summary = feed_monitor(args.table, args.model, open_existing_registry(settings.registry_uri), args.url,
                           token=EVENTS.token())
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(f"{summary.rows} rows of {args.table} posted to {args.url} as {summary.events} batch events of "
              f"{args.model} {', '.join(f'v{v}' for v in summary.versions)} ({summary.seconds:.1f}s); the monitor "
              "windows them with its served traffic")
    return 0


def run_feedback(args: argparse.Namespace) -> int:
    from driftloop.data import load_table

    frame, _ = load_table(args.labels)
    for column in (args.id_column, args.label_column):
        if column not in frame.columns:
            raise ConfigError(f"column '{column}' is not in {args.labels}")
    frame = frame[[args.id_column, args.label_column]].dropna()
    items = [{"id": str(i), "label": label.item() if hasattr(label, "item") else label}
             for i, label in zip(frame[args.id_column], frame[args.label_column], strict=True)]
    token = LABELS.token(file=args.token_file)
    posted, unseen, answer = 0, Counter(), {}
    url = f"{args.monitor.rstrip('/')}/feedback" + (f"?{urlencode({'model': args.model})}" if args.model else "")
    for start in range(0, len(items), 1000):
        answer = _post_json(url, items[start:start + 1000], token)
        posted += len(items[start:start + 1000])
        unseen.update(answer.get("unseen_classes") or {})
    print(f"posted {posted} labels to {args.monitor}")
    if unseen:
        version = f" v{answer['version']}" if answer.get("version") else ""
        print(f"warning: {unseen.total()} labels name classes {answer.get('model', 'the model')}{version} never "
              f"learned ({', '.join(f'{label} {n}' for label, n in sorted(unseen.items()))}): kept, counted as "
              "wrong predictions", file=sys.stderr)
    return 0


def run_replay(args: argparse.Namespace) -> int:
    from driftloop.replay import load_plan, replay

    plan = load_plan(args.data, args.labels, id_column=args.id_column, label_column=args.label_column,
                     timestamp_column=args.timestamp_column,
                     features=[f.strip() for f in args.features.split(",")] if args.features else None)

    def progress(summary) -> None:
        if not args.json:
            print(f"\r  sent {summary.sent}/{len(plan.rows)} rows ({summary.errors} errors), "
                  f"{summary.labels_posted} labels posted", end="", file=sys.stderr, flush=True)

    summary = replay(plan, args.gateway, args.model, args.rate, args.monitor if plan.labels is not None else None,
                     args.label_delay, on_progress=progress,
                     labels_token=LABELS.token(file=args.token_file) if plan.labels is not None else None)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(f"\rreplayed {summary.sent} rows in {summary.seconds:.1f} s ({summary.rate:.1f}/s): {summary.ok} ok, "
              f"{summary.errors} errors; {summary.labels_posted} labels posted"
              + (f"; first error: {summary.first_error}" if summary.first_error else ""), file=sys.stderr)
    return 0 if summary.errors == 0 and summary.label_errors == 0 else 1


def _get_json(url: str, params: dict) -> dict:
    try:
        response = httpx.get(url, params=params, timeout=10)
    except httpx.HTTPError as exc:
        raise UnavailableError(f"cannot reach the monitor at {url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise ConfigError(f"the monitor answered {response.status_code}: {response.text[:200]}")
    return response.json()


def _post_json(url: str, body, token: str | None = None) -> dict:
    try:
        response = httpx.post(url, json=body, headers=bearer(token), timeout=30)
    except httpx.HTTPError as exc:
        raise UnavailableError(f"cannot reach the monitor at {url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        message = response.json().get("error") if "json" in response.headers.get("content-type", "") else None
        raise ConfigError(f"the monitor refused the labels: {message or response.text[:200]}")
    return response.json()
