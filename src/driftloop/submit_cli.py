"""``driftloop submit`` and ``driftloop schedule``: CT runs and recurring runs on Kubeflow Pipelines.

The KFP token comes from ``DRIFTLOOP_KFP_TOKEN`` or the in-cluster token file, never from a flag, so it
never lands in shell history or ``ps``; nothing here prints it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable

from driftloop.cli_style import exit_codes, fail
from driftloop.errors import EXIT_FAILURE, ConfigError
from driftloop.kfp_submit import DEFAULT_EXPERIMENT

_KFP_EXIT_CODES = exit_codes("Kubeflow Pipelines refused or did not answer")
DEFAULT_CLUSTER_REGISTRY = "s3://driftloop/registry"  # the pipeline's own default
_DURATION = re.compile(r"^(\d+)\s*([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def add_submit_parsers(sub, add_run_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """Adds ``submit`` and ``schedule`` to the driftloop parser; ``add_run_options`` is ``run``'s CT options."""
    submit = sub.add_parser("submit", help="run the CT pipeline on Kubeflow Pipelines",
                            epilog=exit_codes("Kubeflow Pipelines refused or did not answer; with --wait: the run "
                                              "did not succeed, or was still going at --timeout"))
    _add_ct_options(submit, add_run_options)
    submit.add_argument("--run-name", help="run display name (default: driftloop-ct <model> <UTC time>)")
    submit.add_argument("--wait", action="store_true", help="wait for the run to finish; exit 1 unless it succeeds")
    submit.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait with --wait")
    _add_connection(submit)

    schedule = sub.add_parser("schedule", help="recurring CT runs on Kubeflow Pipelines", epilog=_KFP_EXIT_CODES)
    actions = schedule.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="run the CT pipeline on a cron schedule or at an interval",
                                epilog=_KFP_EXIT_CODES)
    create.add_argument("name", help="the schedule's name (unique in the experiment)")
    create.add_argument("--cron", help="cron expression in UTC, e.g. '0 3 * * *' (daily at 03:00) or @daily")
    create.add_argument("--every", metavar="DURATION", help="interval instead of cron: 90m, 6h, 1d (at least 1m)")
    _add_ct_options(create, add_run_options)
    _add_connection(create)
    listing = actions.add_parser("list", help="the experiment's schedules", epilog=_KFP_EXIT_CODES)
    _add_connection(listing)
    for verb, text in (("pause", "stop starting runs (runs under way go on)"), ("resume", "start runs again"),
                       ("delete", "delete the schedule (its past runs stay)")):
        action = actions.add_parser(verb, help=text, epilog=_KFP_EXIT_CODES)
        action.add_argument("name", metavar="NAME_OR_ID")
        _add_connection(action)


def _add_ct_options(parser: argparse.ArgumentParser, add_run_options) -> None:
    parser.add_argument("--data", required=True, help="training data as an s3:// URI the cluster can read")
    parser.add_argument("--target", required=True, help="label column")
    parser.add_argument("--spec", help="dataset spec JSON file (from 'driftloop spec --json'); inferred if absent")
    parser.add_argument("--image", help="the image every step runs on (default $DRIFTLOOP_IMAGE, else the "
                        "project image of this version)")
    parser.add_argument("--registry", help=f"s3:// registry the pods use (default $DRIFTLOOP_REGISTRY when it is "
                        f"s3://, else {DEFAULT_CLUSTER_REGISTRY})")
    add_run_options(parser, serving=True)


def _add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="KFP API URL, e.g. http://ml-pipeline.kubeflow:8888 (or $DRIFTLOOP_KFP_HOST); "
                        "the token comes from $DRIFTLOOP_KFP_TOKEN or the in-cluster token file")
    parser.add_argument("--namespace", help="profile namespace on multi-user Kubeflow (or $DRIFTLOOP_KFP_NAMESPACE)")
    parser.add_argument("--experiment", help="experiment for runs and schedules (default: "
                        f"$DRIFTLOOP_KFP_EXPERIMENT, else {DEFAULT_EXPERIMENT})")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def run_submit_command(args: argparse.Namespace) -> int:
    """Runs ``driftloop submit`` or ``driftloop schedule …``."""
    from driftloop.kfp_submit import KfpSettings

    image = {"image": args.image} if getattr(args, "image", None) else {}
    settings = KfpSettings.from_env(host=args.host, namespace=args.namespace, experiment=args.experiment, **image)
    if args.command == "submit":
        return _submit(args, settings)
    return {"create": _create, "list": _list}.get(args.schedule_command, _change)(args, settings)


