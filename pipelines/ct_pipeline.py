"""The continuous-training pipeline: validate → train → evaluate → (gate) register → deploy.

Run ``python pipelines/ct_pipeline.py`` (or ``driftloop compile``) to regenerate ct_pipeline.yaml,
the Kubeflow IR a cluster runs; a test keeps the two in step.

The pipeline's inputs are :class:`driftloop.ct_params.CTParams` — names, types, defaults and descriptions
come from there — and each step receives the CT parameters it declares. Every step runs on one image
(``driftloop.image``; ``--image`` / ``DRIFTLOOP_IMAGE`` at compile time) with caching off: each reads state
that changes between runs (data at a URI, the champion, the cluster).

S3 credentials reach the pods from the Kubernetes Secret ``driftloop-s3`` (kfp-kubernetes), never through
pipeline parameters, so they appear in no run's inputs, in no UI and in no lineage record.
"""

import inspect
from pathlib import Path

from kfp import compiler, dsl, kubernetes

from driftloop import ct_params
from driftloop.components.deploy_model import deploy_model
from driftloop.components.evaluate_model import evaluate_model
from driftloop.components.fail_validation import fail_validation
from driftloop.components.load_and_validate import load_and_validate
from driftloop.components.record_outcome import record_outcome
from driftloop.components.register_model import register_model
from driftloop.components.train_model import train_model
from driftloop.image import PROJECT_IMAGE

PIPELINE_NAME = "driftloop-ct"
IR_PATH = Path(__file__).with_suffix(".yaml")
IO_RETRIES = 3
# The Secret the manifests create in the pipeline's namespace; its keys become the pods' environment,
# which is where driftloop.storage.S3Settings.from_env looks.
S3_SECRET = "driftloop-s3"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "DRIFTLOOP_S3_ENDPOINT")
# The registry's signing key (private: only the steps that write versions or audit entries) and the public key
# every reader checks signatures against. Both optional: a registry that is not signed needs neither.
SIGNING_SECRET, SIGNING_KEY = "driftloop-signing", "DRIFTLOOP_SIGNING_KEY"
VERIFY_CONFIG_MAP, VERIFY_KEY = "driftloop-verify-key", "DRIFTLOOP_VERIFY_KEY"
DESCRIPTION = ("driftloop continuous training: validate, train, evaluate against the champion, register an "
               "immutable version and roll it out as a canary (locally or on KServe).")


def with_s3_credentials(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Gives a task that reads data or the registry the S3 Secret as environment variables.

    kfp.local ignores Kubernetes platform config: locally the component subprocesses inherit the
    caller's environment instead.
    """
    return kubernetes.use_secret_as_env(task, secret_name=S3_SECRET,
                                        secret_key_to_env={key: key for key in S3_SECRET_KEYS})


def with_registry_keys(task: dsl.PipelineTask, writes: bool) -> dsl.PipelineTask:
    """Gives a registry reader the public key, and a writer also the signing key (from their Secret/ConfigMap)."""
    kubernetes.use_config_map_as_env(task, config_map_name=VERIFY_CONFIG_MAP,
                                     config_map_key_to_env={VERIFY_KEY: VERIFY_KEY}, optional=True)
    if writes:
        kubernetes.use_secret_as_env(task, secret_name=SIGNING_SECRET, secret_key_to_env={SIGNING_KEY: SIGNING_KEY},
                                     optional=True)
    return task


def _step(component, params: dict, **inputs) -> dsl.PipelineTask:
    """Calls ``component`` with every CT parameter it declares, plus ``inputs`` (task outputs, placeholders)."""
    declared = component.component_spec.inputs or {}
    return component(**{name: params[name] for name in declared if name in params and name not in inputs}, **inputs)


def _signature() -> inspect.Signature:
    """The pipeline's signature: one input per CT parameter, typed and defaulted as CTParams says."""
    parameters = []
    for f in ct_params.fields():
        required = f.name in ct_params.REQUIRED_IN_PIPELINE
        default = inspect.Parameter.empty if required else ct_params.default_of(f.name)
        parameters.append(inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                                            annotation=ct_params.python_type(f)))
    return inspect.Signature(parameters)


