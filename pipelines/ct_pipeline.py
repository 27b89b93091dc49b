"""The continuous-training pipeline: validate → train → evaluate → (gate) register → deploy.

Run ``python pipelines/ct_pipeline.py`` (or ``driftloop compile``) to regenerate ct_pipeline.yaml,
the Kubeflow IR a cluster runs; a test keeps the two in step.

S3 credentials reach the pods from the Kubernetes Secret ``driftloop-s3`` (kfp-kubernetes), never through
pipeline parameters, so they appear in no run's inputs, in no UI and in no lineage record.
"""

from pathlib import Path

from kfp import compiler, dsl, kubernetes

from driftloop.components.deploy_model import deploy_model
from driftloop.components.evaluate_model import evaluate_model
from driftloop.components.load_and_validate import load_and_validate
from driftloop.components.record_outcome import record_outcome
from driftloop.components.register_model import register_model
from driftloop.components.train_model import train_model

PIPELINE_NAME = "driftloop-ct"
IR_PATH = Path(__file__).with_suffix(".yaml")
IO_RETRIES = 3
# The Secret the manifests create in the pipeline's namespace; its keys become the pods' environment,
# which is where driftloop.storage.S3Settings.from_env looks.
S3_SECRET = "driftloop-s3"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "DRIFTLOOP_S3_ENDPOINT")


def with_s3_credentials(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Gives a task that reads data or the registry the S3 Secret as environment variables.

    kfp.local ignores Kubernetes platform config: locally the component subprocesses inherit the
    caller's environment instead.
    """
    return kubernetes.use_secret_as_env(task, secret_name=S3_SECRET,
                                        secret_key_to_env={key: key for key in S3_SECRET_KEYS})


def build_ct_pipeline(with_exit_handler: bool = True):
    """Builds the pipeline.

    Args:
        with_exit_handler: Wrap the steps in a ``dsl.ExitHandler`` that records the outcome. The
            cluster pipeline has it; ``kfp.local`` cannot run exit handlers (kfp 2.16 raises
            NotImplementedError), so the local runner builds it without and records the outcome itself.
    """

    @dsl.pipeline(name=PIPELINE_NAME, description="driftloop continuous training: validate, train, evaluate "
                  "against the champion, register an immutable version and roll it out as a canary.")
    def ct_pipeline(
        data_uri: str,
        target: str,
        model_name: str = "churn",
        registry_uri: str = "s3://driftloop/registry",
        spec_json: str = "",
        id_column: str = "",
        timestamp_column: str = "",
        estimator: str = "logistic_regression",
        estimator_params: dict = {},
        test_size: float = 0.25,
        seed: int = 42,
        gate_metric: str = "roc_auc",
        min_gate_value: float = 0.6,
        max_regression: float = 0.01,
        canary_percent: int = 10,
        rollout_gateway: str = "",
        rollout_interval: float = 30.0,
        rollout_monitor: str = "",
        rollout_policy: dict = {},
        triggered_by: str = "manual",
    ):
        def steps() -> None:
            validated = load_and_validate(
                data_uri=data_uri, target=target, registry_uri=registry_uri, model_name=model_name,
                spec_json=spec_json, id_column=id_column, timestamp_column=timestamp_column,
            ).set_retry(num_retries=IO_RETRIES, backoff_duration="10s")
            validated.set_display_name("load and validate")
            with_s3_credentials(validated)
            trained = train_model(
                dataset=validated.outputs["dataset"], spec_json=validated.outputs["spec_json"],
                estimator=estimator, estimator_params=estimator_params, test_size=test_size, seed=seed,
            ).set_display_name("train")
            evaluated = evaluate_model(
                model=trained.outputs["model"], holdout=trained.outputs["holdout"],
                spec_json=validated.outputs["spec_json"], registry_uri=registry_uri, model_name=model_name,
                gate_metric=gate_metric, min_gate_value=min_gate_value, max_regression=max_regression,
            ).set_display_name("evaluate vs champion")
            with_s3_credentials(evaluated)
            with dsl.If(evaluated.outputs["passed"] == True, name="gate-passed"):  # noqa: E712 (KFP condition)
                registered = register_model(
                    model=trained.outputs["model"], dataset=validated.outputs["dataset"],
                    spec_json=validated.outputs["spec_json"], outcome_json=evaluated.outputs["outcome_json"],
                    registry_uri=registry_uri, model_name=model_name, data_uri=data_uri,
                    data_sha256=validated.outputs["data_sha256"], estimator=estimator,
                    estimator_params=estimator_params, seed=seed, test_size=test_size, triggered_by=triggered_by,
                    run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                ).set_retry(num_retries=IO_RETRIES, backoff_duration="10s").set_display_name("register")
                with_s3_credentials(registered)
                deployed = deploy_model(
                    registry_uri=registry_uri, model_name=model_name, version=registered.outputs["Output"],
                    canary_percent=canary_percent, rollout_gateway=rollout_gateway, rollout_interval=rollout_interval,
                    rollout_monitor=rollout_monitor, rollout_policy=rollout_policy,
                ).set_retry(num_retries=IO_RETRIES, backoff_duration="10s").set_display_name("deploy")
                with_s3_credentials(deployed)
            # Every step reads or writes state that changes between runs (data at a URI, the champion).
            # train-model gets no Secret: it reads and writes only artifacts, which KFP itself moves.
            for task in (validated, trained, evaluated):
                task.set_caching_options(False)

        if with_exit_handler:
            outcome = record_outcome(registry_uri=registry_uri, model_name=model_name,
                                     run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER).set_display_name("record outcome")
            outcome.set_caching_options(False)
            with_s3_credentials(outcome)
            with dsl.ExitHandler(outcome, name="ct-steps"):
                steps()
        else:
            steps()

    return ct_pipeline


ct_pipeline = build_ct_pipeline()


def compile_ct_pipeline(path: "str | Path" = IR_PATH) -> Path:
    """Compiles the cluster pipeline to Kubeflow IR YAML at ``path``."""
    compiler.Compiler().compile(ct_pipeline, str(path))
    return Path(path)


if __name__ == "__main__":
    print(compile_ct_pipeline())
