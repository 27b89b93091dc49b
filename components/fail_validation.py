"""Component: fail a run whose data failed validation, after the validation step published its report."""

from kfp import dsl

from driftloop.image import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def fail_validation(problem: str):
    """Raises the validation problem, so the run ends FAILED with it (KFP publishes no artifact of a failed step,
    so the validation step itself succeeds and shows its report)."""
    from driftloop import steps

    steps.fail_validation(problem)
