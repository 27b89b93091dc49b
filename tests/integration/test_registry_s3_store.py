"""The S3 registry and its store: it refuses to write to a store that ignores ``If-None-Match: *``, and its
readers follow the audit trail by listing only what was appended. A proxy on 127.0.0.1 in front of the test
S3 server plays the careless store and counts requests."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from driftloop.errors import RegistryError
from driftloop.registry import PRODUCTION
from driftloop.registry.s3 import S3Registry
from driftloop.storage import S3Settings

from ..conftest import run_cli
from ..s3_proxy import Request, S3Proxy

NAME = "churn"


@pytest.fixture
def bucket(s3_server) -> str:
    name = f"store-{uuid.uuid4().hex[:12]}"
    s3_server.settings().client().make_bucket(name)
    return name


def _through(s3_server, proxy: S3Proxy) -> dict[str, str]:
    return {**s3_server.env, "DRIFTLOOP_S3_ENDPOINT": f"http://{proxy.endpoint}"}


def _register(registry: S3Registry, tmp_path: Path, payload: bytes):
    source = tmp_path / uuid.uuid4().hex
    source.mkdir()
    (source / "model.joblib").write_bytes(payload)
    return registry.register(NAME, source, model_format="sklearn", lineage={"run_id": payload.decode()}, metrics={},
                             attachments={}, actor=payload.decode())


def _register_together(registries: list[S3Registry], tmp_path: Path) -> list:
    results: list = [None] * len(registries)

    def write(i: int) -> None:
        try:
            results[i] = _register(registries[i], tmp_path, f"writer-{i}".encode())
        except Exception as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(registries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_a_store_that_ignores_if_none_match_is_refused_before_two_writers_share_a_version(
        s3_server, bucket, tmp_path) -> None:
    claims = threading.Barrier(2, timeout=60)

    def meet_at_the_claim(request: Request) -> None:
        if request.method == "PUT" and request.path.endswith("/.claim"):
            claims.wait()  # both writers have listed the versions before either claims one

    with S3Proxy(s3_server.endpoint, strip_conditional=True, hold=meet_at_the_claim) as proxy:
        careless = S3Settings.from_env(_through(s3_server, proxy))
        uri = f"s3://{bucket}/unchecked"
        # What happened before the registry checked its store: both registrations get v1, one model is lost.
        writers = [S3Registry(uri, careless) for _ in range(2)]
        for writer in writers:
            writer._store_checked = True  # as if the probe had passed
        results = _register_together(writers, tmp_path)
        assert [getattr(r, "version", r) for r in results] == [1, 1], results
        assert [v.version for v in S3Registry(uri, s3_server.settings()).list_versions(NAME)] == [1]

        proxy.hold = None
        checked = S3Registry(f"s3://{bucket}/checked", careless)
        with pytest.raises(RegistryError) as refused:
            _register(checked, tmp_path, b"refused")
        message = str(refused.value)
        assert "ignores conditional writes (If-None-Match: *)" in message and "\n" not in message
        leftovers = list(s3_server.settings().client().list_objects(bucket, "checked/", recursive=True))
        assert leftovers == []  # nothing written, the probe removed

        promote = run_cli("models", "promote", NAME, "1", "--registry", uri, env=_through(s3_server, proxy))
        assert promote.returncode != 0 and "Traceback" not in promote.stderr
        assert promote.stderr.strip().startswith("driftloop: error: registry s3://") and \
            "ignores conditional writes" in promote.stderr and promote.stderr.strip().count("\n") == 0


def test_a_store_that_honours_if_none_match_passes_the_probe(s3_server, bucket, tmp_path) -> None:
    registry = S3Registry(f"s3://{bucket}/registry", s3_server.settings())
    results = _register_together([registry, S3Registry(registry.uri, s3_server.settings())], tmp_path)
    assert sorted(r.version for r in results) == [1, 2]
    assert registry.verify(NAME) == []


def test_a_poll_lists_and_reads_only_the_entries_appended_since_the_last(s3_server, bucket, tmp_path) -> None:
    uri = f"s3://{bucket}/registry"
    writer = S3Registry(uri, s3_server.settings())
    for payload in (b"one", b"two"):
        _register(writer, tmp_path, payload)
    for i in range(40):
        writer.record(NAME, "window-closed", actor="monitor", reason=f"window {i}")
    with S3Proxy(s3_server.endpoint) as proxy:
        reader = S3Registry(uri, S3Settings.from_env(_through(s3_server, proxy)))
        assert reader.aliases(NAME) == {}
        assert proxy.count("GET", "/audit/") == 42  # the first read takes the whole trail

        proxy.clear()
        assert reader.aliases(NAME) == {}
        assert (proxy.count("GET", query_contains="list-type=2"), proxy.count("GET", "/audit/")) == (1, 0)

        writer.promote(NAME, 1, actor="alice")
        writer.promote(NAME, 2, actor="alice")
        writer.record(NAME, "window-closed", actor="monitor")
        proxy.clear()
        assert reader.aliases(NAME) == {PRODUCTION: 2}
        assert (proxy.count("GET", query_contains="list-type=2"), proxy.count("GET", "/audit/")) == (1, 3)
        assert [e.seq for e in reader.history(NAME)] == list(range(45))

        # verify reads everything again, so a deleted old entry a poll would not notice is still found
        s3_server.settings().client().remove_object(bucket, f"registry/models/{NAME}/audit/0000000005.json")
        assert reader.aliases(NAME) == {PRODUCTION: 2}
        assert any("removed" in p for p in reader.verify(NAME))
