"""Exit-handler component: record how the CT run ended in the model's audit trail."""

from kfp import dsl
from kfp.dsl import PipelineTaskFinalStatus

from driftloop.image import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def record_outcome(status: PipelineTaskFinalStatus, registry_uri: str, model_name: str, run_id: str):
    """Appends a ``run-finished`` audit entry with the run's final state and error, if any."""
    from driftloop import steps

    steps.record_outcome(registry_uri, model_name, run_id, status.state, status.error_message or "")
