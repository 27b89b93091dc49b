"""Component: load the training data and validate it."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Output

from driftloop.image import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def load_and_validate(
    data_uri: str,
    target: str,
    registry_uri: str,
    model_name: str,
    dataset: Output[Dataset],
    recent: Output[Dataset],
    report: Output[HTML],
    spec_json: str = "",
    recent_uri: str = "",
    id_column: str = "",
    timestamp_column: str = "",
    task: str = "auto",
) -> NamedTuple("ValidateOutputs", spec_json=str, data_sha256=str, n_rows=int, valid=bool, problem=str):
    """Loads CSV/Parquet from a path or s3:// URI and validates it against the spec and reference.

    Returns:
        dataset: The validated table as Parquet, typed by the spec.
        recent: A drift retrain's recent slice, validated the same way (empty for a manual run).
        report: HTML page of every check and the applied spec.
        spec_json: The dataset spec used (declared, the champion's, or inferred), with its task.
        data_sha256: sha256 of the input file, for lineage.
        n_rows: Rows kept.
        valid: Whether the data passed validation (when not, the step still succeeds so its report is published;
            the pipeline's next step fails the run with ``problem``).
        problem: Why validation failed, in one line.
    """
    from driftloop import steps

    result = steps.load_and_validate(
        data_uri, target, registry_uri, model_name, dataset.path, report.path, spec_json, id_column, timestamp_column,
        recent_uri, recent.path, raise_on_failure=False, task=task,
    )
    dataset.metadata.update({"rows": result.n_rows, "sha256": result.data_sha256, "source": data_uri})
    return (result.spec.to_json(), result.data_sha256, result.n_rows, not result.problem, result.problem)
