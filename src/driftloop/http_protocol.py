"""uvicorn's HTTP/1.1 protocol with each answer's head and body leaving in one socket write.

uvicorn writes an answer's status line and headers when the app sends ``http.response.start``, and its body when
the app sends ``http.response.body``: two ``send`` calls for every answer, and on loopback each one also wakes
the reader. driftloop's services answer with one short JSON body, and the second system call cost a tenth of the
gateway's CPU per prediction. Here the writes a connection makes during one pass of the event loop are joined
and leave together at the end of that pass (``call_soon``): a whole answer in one write. A streamed answer's
chunks still leave as they come, one pass apart.
"""

from __future__ import annotations

import asyncio

try:  # what uvicorn's "auto" picks: httptools where it is installed, else h11
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _UvicornProtocol
except ImportError:  # pragma: no cover - httptools comes with uvicorn[standard], which kserve requires
    from uvicorn.protocols.http.h11_impl import H11Protocol as _UvicornProtocol


class OneWriteHttpProtocol(_UvicornProtocol):
    """uvicorn's own protocol, writing through :class:`JoinedWrites`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(JoinedWrites(transport))


class JoinedWrites:
    """A transport whose writes during one pass of the event loop are sent as one, at the end of the pass.

    Closing sends what is pending first; aborting drops it (as the transport's own buffer is dropped), and so
    does a transport that is closing when the pass ends (the peer is gone). uvicorn's flow control sees the
    transport's buffer one pass late: at most one pass's answers more are held in memory.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._pending.append(data)
        if len(self._pending) == 1:
            self._loop.call_soon(self._flush)

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(data) for data in self._pending)

    def __getattr__(self, name: str):  # everything else is the transport's own
        return getattr(self._transport, name)
