"""Component: roll a registered version out where the pipeline serves (the local gateway or KServe)."""

from kfp import dsl

from driftloop.image import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def deploy_model(registry_uri: str, model_name: str, version: int, canary_percent: int = 10,
                 serve_target: str = "local", serving_namespace: str = "", deployment_mode: str = "Serverless",
                 serving_account: str = "driftloop-serving", logger_url: str = "", logger_storage: str = "",
                 logger_storage_format: str = "json", logger_storage_account: str = "driftloop-logger",
                 logger_batch_size: int = 1, ready_timeout: float = 600.0,
                 rollout_gateway: str = "", rollout_prometheus: str = "", rollout_interval: float = 30.0,
                 rollout_monitor: str = "", rollout_policy: dict = {}) -> str:
    """Serves the version (first one or 100 %: production; else a canary), then optionally runs the canary
    analysis; the registry's aliases move only once serving has confirmed each change. A canary that passes
    waits at its share for a person's approval when the model's approval policy (in the registry) says so.

    Returns:
        Output: "promoted", "canary" (no analysis), "aborted" (it failed) or "pending-approval" (it passed).
    """
    from driftloop import steps

    return steps.deploy(
        registry_uri, model_name, version, canary_percent=canary_percent, serve_target=serve_target,
        serving_namespace=serving_namespace, deployment_mode=deployment_mode, serving_account=serving_account,
        logger_url=logger_url, logger_storage=logger_storage, logger_storage_format=logger_storage_format,
        logger_storage_account=logger_storage_account, logger_batch_size=logger_batch_size,
        ready_timeout=ready_timeout, rollout_gateway=rollout_gateway,
        rollout_prometheus=rollout_prometheus, rollout_interval=rollout_interval, rollout_monitor=rollout_monitor,
        rollout_policy=rollout_policy,
    ).action
