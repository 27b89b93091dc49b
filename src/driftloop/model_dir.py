"""The self-contained model directory: what a version's ``model/`` holds, and loading it safely.

KServe's storage initializer copies only ``storageUri`` to ``/mnt/models``, so the directory carries all
serving needs (layout 2)::

    model.joblib            the fitted Pipeline: exactly one .joblib, which KServe's sklearn runtime can load
                            where its scikit-learn matches
    model.onnx              optional: the Pipeline compiled for the fast scoring path, present only when it was
                            proven to agree with the Pipeline (the figures are the lineage's ``fast_path``;
                            see :mod:`driftloop.fastpath`)
    driftloop-model.json    the manifest: model, version, format, dataset spec, the libraries that trained
                            it, every file's sha256, the lineage, and the writer's Ed25519 signature over
                            all of that (canonical JSON with the slot empty; see :mod:`driftloop.signing`)

Versions registered before layout 2 (``layout`` 1) have no manifest; their spec and lineage live beside
``model/`` in the registry. They still load through the registry (the local gateway, batch use); a
cluster runtime, which sees only the directory, refuses them with one line that says so.

Loading checks, in order, before anything is unpickled: the manifest's signature against the keys the
reader trusts (an unsigned manifest loads as "unsigned" unless the policy requires signatures), the
manifest's file hashes, then that the installed scikit-learn (and XGBoost, for XGBoost Pipelines) has the minor version that trained the model
— a pickled Pipeline from another minor version may load and predict wrongly ("may be invalid").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from driftloop.errors import DriftloopError, IntegrityError
from driftloop.signing import MANIFEST_DOMAIN, SignatureCheck, SigningKey, Trust, canonical_json

LAYOUT = 2
MANIFEST_FILE = "driftloop-model.json"
MODEL_FILENAME = "model.joblib"
ONNX_FILENAME = "model.onnx"  # the fast scoring path's graph, covered by the manifest's hashes like the rest
FAST_PATH_KEY = "fast_path"  # the lineage entry (hence the manifest's) that says whether and why it serves
SKLEARN_FORMAT = "sklearn"
XGBOOST_FORMAT = "xgboost-pipeline"
MODEL_FORMATS = (SKLEARN_FORMAT, XGBOOST_FORMAT)
# The annotation that names a served version on an InferenceService's predictor; KServe's payload logger
# forwards it in every event's ce-annotations (logger.metadataAnnotations).
VERSION_ANNOTATION = "driftloop.io/model-version"
# Recorded in every version's lineage and manifest.
LIBRARIES = ("scikit-learn", "xgboost", "pandas", "numpy", "kfp", "kserve", "evidently")


class IncompatibleModelError(DriftloopError):
    """The model was trained with library versions this process cannot load faithfully."""


@dataclass(frozen=True)
class ModelManifest:
    """``driftloop-model.json``: what a model directory holds and what it needs to be served."""

    model: str
    version: int
    model_format: str
    spec: dict
    libraries: dict[str, str | None]
    files: dict[str, str]  # file name -> sha256, every file in the directory but the manifest
    lineage: dict = field(default_factory=dict)
    layout: int = LAYOUT
    signature: str | None = None  # the writer's signature over the manifest with this slot empty

    def signing_payload(self) -> bytes:
        """The bytes the signature covers: the canonical JSON of the manifest with the slot empty."""
        return canonical_json({**asdict(self), "signature": None})

    def signed(self, key: SigningKey) -> ModelManifest:
        """This manifest with its signature slot filled by ``key``."""
        return replace(self, signature=key.sign(MANIFEST_DOMAIN, self.signing_payload()))

    def check_signature(self, trust: Trust) -> SignatureCheck:
        """Verifies the signature with the reader's keys; raises :class:`IntegrityError` when it fails."""
        return trust.check(MANIFEST_DOMAIN, self.signing_payload(), self.signature,
                           f"{self.model} v{self.version} manifest")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelManifest:
        try:
            values = json.loads(text)
            return cls(**values)
        except (ValueError, TypeError) as exc:
            raise IntegrityError(f"{MANIFEST_FILE} is not a driftloop model manifest: {exc}") from None


