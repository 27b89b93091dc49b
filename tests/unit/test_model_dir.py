"""The self-contained model directory: what a server that sees only /mnt/models checks before it unpickles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftloop import model_dir
from driftloop.errors import IntegrityError
from driftloop.registry import LocalRegistry
from driftloop.serving.versions import ServedVersion
from driftloop.training import save_model


@pytest.fixture
def registered(tmp_path: Path, trained_lr, churn_spec) -> Path:
    """A version registered the way the pipeline does it; returns its model directory (what KServe copies)."""
    registry = LocalRegistry(tmp_path / "registry")
    save_model(trained_lr.model, tmp_path / "trained")
    version = registry.register("churn", tmp_path / "trained", model_format="sklearn",
                                lineage={"run_id": "r1", "libraries": model_dir.library_versions()}, metrics={},
                                attachments={"spec.json": churn_spec.to_json().encode()}, actor="test")
    return Path(version.storage_uri)


def test_a_registered_directory_loads_on_its_own_and_predicts(registered: Path, churn_frame, churn_spec) -> None:
    served = ServedVersion.from_directory(registered)
    assert (served.name, served.version) == ("churn", 1)
    assert served.spec == churn_spec
    predictions = served.predict(churn_frame.head(20))
    assert set(predictions.tolist()) <= {0, 1} and len(predictions) == 20


def test_a_swapped_model_file_is_refused_before_unpickling(registered: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy"
    _copy(registered, target)
    (target / "model.joblib").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")  # a pickle that would run code
    with pytest.raises(IntegrityError, match="checksum mismatch for model.joblib"):
        model_dir.load(target)


def test_a_planted_extra_file_is_refused(registered: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy"
    _copy(registered, target)
    (target / "sitecustomize.py").write_text("import os")
    with pytest.raises(IntegrityError, match="files not in the manifest: sitecustomize.py"):
        model_dir.load(target)


def test_another_scikit_learn_minor_version_is_refused_with_one_line(registered: Path) -> None:
    installed = {**model_dir.library_versions(), "scikit-learn": "1.5.2"}
    with pytest.raises(model_dir.IncompatibleModelError) as caught:
        model_dir.load(registered, installed=installed)
    message = str(caught.value)
    assert "trained with scikit-learn" in message and "this server has 1.5.2" in message and "\n" not in message


def test_a_patch_release_of_scikit_learn_is_accepted(registered: Path) -> None:
    trained = model_dir.read_manifest(registered).libraries["scikit-learn"]
    major, minor = trained.split(".")[:2]
    model_dir.check_libraries(model_dir.read_manifest(registered),
                              {**model_dir.library_versions(), "scikit-learn": f"{major}.{minor}.99"})


def test_xgboost_is_checked_only_for_xgboost_pipelines(registered: Path) -> None:
    manifest = model_dir.read_manifest(registered)
    without_xgboost = {**model_dir.library_versions(), "xgboost": None}
    model_dir.check_libraries(manifest, without_xgboost)  # an sklearn Pipeline needs no xgboost
    xgb = model_dir.ModelManifest(**{**json.loads(manifest.to_json()), "model_format": "xgboost-pipeline"})
    with pytest.raises(model_dir.IncompatibleModelError, match="needs xgboost .* not installed"):
        model_dir.check_libraries(xgb, without_xgboost)


def test_a_directory_registered_before_layout_2_is_refused_with_the_reason(registered: Path, tmp_path: Path) -> None:
    target = tmp_path / "old"
    target.mkdir()
    (target / "model.joblib").write_bytes((registered / "model.joblib").read_bytes())
    with pytest.raises(IntegrityError, match="registered before model directory layout 2"):
        model_dir.load(target)


def test_a_directory_needs_exactly_one_joblib(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="exactly one model.joblib"):
        model_dir.build_manifest({"model.joblib": b"a", "other.pkl": b"b"}, model="m", version=1,
                                 model_format="sklearn", spec={}, libraries={}, lineage={})


def _copy(source: Path, target: Path) -> None:
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
