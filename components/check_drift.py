"""Component: data drift of a current table against a reference (Evidently)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Metrics, Output

from driftloop.image import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def check_drift(
    reference_uri: str,
    current_uri: str,
    spec_json: str,
    report: Output[HTML],
    metrics: Output[Metrics],
    # Literals: KFP copies the function's source alone; tests/integration/test_drift_cli.py ties them to
    # driftloop.drift_defaults.
    num_method: str = "wasserstein",
    cat_method: str = "jensenshannon",
    drift_share: float = 0.3,
) -> NamedTuple("DriftOutputs", drifted=bool, drift_share=float, result_json=str):
    """Compares every spec feature of the current table with the reference.

    Returns:
        report: Evidently's HTML drift report.
        metrics: The drifted share and each feature's score.
        drifted: Whether the dataset drifted (share of drifted features >= drift_share).
        drift_share: Share of drifted features.
        result_json: Per-feature methods, scores, thresholds and verdicts.
    """
    import json

    from driftloop import steps

    result = steps.check_drift(reference_uri, current_uri, spec_json, report.path, num_method, cat_method,
                               drift_share)
    metrics.log_metric("drift_share", result.drift_share)
    for feature in result.features:
        metrics.log_metric(f"score_{feature.column}", feature.score)
    return (result.dataset_drift, result.drift_share, json.dumps(result.to_dict()))