def _submit(args: argparse.Namespace, settings) -> int:
    from driftloop.kfp_submit import submit_run, wait_for_run

    params = _params(args)
    if args.timeout <= 0:
        raise ConfigError(f"--timeout must be positive, got {args.timeout}")
    run = submit_run(settings, params, run_name=args.run_name)
    if not args.json:
        reused = "already on the server" if run.version_reused else "uploaded"
        print(f"run {run.run_id} submitted to experiment '{settings.experiment}'")
        print(f"  pipeline  driftloop-ct version {run.pipeline_version_name} ({reused})")
        print(f"  run page  {run.run_url}")
    if args.wait:
        if not args.json:
            sys.stdout.flush()
        run = wait_for_run(settings, run, args.timeout,
                           on_state=lambda state: print(f"  … {state}", file=sys.stderr, flush=True))
    print(json.dumps(run.to_dict(), indent=2) if args.json else f"  state     {run.state}")
    if not args.wait or run.state == "SUCCEEDED":
        return 0
    if run.finished:
        return fail(f"run {run.run_id} ended {run.state}" + (f": {run.error}" if run.error else ""), EXIT_FAILURE)
    return fail(f"run {run.run_id} still {run.state} after {args.timeout:g} s; it goes on (see {run.run_url})",
                EXIT_FAILURE)


def _create(args: argparse.Namespace, settings) -> int:
    from driftloop.kfp_submit import create_schedule

    interval = parse_duration(args.every) if args.every is not None else None
    if args.cron is None and interval is None:
        raise ConfigError("schedule create needs --cron EXPRESSION or --every DURATION")
    schedule = create_schedule(settings, _params(args), _registry(args), args.name, cron=args.cron,
                               interval_seconds=interval)
    _print_schedules([schedule], args.json, single=True)
    return 0


def _list(args: argparse.Namespace, settings) -> int:
    from driftloop.kfp_submit import list_schedules

    schedules = list_schedules(settings)
    if not schedules and not args.json:
        print(f"no schedules in experiment '{settings.experiment}'")
        return 0
    _print_schedules(schedules, args.json)
    return 0


def _change(args: argparse.Namespace, settings) -> int:
    from driftloop import kfp_submit

    action = {"pause": kfp_submit.pause_schedule, "resume": kfp_submit.resume_schedule,
              "delete": kfp_submit.delete_schedule}[args.schedule_command]
    schedule = action(settings, args.name)
    if args.json:
        print(json.dumps(schedule.to_dict(), indent=2))
    else:
        done = {"pause": "paused", "resume": "resumed", "delete": "deleted"}[args.schedule_command]
        print(f"schedule '{schedule.name}' ({schedule.schedule_id}) {done}")
    return 0


def _print_schedules(schedules: list, as_json: bool, single: bool = False) -> None:
    if as_json:
        rows = [s.to_dict() for s in schedules]
        print(json.dumps(rows[0] if single else rows, indent=2))
        return
    from driftloop.tables import Column, Table, print_table

    table = Table("", [Column("name", wrap=True), Column("state"), Column("trigger", wrap=True), Column("id")])
    for schedule in schedules:
        table.add_row(schedule.name, "enabled" if schedule.enabled else "paused", schedule.trigger,
                      schedule.schedule_id)
    print_table(table)


def parse_duration(text: str) -> int:
    """Seconds in '90m', '6h', '1d', '45s' or a bare number of seconds."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise ConfigError(f"--every expects a duration such as 30m, 6h or 1d, got '{text}'")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _params(args: argparse.Namespace):
    """CTParams from the options, checked the way ``driftloop run`` checks them."""
    from driftloop.cli import run_options
    from driftloop.ct_params import CTParams

    return CTParams(data_uri=args.data, target=args.target, registry_uri=_registry(args), **run_options(args))


def _registry(args: argparse.Namespace) -> str:
    import os

    if args.registry:
        return args.registry
    from_env = os.environ.get("DRIFTLOOP_REGISTRY", "")
    # A local registry path ($DRIFTLOOP_REGISTRY for `driftloop run`) means nothing inside a pod.
    return from_env if from_env.startswith("s3://") else DEFAULT_CLUSTER_REGISTRY
