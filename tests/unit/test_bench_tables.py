"""The public tables bench/bench_models.py compares estimators on ship inside installed packages: each reaches
driftloop with the network off, as a user's Parquet file would, typed and with two label classes."""

from __future__ import annotations

import importlib.util
import socket
import sys

import pytest

from tests.conftest import REPO_ROOT


def _bench_models(monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("bench_models", REPO_ROOT / "bench" / "bench_models.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_models", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_public_tables_load_offline_typed_with_two_classes(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _bench_models(monkeypatch)

    def refuse(*args, **kwargs):
        raise OSError("network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    public = [t for t in bench.tables(quick=False) if t.source != "driftloop.synthetic"]
    assert len(public) >= 1
    for table in public:
        clean, spec = bench.prepare(table, tmp_path)

        assert len(clean) >= 4000, table.name
        assert len(spec.target_classes) == 2, table.name
        assert "rownames" not in spec.feature_names, table.name  # R's row numbers are no feature
        assert spec.names_of("categorical"), table.name
