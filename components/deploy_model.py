"""Component: roll a registered version out (production if nothing serves yet, else a canary)."""

from kfp import dsl

from driftloop.image import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def deploy_model(registry_uri: str, model_name: str, version: int, canary_percent: int = 10,
                 rollout_gateway: str = "", rollout_interval: float = 30.0, rollout_monitor: str = "",
                 rollout_policy: dict = {}) -> str:
    """Moves the registry aliases that serving follows; optionally runs the canary analysis.

    Returns:
        Output: "promoted", "canary" (no analysis asked for) or "aborted" (the analysis failed it).
    """
    from driftloop import steps

    return steps.deploy(registry_uri, model_name, version, canary_percent, rollout_gateway=rollout_gateway,
                        rollout_interval=rollout_interval, rollout_monitor=rollout_monitor,
                        rollout_policy=rollout_policy).action
