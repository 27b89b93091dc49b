"""driftloop's serving runtime for KServe: the project image as a KServe model server.

``python -m driftloop.serving.runtime --model_name=<isvc> --model_dir=/mnt/models --http_port=8080`` — the
command the ``driftloop`` ServingRuntime (manifests/base) runs. It loads the self-contained model directory
KServe's storage initializer left at ``--model_dir``, checking the manifest's signature (against
``DRIFTLOOP_VERIFY_KEY`` / ``--verify_key_file``; ``--require_signatures`` refuses unsigned models), every
file against the manifest and the training libraries' minor versions before unpickling anything, then serves it with the same model class and
app as the local gateway (:class:`~driftloop.serving.routed_model.RoutedModel`, one version, no split):
KServe V1 (records, KServe's column lists, positional lists) and V2, ``/metrics`` per version, errors as
4xx JSON. A model it cannot load faithfully stops it with one line on stderr, so KServe marks the revision
failed and it never takes traffic.

Flags are KServe's own (``kserve.model_server.parser``: ``--http_port``, ``--model_name`` …) plus
``--model_dir``, ``--host``, ``--max_body_bytes``, ``--verify_key_file``, ``--require_signatures``,
``--batch_max_rows`` and ``--batch_wait_us`` (:class:`~driftloop.serving.scoring.Batching`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from contextlib import asynccontextmanager

from driftloop.errors import DriftloopError

EXIT_CANNOT_SERVE = 2


def build_parser() -> argparse.ArgumentParser:
    from kserve.model_server import parser as kserve_parser

    from driftloop.serving.app import DEFAULT_MAX_BODY_BYTES
    from driftloop.serving.batching import add_batching_flags

    parser = argparse.ArgumentParser(prog="driftloop-runtime", parents=[kserve_parser], conflict_handler="resolve",
                                     description="driftloop's KServe model server")
    parser.add_argument("--model_dir", required=True, help="the model directory (KServe's /mnt/models)")
    # Knative's queue-proxy and KServe's agent reach the server on localhost; Standard mode's Service reaches
    # the pod's address, for which the ServingRuntime passes --host=0.0.0.0 explicitly.
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--max_body_bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--verify_key_file", default=None,
                        help="PEM public key(s) the manifest's signature is checked with (or DRIFTLOOP_VERIFY_KEY)")
    parser.add_argument("--require_signatures", action="store_true", default=None,
                        help="refuse a model whose manifest is not signed by a trusted key "
                             "(or DRIFTLOOP_REQUIRE_SIGNATURES=1)")
    add_batching_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, _ = build_parser().parse_known_args(argv)  # KServe's runtimes accept flags they do not use
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from driftloop.serving.batching import batching_from_args
    from driftloop.serving.versions import ServedVersion
    from driftloop.signing import Trust

    try:
        batching = batching_from_args(args)
    except ValueError as exc:
        print(f"driftloop-runtime: error: {exc}", file=sys.stderr)
        return EXIT_CANNOT_SERVE
    try:
        trust = Trust.from_env(require=args.require_signatures, verify_key_file=args.verify_key_file)
        version = ServedVersion.from_directory(args.model_dir, trust)
        version.warm_up()  # before the port opens: readiness means ready to answer at full speed
    except (DriftloopError, OSError) as exc:
        print(f"driftloop-runtime: error: cannot serve {args.model_dir}: {exc}", file=sys.stderr)
        return EXIT_CANNOT_SERVE
    import uvicorn
    from kserve import ModelServer
    from kserve.model_repository import ModelRepository

    from driftloop.http_server import UVICORN_OPTIONS, freeze_heap
    from driftloop.serving.app import inference_app
    from driftloop.serving.metrics import GatewayMetrics
    from driftloop.serving.routed_model import RoutedModel
    from driftloop.serving.scoring import ScoringWorker

    metrics = GatewayMetrics()
    server = ModelServer(registered_models=ModelRepository(), enable_grpc=False, workers=1)
    model = RoutedModel(args.model_name, version, metrics, scoring=ScoringWorker(batching))
    server.register_model(model)

    @asynccontextmanager
    async def lifespan(app):
        freeze_heap()  # the version is loaded
        yield
        model.scoring.shutdown()

    app = inference_app("driftloop runtime", server, metrics, lifespan, args.max_body_bytes)
    print(f"driftloop-runtime: serving {version.name} v{version.version} as '{args.model_name}' on "
          f"http://{args.host}:{args.http_port}, scoring with {version.serves_with}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.http_port, timeout_graceful_shutdown=5, **UVICORN_OPTIONS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
