"""``driftloop drift``: compare a current table with a reference; the exit code says whether it drifted."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from driftloop import drift_defaults
from driftloop.cli_style import exit_codes
from driftloop.errors import ConfigError

EXIT_DRIFT = 1
EXIT_NOT_COMPARED = 3  # not 1: a cron job or pipeline step must not read "could not compare" as drift


def add_drift_parser(sub) -> None:
    drift = sub.add_parser(
        "drift", help="per-feature drift of a current table against a reference (Evidently); exit 1 on dataset drift",
        description="Tests every feature of the current table against the reference, each with its kind's method "
        "and threshold; the dataset drifts when the share of drifted features reaches --drift-share, the same "
        "default the drift monitor decides retrains with.",
        epilog=exit_codes("dataset drift: at least --drift-share of the features drifted",
                          (EXIT_NOT_COMPARED, "the tables could not be compared (a store did not answer, the "
                                              "machine refused)"), success="no dataset drift"))
    drift.add_argument("--reference", required=True, help="CSV/Parquet path or s3:// URI")
    drift.add_argument("--current", required=True, help="CSV/Parquet path or s3:// URI")
    drift.add_argument("--spec", help="dataset spec JSON (default: inferred from the reference)")
    drift.add_argument("--target", help="label column to leave out when inferring the spec")
    drift.add_argument("--id-column", help="row id column, kept out of the features")
    drift.add_argument("--timestamp-column", help="event time column, kept out of the features")
    drift.add_argument("--report", default="drift_report.html", help="where to write the HTML report")
    drift.add_argument("--num-method", default=drift_defaults.NUM_METHOD, help="Evidently method for numeric features")
    drift.add_argument("--cat-method", default=drift_defaults.CAT_METHOD,
                       help="Evidently method for categorical features")
    drift.add_argument("--num-threshold", type=float, help="a numeric feature drifts at this score (default: "
                       "the method's standard threshold)")
    drift.add_argument("--cat-threshold", type=float, help="a categorical feature drifts at this score "
                       "(default: the method's standard threshold)")
    drift.add_argument("--drift-share", type=float, default=drift_defaults.DRIFT_SHARE,
                       help="share of drifted features at which the dataset drifts")
    drift.add_argument("--json", action="store_true", help="print the result as JSON")
    drift.set_defaults(failure_exit=EXIT_NOT_COMPARED)


def run_drift(args: argparse.Namespace) -> int:
    from driftloop.console import print_drift
    from driftloop.data import DatasetSpec, infer_features, infer_spec, load_table
    from driftloop.drift import DriftConfig, check_drift

    config = DriftConfig(args.num_method, args.cat_method, args.num_threshold, args.cat_threshold, args.drift_share)
    reference, _ = load_table(args.reference)
    current, _ = load_table(args.current)
    if args.spec:
        path = Path(args.spec)
        if not path.is_file():
            raise ConfigError(f"spec file not found: {path}")
        spec = DatasetSpec.from_json(path.read_text())
    elif args.target:
        spec = infer_spec(reference, args.target, args.id_column, args.timestamp_column)
    else:  # unlabeled traffic: every column but the id and timestamp is a feature
        features, ignored = infer_features(reference, {args.id_column, args.timestamp_column})
        spec = DatasetSpec("", tuple(features), args.id_column, args.timestamp_column, (), ignored)
    result = check_drift(reference, current, spec, config, args.report)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_drift(result)
    return EXIT_DRIFT if result.dataset_drift else 0