def library_versions() -> dict[str, str | None]:
    """The installed versions of the libraries a version records."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def model_format_of(estimator_name: str) -> str:
    """The KServe model format a fitted Pipeline is served as (a name driftloop's ServingRuntime lists)."""
    return XGBOOST_FORMAT if "xgboost" in estimator_name else SKLEARN_FORMAT


def build_manifest(model_files: dict[str, bytes], *, model: str, version: int, model_format: str, spec: dict,
                   libraries: dict, lineage: dict) -> ModelManifest:
    """The manifest for a model directory's files (names relative to the directory)."""
    if model_format not in MODEL_FORMATS:
        raise DriftloopError(f"unknown model format '{model_format}': use one of {', '.join(MODEL_FORMATS)}")
    joblibs = [n for n in model_files if n.endswith((".joblib", ".pkl", ".pickle"))]
    if joblibs != [MODEL_FILENAME]:
        raise DriftloopError(f"a model directory holds exactly one {MODEL_FILENAME}, found {sorted(joblibs) or 'none'}")
    files = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(model_files.items())}
    return ModelManifest(model, version, model_format, spec, libraries, files, lineage)


def read_manifest(directory: str | Path) -> ModelManifest | None:
    """The directory's manifest, or None for a layout-1 directory."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        return None
    return ModelManifest.from_json(path.read_bytes())


def verify_files(directory: str | Path, manifest: ModelManifest) -> None:
    """Every file the manifest lists is there with its sha256, and nothing else is (a planted pickle)."""
    directory = Path(directory)
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()} - {MANIFEST_FILE}
    extra = sorted(present - set(manifest.files))
    if extra:
        raise IntegrityError(f"{manifest.model} v{manifest.version}: files not in the manifest: {', '.join(extra)}")
    for name, digest in manifest.files.items():
        path = directory / name
        if not path.is_file():
            raise IntegrityError(f"{manifest.model} v{manifest.version}: {name} is missing")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise IntegrityError(f"{manifest.model} v{manifest.version}: checksum mismatch for {name}: the file was "
                                 "changed or damaged")


def check_libraries(manifest: ModelManifest, installed: dict[str, str | None] | None = None) -> None:
    """Refuses a model whose scikit-learn (or, for XGBoost Pipelines, XGBoost) minor version differs from ours."""
    installed = installed if installed is not None else library_versions()
    needed = ["scikit-learn"] + (["xgboost"] if manifest.model_format == XGBOOST_FORMAT else [])
    for library in needed:
        trained, here = manifest.libraries.get(library), installed.get(library)
        if trained is None:
            continue  # not recorded (a hand-made directory): nothing to compare
        if here is None:
            raise IncompatibleModelError(f"{manifest.model} v{manifest.version} needs {library} {trained}, which is "
                                         "not installed here")
        if _minor(trained) != _minor(here):
            raise IncompatibleModelError(
                f"{manifest.model} v{manifest.version} was trained with {library} {trained}; this server has "
                f"{here}: serve it with a runtime of the same minor version (driftloop's image that trained it)")


@dataclass(frozen=True)
class LoadedModel:
    """A model directory loaded for scoring."""

    pipeline: Any
    manifest: ModelManifest
    signature: SignatureCheck = SignatureCheck("unsigned")
    graph: bytes | None = None  # model.onnx, when the directory holds one (checked like every file)


def load(directory: str | Path, installed: dict[str, str | None] | None = None,
         trust: Trust | None = None) -> LoadedModel:
    """Verifies a layout-2 directory (signature, hashes, libraries), then unpickles the Pipeline.

    Args:
        trust: The keys and policy to check the manifest's signature with (default: from the environment,
            :meth:`Trust.from_env`).

    Raises:
        IntegrityError: no manifest; its signature fails, is by an untrusted key, or is missing where
            signatures are required; or a file does not match it.
        IncompatibleModelError: the training libraries differ in minor version.
    """
    manifest = read_manifest(directory)
    if manifest is None:
        raise IntegrityError(f"{directory} has no {MANIFEST_FILE}: it was registered before model directory layout "
                             f"{LAYOUT}; serve it with the local gateway or register it again")
    signature = manifest.check_signature(trust if trust is not None else Trust.from_env())
    verify_files(directory, manifest)
    check_libraries(manifest, installed)
    import joblib  # only once the files are known to be the ones registered and signed

    graph = (Path(directory) / ONNX_FILENAME).read_bytes() if ONNX_FILENAME in manifest.files else None
    return LoadedModel(joblib.load(Path(directory) / MODEL_FILENAME), manifest, signature, graph)


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])
