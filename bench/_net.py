"""Loopback helpers shared by the benchmark scripts (run as `python bench/<script>.py`)."""

from __future__ import annotations

import socket
import time


def wait_for_port(port: int, timeout: float = 90.0) -> None:
    """Returns once something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")
