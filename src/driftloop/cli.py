"""The ``driftloop`` command line.

Every user mistake ends in one line on stderr (``driftloop: error: …``) and a non-zero exit;
a traceback means a bug.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from driftloop import __version__
from driftloop.errors import ConfigError, DriftloopError

EXIT_RUN_FAILED = 1


def _add_common(parser: argparse.ArgumentParser, with_json: bool = True) -> None:
    parser.add_argument("--home", help="working directory for runs and the local registry (default ./.driftloop "
                        "or $DRIFTLOOP_HOME)")
    parser.add_argument("--registry", help="registry URI: a directory or s3://bucket/prefix "
                        "(default <home>/registry or $DRIFTLOOP_REGISTRY)")
    if with_json:
        parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def _add_run_options(parser: argparse.ArgumentParser, serving: bool = False) -> None:
    """The CT parameters as flags (from :class:`~driftloop.ct_params.CTParams`, their one definition)."""
    from driftloop.ct_params import add_ct_arguments

    add_ct_arguments(parser, serving=serving)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftloop", description="Continuous training for tabular models on "
                                     "Kubeflow Pipelines and KServe; runs whole on this machine by default.")
    parser.add_argument("--version", action="version", version=f"driftloop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the CT pipeline locally through kfp.local")
    run.add_argument("--data", help="CSV or Parquet path or s3:// URI (default: generated demo data)")
    run.add_argument("--target", help="label column (required with --data)")
    run.add_argument("--spec", help="dataset spec JSON file (from 'driftloop spec --json'); inferred if absent")
    _add_run_options(run)
    _add_common(run)

    demo = sub.add_parser("demo", help="the closed loop, unattended, on generated data: train, serve, drift, "
                          "retrain, canary, promote")
    demo.add_argument("--rows", type=int, default=3000, help="rows v1 is trained on")
    demo.add_argument("--clean-rows", type=int, default=1000, help="live rows before the drift starts")
    demo.add_argument("--rate", type=float, default=50.0, help="live rows per second")
    demo.add_argument("--window-rows", type=int, default=500, help="rows per monitor window")
    demo.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for the loop after the drift")
    _add_common(demo)

    spec = sub.add_parser("spec", help="show the dataset spec driftloop infers for a table")
    spec.add_argument("--data", required=True)
    spec.add_argument("--target", required=True)
    spec.add_argument("--id-column")
    spec.add_argument("--timestamp-column")
    spec.add_argument("--categorical", default="", help="comma-separated columns to treat as categorical")
    spec.add_argument("--json", action="store_true")

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
    add_serve_parsers(sub, _add_common, list(sys.argv[1:] if argv is None else argv))
    from driftloop.submit_cli import add_submit_parsers

    add_submit_parsers(sub, _add_run_options)

    comp = sub.add_parser("compile", help="compile the cluster CT pipeline and the batch-scoring pipeline to "
                          "Kubeflow IR YAML")
    comp.add_argument("--output", "-o", help="output file (default: pipelines/ct_pipeline.yaml)")
    comp.add_argument("--batch-output", help="the batch-scoring pipeline's file (default: "
                      "batch_score_pipeline.yaml beside --output, else pipelines/batch_score_pipeline.yaml)")
    comp.add_argument("--image", help="the image every step runs on (default $DRIFTLOOP_IMAGE, else the project "
                      "image of this version)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command != "serve":
        # kserve.model_server parses sys.argv when it is first imported (serving and the monitor import
        # it); our flags are not its flags (`--config` would match its `--configure_logging`).
        sys.argv = sys.argv[:1]
    try:
        return _dispatch(args)
    except DriftloopError as exc:
        print(f"driftloop: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("driftloop: interrupted", file=sys.stderr)
        return 130


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
    spec = infer(args.data, args.target, args.id_column, args.timestamp_column, categorical)
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
        paths = api.generate_demo_data(settings.home / "data")
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
                          window_rows=args.window_rows, timeout=args.timeout)
    summary = run_demo(settings, options, on_event=None if args.json else print_demo_event)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, default=str))
    else:
        print_demo_summary(summary)
    return 0 if summary.outcome == "promoted" else EXIT_RUN_FAILED


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
        print(f"driftloop: error: {failed[0].error}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
