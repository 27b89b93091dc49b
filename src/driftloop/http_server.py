"""How driftloop's HTTP services (gateway, serving runtime, monitor) run uvicorn: one definition for all."""

from __future__ import annotations

import gc

# Warnings and errors only: the services log what matters themselves, and never a request's credentials.
# No access log and no proxy headers: nothing reads a client's address, and rewriting it from
# X-Forwarded-For on every request cost the monitor a tenth of its CPU per event at full rate.
# Every answer's head and body in one socket write (driftloop.http_protocol), named so that importing this module
# imports nothing of uvicorn.
UVICORN_OPTIONS: dict[str, object] = {"log_level": "warning", "access_log": False, "proxy_headers": False,
                                      "http": "driftloop.http_protocol:OneWriteHttpProtocol"}


def freeze_heap() -> None:
    """Puts what a service built while starting out of the garbage collector's reach (call it once started).

    pandas, scikit-learn, onnxruntime, kserve and (in the monitor) Evidently leave millions of objects that live
    as long as the process. Every full collection scanned them all again with the interpreter held: 0.1–0.3 s
    in which no request was answered, the services' slowest answers. After ``gc.freeze()`` a collection scans
    only what was made since. The price: a reference cycle among the frozen objects that later becomes garbage
    is never collected (what reference counting frees, such as a replaced model version, still is).
    """
    gc.collect()
    gc.freeze()
