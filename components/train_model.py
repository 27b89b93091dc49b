"""Component: fit the preprocessing + estimator Pipeline."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from driftloop.image import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def train_model(
    dataset: Input[Dataset],
    spec_json: str,
    model: Output[Model],
    holdout: Output[Dataset],
    estimator: str = "logistic_regression",
    estimator_params: dict = {},
    test_size: float = 0.25,
    seed: int = 42,
):
    """Fits a seeded scikit-learn Pipeline (logistic regression, random forest, gradient boosting, XGBoost).

    Returns:
        model: A directory holding exactly one ``model.joblib`` (the registry adds its manifest).
        holdout: The held-out rows, for evaluation.
    """
    from driftloop import steps

    result = steps.train(dataset.path, spec_json, model.path, holdout.path, estimator, estimator_params, test_size, seed)
    model.metadata.update({"framework": "sklearn", "model_format": result.model_format, "estimator": estimator,
                           "train_rows": result.n_train})
    holdout.metadata.update({"rows": result.n_holdout})
