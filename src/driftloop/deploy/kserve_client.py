"""Applying, promoting and rolling back InferenceServices through the official kubernetes client.

KServe's canary contract (Serverless mode): a new version is a patch of ``storageUri`` together with
``canaryTrafficPercent: P`` — the new revision takes P %, the previously rolled-out one the rest;
promote removes the field (the new revision takes 100 %); roll back sets it to 0 (the previous
revision takes everything again). Patches are JSON merge patches, as kubectl sends them.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from driftloop.deploy.inference_service import (
    GROUP,
    PLURAL,
    VERSION,
    ServingConfig,
    build_inference_service,
    to_dict,
)
from driftloop.errors import DriftloopError
from driftloop.registry import ModelVersion


@dataclass
class ServiceTraffic:
    """Who gets what, from ``status.components.predictor.traffic``."""

    revisions: list[dict]
    ready: bool

    def describe(self) -> str:
        if not self.revisions:
            return "no traffic reported yet"
        return ", ".join(f"{t.get('revisionName', '?')}: {t.get('percent', 0)}%"
                         + (" (latest)" if t.get("latestRevision") else "") for t in self.revisions)


class KServeDeployer:
    """Deploys registry versions as InferenceServices in one namespace."""

    def __init__(self, api_client: ApiClient, config: ServingConfig) -> None:
        self.api = CustomObjectsApi(api_client)
        self.config = config

    @classmethod
    def from_kubeconfig(cls, config: ServingConfig, context: str | None = None) -> KServeDeployer:
        """In a pod: the service account; elsewhere: the kubeconfig (``KUBECONFIG`` or ~/.kube/config)."""
        from kubernetes import config as kube_config

        try:
            kube_config.load_incluster_config()
        except kube_config.ConfigException:
            try:
                kube_config.load_kube_config(context=context)
            except (kube_config.ConfigException, FileNotFoundError) as exc:
                raise DriftloopError(f"no Kubernetes configuration: {exc}") from None
        return cls(ApiClient(), config)

    def _call(self, what: str, fn, *args, **kwargs):
        from urllib3.exceptions import HTTPError

        try:
            return fn(GROUP, VERSION, self.config.namespace, PLURAL, *args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                raise
            raise DriftloopError(f"{what} failed: HTTP {exc.status} {exc.reason}") from None
        except (HTTPError, OSError) as exc:
            raise DriftloopError(f"{what} failed: cannot reach the Kubernetes API ({type(exc).__name__})") from None

    def get(self, name: str) -> dict | None:
        try:
            return self._call(f"reading InferenceService {name}", self.api.get_namespaced_custom_object, name)
        except ApiException:
            return None

    def deploy(self, version: ModelVersion, canary_percent: int | None) -> dict:
        """Creates the InferenceService, or rolls the new version out on the existing one.

        ``canary_percent`` None (or a first deployment) sends all traffic to ``version``.
        """
        existing = self.get(version.name)
        if existing is None:
            body = to_dict(build_inference_service(version, self.config, None))
            return self._call(f"creating InferenceService {version.name}", self.api.create_namespaced_custom_object,
                              body)
        patch = {
            "metadata": {"labels": {"driftloop.io/model-version": str(version.version)}},
            "spec": {"predictor": {"canaryTrafficPercent": canary_percent,
                                   "model": {"storageUri": version.storage_uri,
                                             "modelFormat": {"name": version.model_format}}}},
        }
        return self._patch(version.name, patch)

    def set_canary_percent(self, name: str, percent: int) -> dict:
        return self._patch(name, {"spec": {"predictor": {"canaryTrafficPercent": int(percent)}}})

    def promote(self, name: str) -> dict:
        """The latest revision takes all traffic: the field is removed (merge patch null)."""
        return self._patch(name, {"spec": {"predictor": {"canaryTrafficPercent": None}}})

    def rollback(self, name: str) -> dict:
        """The previously rolled-out revision takes all traffic again."""
        return self.set_canary_percent(name, 0)

    def traffic(self, name: str) -> ServiceTraffic:
        obj = self.get(name)
        if obj is None:
            raise DriftloopError(f"InferenceService {name} not found in namespace {self.config.namespace}")
        status = obj.get("status") or {}
        predictor = (status.get("components") or {}).get("predictor") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        return ServiceTraffic(list(predictor.get("traffic") or []), ready)

    def _patch(self, name: str, patch: dict) -> dict:
        try:
            return self._call(f"patching InferenceService {name}", self.api.patch_namespaced_custom_object,
                              name, patch)
        except ApiException:
            raise DriftloopError(f"InferenceService {name} not found in namespace {self.config.namespace}") from None
