"""How driftloop's HTTP services (gateway, serving runtime, monitor) run uvicorn: one definition for all."""

from __future__ import annotations

# Warnings and errors only: the services log what matters themselves, and never a request's credentials.
# No access log and no proxy headers: nothing reads a client's address, and rewriting it from
# X-Forwarded-For on every request cost the monitor a tenth of its CPU per event at full rate.
UVICORN_OPTIONS: dict[str, object] = {"log_level": "warning", "access_log": False, "proxy_headers": False}
