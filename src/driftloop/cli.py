"""The ``driftloop`` command line.

Every error ends in one line on stderr (``driftloop: error: …``): exit code 2 for a usage mistake, 1 for a
command that ran and failed (:mod:`driftloop.cli_style`); a traceback means a bug.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from driftloop import __version__
from driftloop.cli_style import DriftloopParser, exit_codes, fail
from driftloop.errors import EXIT_FAILURE, EXIT_USAGE, ConfigError, DriftloopError
from driftloop.settings import DEFAULT_HOME
from driftloop.tasks import INFER, TASKS


def _add_common(parser: argparse.ArgumentParser, with_json: bool = True) -> None:
    parser.add_argument("--home", help="working directory for runs and the local registry (default: $DRIFTLOOP_HOME, "
                        f"else ./{DEFAULT_HOME})")
    parser.add_argument("--registry", help="registry URI: a directory or s3://bucket/prefix "
                        "(default: $DRIFTLOOP_REGISTRY, else <home>/registry)")
    if with_json:
        parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def _add_run_options(parser: argparse.ArgumentParser, serving: bool = False) -> None:
    """The CT parameters as flags (from :class:`~driftloop.ct_params.CTParams`, their one definition)."""
    from driftloop.ct_params import add_ct_arguments

    add_ct_arguments(parser, serving=serving)


def build_parser() -> argparse.ArgumentParser:
    parser = DriftloopParser(prog="driftloop", description="Continuous training for tabular models on "
                             "Kubeflow Pipelines and KServe; runs whole on this machine by default.",
                             epilog=exit_codes() + "\n\n'driftloop COMMAND --help' lists each command's own.")
    parser.add_argument("--version", action="version", version=f"driftloop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the CT pipeline locally through kfp.local",
                         epilog=exit_codes("the run failed (its error is the one 'driftloop: error:' line)"))
    run.add_argument("--data", help="CSV or Parquet path or s3:// URI (default: generated demo data of --task)")
    run.add_argument("--target", help="label column (required with --data)")
    run.add_argument("--spec", help="dataset spec JSON file (from 'driftloop spec --json'); inferred if absent")
    _add_run_options(run)
    _add_common(run)

    demo = sub.add_parser("demo", help="the closed loop, unattended, on generated data: train, serve, drift, "
                          "retrain, canary, promote",
                          epilog=exit_codes("the loop did not end in a promoted version"))
    from driftloop.loop_demo_options import DemoOptions

    pace = DemoOptions()  # the defaults are the demo's own
    demo.add_argument("--rows", type=int, default=pace.train_rows, help="rows v1 is trained on")
    demo.add_argument("--clean-rows", type=int, default=pace.clean_rows, help="live rows before the drift starts")
    demo.add_argument("--rate", type=float, default=pace.rate, help="live rows per second")
    demo.add_argument("--window-rows", type=int, default=pace.window_rows, help="rows per monitor window")
    demo.add_argument("--timeout", type=float, default=pace.timeout, help="seconds to wait for the loop after the drift")
    demo.add_argument("--after-windows", type=int, default=pace.after_windows,
                      help="windows watched after a promotion (the alarm should clear)")
    demo.add_argument("--task", choices=TASKS, default=pace.task, help="the generated table's task: binary (churn), "
                      "multiclass (retention offer) or regression (next month's spend)")
    _add_common(demo)

    spec = sub.add_parser("spec", help="show the dataset spec driftloop infers for a table", epilog=exit_codes())
    spec.add_argument("--data", required=True, help="CSV or Parquet path or s3:// URI")
    spec.add_argument("--target", required=True, help="label column")
    spec.add_argument("--id-column", help="row id column, kept out of the features")
    spec.add_argument("--timestamp-column", help="event time column, kept out of the features")
    spec.add_argument("--categorical", default="", help="comma-separated columns to treat as categorical")
    spec.add_argument("--task", default=INFER, choices=(INFER, *TASKS),
                      help="binary, multiclass or regression; auto: from the target")
    spec.add_argument("--json", action="store_true", help="print the spec as JSON (for --spec of run and submit)")

    from driftloop.deploy_cli import add_deploy_parser
    from driftloop.drift_cli import add_drift_parser
    from driftloop.models_cli import add_models_parser
    from driftloop.monitor_cli import add_monitor_parsers
    from driftloop.score_cli import add_score_parser
    from driftloop.serve_cli import add_serve_parsers

    add_models_parser(sub, _add_common)
    add_deploy_parser(sub, _add_common)
    add_drift_parser(sub)
    add_score_parser(sub, _add_common)
    add_monitor_parsers(sub, _add_common)
    add_serve_parsers(sub, _add_common)
    from driftloop.submit_cli import add_submit_parsers

    add_submit_parsers(sub, _add_run_options)

    comp = sub.add_parser("compile", help="compile the cluster CT pipeline and the batch-scoring pipeline to "
                          "Kubeflow IR YAML", epilog=exit_codes())
    comp.add_argument("--output", "-o", help="output file (default: pipelines/ct_pipeline.yaml)")
    comp.add_argument("--batch-output", help="the batch-scoring pipeline's file (default: "
                      "batch_score_pipeline.yaml beside --output, else pipelines/batch_score_pipeline.yaml)")
    comp.add_argument("--image", help="the image every step runs on (default $DRIFTLOOP_IMAGE, else the project "
                      "image of this version)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)  # a usage mistake exits here: one line, exit code 2
    if unknown:
        refuse = getattr(args, "refuse_unknown", None)  # `serve` names the KServe options it does not take
        command = " ".join(filter(None, (args.command, getattr(args, "verb", None),
                                         getattr(args, "schedule_command", None))))
        problem = refuse(unknown) if refuse else f"unrecognized arguments: {' '.join(unknown)}"
        return fail(f"{command}: {problem} (see 'driftloop {command} --help')", EXIT_USAGE)
    # kserve.model_server parses sys.argv when it is first imported (serving and the monitor import it) and
    # takes its ModelServer defaults from it; our flags are not its flags (`--config` would match its
    # `--configure_logging`), and `driftloop serve` refuses the KServe flags it does not honour.
    sys.argv = sys.argv[:1]
    # What exit code 1 means differs per command (``driftloop drift`` exits 1 on drift, 3 when it fails).
    failed = getattr(args, "failure_exit", EXIT_FAILURE)
    try:
        return _dispatch(args)
    except DriftloopError as exc:
        return fail(str(exc), failed if exc.exit_code == EXIT_FAILURE else exc.exit_code)
    except OSError as exc:  # the machine refused: a full disk, a permission, a port in use
        where = f": {exc.filename}" if exc.filename else ""
        return fail(f"{exc.strerror or exc}{where}", failed)
    except KeyboardInterrupt:
        return fail("interrupted", 130)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "compile":
        from driftloop.api import compile_batch_score_pipeline, compile_pipeline

        print(compile_pipeline(args.output, args.image))
        batch_output = args.batch_output or (Path(args.output).with_name("batch_score_pipeline.yaml")
                                             if args.output else None)
        print(compile_batch_score_pipeline(batch_output, args.image))
        return 0
    if args.command == "spec":
        return _cmd_spec(args)
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "demo":
        return _cmd_demo(args)
    if args.command in ("monitor", "feedback", "replay"):
        from driftloop import monitor_cli

        return {"monitor": monitor_cli.run_monitor, "feedback": monitor_cli.run_feedback,
                "replay": monitor_cli.run_replay}[args.command](args)
    if args.command == "score":
        from driftloop.score_cli import run_score

        return run_score(args)
    if args.command == "drift":
        from driftloop.drift_cli import run_drift

        return run_drift(args)
    if args.command == "deploy":
        from driftloop.deploy_cli import run_deploy

        return run_deploy(args)
    if args.command == "serve":
        from driftloop.serve_cli import run_serve

        return run_serve(args)
    if args.command == "rollout":
        from driftloop.serve_cli import run_rollout_command

        return run_rollout_command(args)
    if args.command == "models":
        from driftloop.models_cli import run_models

        return run_models(args)
    if args.command in ("submit", "schedule"):
        from driftloop.submit_cli import run_submit_command

        return run_submit_command(args)
    raise ConfigError(f"unknown command {args.command}")


def _cmd_spec(args: argparse.Namespace) -> int:
    from driftloop.api import infer
    from driftloop.console import print_spec

    categorical = tuple(c.strip() for c in args.categorical.split(",") if c.strip())
    spec = infer(args.data, args.target, args.id_column, args.timestamp_column, categorical, args.task)
    if args.json:
        print(spec.to_json())
    else:
        print_spec(spec)
    return 0


def run_options(args: argparse.Namespace) -> dict:
    """The CT parameters the flags of ``run`` / ``submit`` give (the spec file read and checked now)."""
    from driftloop.ct_params import ct_values_from_args

    values = ct_values_from_args(args)
    if args.spec:
        path = Path(args.spec)
        if not path.is_file():
            raise ConfigError(f"spec file not found: {path}")
        from driftloop.data import DatasetSpec

        values["spec_json"] = DatasetSpec.from_json(path.read_text()).to_json()
    return values


def _cmd_run(args: argparse.Namespace) -> int:
    from driftloop import api
    from driftloop.settings import Settings

    settings = Settings.resolve(args.home, args.registry)
    if args.data and not args.target:
        raise ConfigError("--data needs --target (the label column)")
    if args.target and not args.data:
        raise ConfigError("--target needs --data")
    options = run_options(args)
    if args.data:
        params = api.CTParams(data_uri=args.data, target=args.target, registry_uri=settings.registry_uri, **options)
    else:
        from driftloop.synthetic import task_for
        from driftloop.tasks import BINARY

        task = task_for(options.get("task", INFER))  # the generated table of the declared task (auto: churn)
        # The churn table keeps its place; another task's tables lie beside it, in a folder of their own.
        paths = api.generate_demo_data(settings.home / "data" / ("" if task == BINARY else task), task=task)
        params = api.demo_params(str(paths["reference"]), registry_uri=settings.registry_uri, **options)
    if not args.json:  # what will be trained on, and what inference was unsure about, before it starts
        from driftloop.console import print_spec

        spec, source = api.planned_spec(params, settings)
        print_spec(spec, sys.stderr, source=source)
    return _run_and_report([params], settings, args.json)


def _cmd_demo(args: argparse.Namespace) -> int:
    from driftloop.console import print_demo_event, print_demo_summary
    from driftloop.loop_demo import DemoOptions, run_demo
    from driftloop.settings import Settings

    settings = Settings.resolve(args.home, args.registry)
    options = DemoOptions(train_rows=args.rows, clean_rows=args.clean_rows, rate=args.rate,
                          window_rows=args.window_rows, timeout=args.timeout, after_windows=args.after_windows,
                          task=args.task)
    summary = run_demo(settings, options, on_event=None if args.json else print_demo_event)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, default=str))
    else:
        print_demo_summary(summary)
    return 0 if summary.outcome == "promoted" else EXIT_FAILURE


def _run_and_report(runs: list, settings, as_json: bool) -> int:
    from driftloop import api
    from driftloop.console import Progress, print_summary

    progress = Progress()
    summaries = []
    for params in runs:
        progress.console.print(f"[bold]CT run[/] on {params.data_uri} → model '{params.model_name}' "
                               f"(registry {settings.registry_uri})")
        summary = api.run(params, settings, on_event=progress)
        summaries.append(summary)
        if summary.state != "SUCCEEDED":
            break
    if as_json:
        print(json.dumps([s.to_dict() for s in summaries], indent=2, default=str))
    else:
        print_summary(summaries)
    failed = [s for s in summaries if s.state != "SUCCEEDED"]
    if failed:
        return fail(failed[0].error or f"run {failed[0].run_name} failed", EXIT_FAILURE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
