"""Fixtures of the integration tests that more than one module uses, and the emulated KServe cluster's."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..cluster.fixtures import event_sink, kserve_cluster, kserve_namespace  # noqa: F401 - pytest fixtures
from .manifests_render import copy_tree, render, variants


@pytest.fixture(scope="session")
def manifests_variants(tmp_path_factory) -> dict[str, Path]:
    """A user's copy of manifests/ (credentials from their examples, a signing key pair) and the directory of
    every variant: each overlay as it is, with observability switched on, and wrapped with the cluster runtime."""
    return variants(copy_tree(tmp_path_factory.mktemp("manifests") / "manifests"))


@pytest.fixture(scope="session")
def manifests_tree(manifests_variants) -> Path:
    return manifests_variants["kubeflow"].parents[1]


@pytest.fixture(scope="session")
def manifests_rendered(manifests_variants) -> dict[str, list[dict]]:
    """Each variant rendered once with the real kustomize."""
    return {name: render(path) for name, path in manifests_variants.items()}
