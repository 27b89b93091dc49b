"""Component: data drift of a current table against a reference (Evidently)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Metrics, Output

from driftloop import drift_defaults
from driftloop.image import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def check_drift(
    reference_uri: str,
    current_uri: str,
    spec_json: str,
    report: Output[HTML],
    metrics: Output[Metrics],
    num_method: str = drift_defaults.NUM_METHOD,
    cat_method: str = drift_defaults.CAT_METHOD,
    drift_share: float = drift_defaults.DRIFT_SHARE,
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
