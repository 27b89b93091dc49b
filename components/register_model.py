"""Component: register the candidate as a new immutable version."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Model, Output

from driftloop.image import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def register_model(
    model: Input[Model],
    dataset: Input[Dataset],
    holdout: Input[Dataset],
    recent: Input[Dataset],
    spec_json: str,
    outcome_json: str,
    registry_uri: str,
    model_name: str,
    data_uri: str,
    data_sha256: str,
    estimator: str,
    estimator_params: dict,
    seed: int,
    test_size: float,
    triggered_by: str,
    run_id: str,
    run_name: str,
    model_card: Output[Markdown],
    intended_use: str = "",
    limitations: str = "",
) -> int:
    """Stores the model directory with its spec, reference profile and sample, card, evaluation report, lineage and
    the model compiled for the fast scoring path when it agrees with the Pipeline on the holdout and the reference
    sample; a retried attempt returns the version the first one published.

    Returns:
        model_card: The version's Markdown model card (the registry holds the same text): its number, trigger,
            parent, training data, metrics against the champion, intended use and limitations.
        Output: The new version number.
    """
    from pathlib import Path

    from driftloop import steps

    lineage = {
        "run_id": run_id, "run_name": run_name, "data_uri": data_uri, "data_sha256": data_sha256,
        "estimator": estimator, "params": estimator_params, "seed": seed, "test_size": test_size,
        "triggered_by": triggered_by, "intended_use": intended_use, "limitations": limitations,
    }
    version, card = steps.register(model.path, dataset.path, spec_json, outcome_json, registry_uri, model_name, lineage,
                                   trained=model.metadata, holdout_path=holdout.path, recent_path=recent.path)
    Path(model_card.path).write_text(card)
    model_card.metadata.update({"model": model_name, "version": version.version})
    return version.version
