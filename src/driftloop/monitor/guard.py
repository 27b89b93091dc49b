"""The monitor's HTTP guards: who may post where, how large a body may be, which report files are served,
and on which port events are received. The checks themselves are :mod:`driftloop.http_guard`'s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from driftloop.errors import ConfigError
from driftloop.http_guard import EVENTS, LABELS, Role, check_exposure, guard_asgi, install_guards, send_error
from driftloop.monitor.config import MonitorConfig
from driftloop.registry.base import check_model_name

EVENTS_PATH = "/events"
# The write endpoints and the role whose token each requires.
WRITE_ROLES: dict[str, Role] = {EVENTS_PATH: EVENTS, "/feedback": LABELS}
# What the monitor writes under <store>/reports/<model>/ (monitor/pages.py's window_file names them so).
_REPORT_NAME = re.compile(r"window-\d{6,}\.html")


def tokens(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Write path → the token it requires (None where none is configured)."""
    return {path: role.token(environ) for path, role in WRITE_ROLES.items()}


def protect(app: FastAPI, config: MonitorConfig, environ: Mapping[str, str] | None = None) -> None:
    """Body limit, JSON content type, bearer tokens and security headers in front of the monitor's app."""
    install_guards(app, max_body_bytes=config.max_body_bytes, tokens=tokens(environ))


def protect_endpoint(endpoint: ASGIApp, config: MonitorConfig, environ: Mapping[str, str] | None = None) -> ASGIApp:
    """The same guards as :func:`protect` around one plain ASGI endpoint (``/events``)."""
    return guard_asgi(endpoint, max_body_bytes=config.max_body_bytes, tokens=tokens(environ))


def check_monitor_exposure(host: str, config: MonitorConfig, environ: Mapping[str, str] | None = None) -> None:
    """Refuses (one line) to bind beyond loopback with a write endpoint that no token or network guards."""
    check_exposure(host, WRITE_ROLES, tokens(environ), config.auth.network_guard)


def valid_model_name(model: str) -> bool:
    """Whether ``model`` can name a model — the registry's rule (so never ``..``, ``.`` or a path, and never a name
    the registry would refuse to look up)."""
    try:
        check_model_name(model)
    except ConfigError:
        return False
    return True


def report_file(reports: Path, model: str, name: str) -> Path | None:
    """The window report ``name`` of ``model`` if the monitor wrote one; never a path outside ``reports``."""
    if not valid_model_name(model) or not _REPORT_NAME.fullmatch(name):
        return None
    root = reports.resolve()
    path = (root / model / name).resolve()
    if path.parent.parent != root or not path.is_file():  # a symlink planted in the store leads nowhere
        return None
    return path


class EventsPort:
    """With a separate events port, ``/events`` is served there and only there.

    In a cluster the NetworkPolicy then admits predictor pods to the events port and nothing else, and
    everyone else (label posters, Prometheus, the rollout) to the API port, which does not take events.
    """

    def __init__(self, app: ASGIApp, events_port: int) -> None:
        self.app = app
        self.events_port = events_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            on_events_port = (scope.get("server") or (None, None))[1] == self.events_port
            if on_events_port != (scope.get("path") == EVENTS_PATH):
                where = "on the API port" if on_events_port else "only on the events port"
                await send_error(send, 404, f"{scope.get('path')} is served {where}")
                return
        await self.app(scope, receive, send)
