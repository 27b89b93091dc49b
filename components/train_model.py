"""Component: fit the preprocessing + estimator Pipeline (``auto``: the best of a few candidates)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from driftloop.image import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def train_model(
    dataset: Input[Dataset],
    recent: Input[Dataset],
    spec_json: str,
    model: Output[Model],
    holdout: Output[Dataset],
    leaderboard: Output[Metrics],
    estimator: str = "auto",
    estimator_params: dict = {},
    test_size: float = 0.25,
    seed: int = 42,
    gate_metric: str = "auto",
    calibration: str = "none",
):
    """Fits a seeded scikit-learn Pipeline: a pinned estimator, or ``auto`` — a linear model, gradient boosting
    and XGBoost scored on a validation split of the training rows, the best refitted on all of them.

    Returns:
        model: A directory holding exactly one ``model.joblib`` (the registry adds its manifest); its metadata
            names the estimator fitted and the leaderboard.
        holdout: The held-out rows, for evaluation.
        leaderboard: Each candidate's validation score by the gate metric, and its fit seconds (``auto``); for a
            drift retrain, each way of weighing the new world, scored on the recent slice.
    """
    import json

    from driftloop import steps

    result = steps.train(dataset.path, spec_json, model.path, holdout.path, estimator, estimator_params, test_size,
                         seed, gate_metric, recent.path, calibration)
    model.metadata.update({"framework": "sklearn", "model_format": result.model_format, "estimator": result.estimator,
                           "requested_estimator": estimator, "train_rows": result.n_train,
                           "leaderboard": json.dumps(result.leaderboard), "strategies": json.dumps(result.strategies)})
    holdout.metadata.update({"rows": result.n_holdout})
    for candidate in result.leaderboard:
        leaderboard.log_metric(f"validation_{candidate['metric']}_{candidate['estimator']}", candidate["value"])
        leaderboard.log_metric(f"fit_seconds_{candidate['estimator']}", candidate["fit_seconds"])
    for tried in result.strategies:
        name = f"recent_{tried['metric']}_weight{tried['live_weight']:g}_{tried['reference_window']}"
        leaderboard.log_metric(name, tried["value"])
