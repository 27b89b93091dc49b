"""Deployment: the port (:mod:`.base`), the local backend (registry aliases the gateway follows) and the
KServe backend (InferenceServices, Serverless or Standard mode), chosen by configuration (:func:`open_deployment`)."""

from __future__ import annotations

from driftloop.ct_params import LOGGER_SETTINGS, default_of
from driftloop.deploy.base import Deployment, DeploymentError, RolloutStart, ServedTraffic
from driftloop.registry import ModelRegistry

__all__ = ["Deployment", "DeploymentError", "RolloutStart", "ServedTraffic", "open_deployment"]


def open_deployment(registry: ModelRegistry, target: str, *, actor: str = "driftloop",
                    namespace: str = default_of("serving_namespace"),
                    deployment_mode: str = default_of("deployment_mode"),
                    service_account: str = default_of("serving_account"),
                    ready_timeout: float = default_of("ready_timeout"), context: str | None = None,
                    **logger) -> Deployment:
    """The deployment backend for ``target`` ("local" or "kserve").

    Args:
        logger: KServe's payload logger: ``logger_url``, ``logger_storage``, ``logger_storage_format``,
            ``logger_storage_account``, ``logger_batch_size`` (the CT parameters; their defaults when left out).
    """
    unknown = set(logger) - set(LOGGER_SETTINGS)
    if unknown:  # a caller's typo, not a user's: as an unknown keyword argument would be
        raise TypeError(f"open_deployment() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    if target == "local":
        from driftloop.deploy.local import LocalDeployment

        return LocalDeployment(registry, actor)
    if target == "kserve":
        from driftloop.deploy.kserve import KServeDeployment, kube_api_client, serving_config_for

        config = serving_config_for(namespace, deployment_mode, service_account, context, **logger)
        return KServeDeployment(registry, kube_api_client(context), config, actor=actor, ready_timeout=ready_timeout)
    from driftloop.errors import ConfigError

    raise ConfigError(f"unknown serve target '{target}': use local or kserve")