def _docstring() -> str:
    """KFP records each input's description from the docstring's Args section."""
    args = "\n".join(f"    {f.name}: {f.metadata['help']}" for f in ct_params.fields())
    return f"{DESCRIPTION}\n\nArgs:\n{args}\n"


def build_ct_pipeline(with_exit_handler: bool = True, image: str = PROJECT_IMAGE):
    """Builds the pipeline.

    Args:
        with_exit_handler: Wrap the steps in a ``dsl.ExitHandler`` that records the outcome. The
            cluster pipeline has it; ``kfp.local`` cannot run exit handlers (kfp 2.16 raises
            NotImplementedError), so the local runner builds it without and records the outcome itself.
        image: The image every step runs on.
    """

    def ct_pipeline(*channels):
        p = dict(zip(_signature().parameters, channels, strict=True))
        tasks: list[dsl.PipelineTask] = []

        def steps() -> None:
            validated = _step(load_and_validate, p).set_display_name("load and validate")
            tasks.append(validated)
            # The validation step succeeds either way, so its report reaches the dashboard (KFP uploads no
            # artifact of a failed step); invalid data fails the run in the next step, with the problem.
            with dsl.If(validated.outputs["valid"] == True, name="data-valid"):  # noqa: E712 (KFP condition)
                trained = _step(train_model, p, dataset=validated.outputs["dataset"], recent=validated.outputs["recent"],
                                spec_json=validated.outputs["spec_json"]).set_display_name("train")
                evaluated = _step(evaluate_model, p, model=trained.outputs["model"], holdout=trained.outputs["holdout"],
                                  recent=validated.outputs["recent"], spec_json=validated.outputs["spec_json"],
                                  run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                                  ).set_display_name("evaluate vs champion")
                tasks.extend([trained, evaluated])
                with dsl.If(evaluated.outputs["passed"] == True, name="gate-passed"):  # noqa: E712 (KFP condition)
                    registered = _step(
                        register_model, p, model=trained.outputs["model"], dataset=validated.outputs["dataset"],
                        recent=validated.outputs["recent"],
                        holdout=trained.outputs["holdout"],
                        spec_json=validated.outputs["spec_json"], outcome_json=evaluated.outputs["outcome_json"],
                        data_sha256=validated.outputs["data_sha256"], run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                        run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                    ).set_display_name("register")
                    deployed = _step(deploy_model, p, version=registered.outputs["Output"]).set_display_name("deploy")
                    tasks.extend([registered, deployed])
            with dsl.Else(name="data-invalid"):
                tasks.append(fail_validation(problem=validated.outputs["problem"]).set_display_name(
                    "validation failed"))
            for task in (validated, registered, deployed):
                task.set_retry(num_retries=IO_RETRIES, backoff_duration="10s")
            # train-model gets no Secret: it reads and writes only artifacts, which KFP itself moves.
            for task in (validated, evaluated, registered, deployed):
                with_s3_credentials(task)
                with_registry_keys(task, writes=task in (registered, deployed))

        if with_exit_handler:
            outcome = record_outcome(registry_uri=p["registry_uri"], model_name=p["model_name"],
                                     run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER).set_display_name("record outcome")
            with_s3_credentials(outcome)
            with_registry_keys(outcome, writes=True)
            tasks.append(outcome)
            with dsl.ExitHandler(outcome, name="ct-steps"):
                steps()
        else:
            steps()
        for task in tasks:
            task.set_caching_options(False)
            task.container_spec.image = image

    ct_pipeline.__signature__ = _signature()
    ct_pipeline.__doc__ = _docstring()
    return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(ct_pipeline)


ct_pipeline = build_ct_pipeline()


def compile_ct_pipeline(path: "str | Path" = IR_PATH, image: str = PROJECT_IMAGE) -> Path:
    """Compiles the cluster pipeline to Kubeflow IR YAML at ``path``, every step on ``image``."""
    compiler.Compiler().compile(build_ct_pipeline(image=image), str(path))
    return Path(path)


if __name__ == "__main__":
    print(compile_ct_pipeline())
