"""Fixtures for the integration tier: the emulated KServe cluster (tests/cluster) for every module here."""

from ..cluster.fixtures import event_sink, kserve_cluster, kserve_namespace  # noqa: F401 - pytest fixtures
