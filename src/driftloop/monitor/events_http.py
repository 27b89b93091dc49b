"""The monitor's HTTP/1.1 front door: ``POST /events`` answered without ASGI, everything else by uvicorn.

KServe's agent posts every event half as a request of its own: thousands a second at a fast gateway's rate.
Through uvicorn's ASGI cycle each one cost a task, a scope, message dicts, the guard's wrappers and two socket
writes, more CPU than taking the event in. :class:`EventsProtocol` is the protocol uvicorn runs for the monitor's
port(s) (uvicorn's ``http`` option: uvicorn still owns the sockets, the lifespan and the graceful shutdown), and
it reads the plain case itself:

* the request line is exactly ``POST /events HTTP/1.1`` (no query);
* every header line is a token, a colon and a value without control characters;
* there is one Content-Length, no Transfer-Encoding, Expect or Upgrade, and at most one content-type and
  authorization.

Such a request is checked by the services' one guard (:meth:`driftloop.http_guard.Guard.refusal`: token 401,
JSON 415, size 413, in that order), taken by :meth:`Monitor.take_events <driftloop.monitor.app.Monitor.take_events>`
and answered with one write once it is on disk, with ``nosniff`` and uvicorn's date and server headers as on
every answer. A refused request is answered at once and its body read and dropped, as uvicorn does, so the
connection goes on. A connection's requests are answered in order, one at a time.

Anything else (another path or method, chunked framing, HTTP/1.0, a malformed or unusual head, the API port when
events have a port of their own) hands the connection over to uvicorn's own protocol (driftloop.http_protocol's
one-write variant), with every byte not yet consumed. uvicorn then serves it through the ASGI app as before, where
the same guard and the same endpoint answer. So this module never judges what it does not parse, and a client
sees one service either way.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

from driftloop.http_guard import NOSNIFF, Guard, error_body
from driftloop.monitor.guard import EVENTS_PATH

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024  # a longer head is uvicorn's to judge
_REQUEST_LINE = b"POST " + EVENTS_PATH.encode() + b" HTTP/1.1\r\n"
# RFC 9110's field lines: a token, a colon, then a value of anything but control characters (HTAB aside).
_FIELD = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\x00-\x08\x0a-\x1f\x7f]*\r\n"
_FIELDS = re.compile(rb"(?:" + _FIELD + rb")*")
_NAME_VALUE = re.compile(r"([^:]+):([^\r]*)\r\n")  # within lines already checked by _FIELDS (as latin-1 text)
_HANDED_OVER = ("transfer-encoding", "expect", "upgrade", "te")

TakeEvents = Callable[[str | None, dict[str, str], bytes], asyncio.Future]


@dataclass(slots=True)
class RequestHead:
    """What the events front reads of a request's head."""

    length: int
    content_type: str | None
    authorization: str | None
    events: dict[str, str]  # the CloudEvent headers (``ce-*``), names lower-cased
    keep_alive: bool


def parse_head(head: bytes) -> RequestHead | None:
    """The head of a plain ``POST /events`` (without its blank line); None for anything else, which is then
    uvicorn's to serve."""
    if not head.startswith(_REQUEST_LINE):
        return None
    fields = head[len(_REQUEST_LINE):] + b"\r\n"
    if not _FIELDS.fullmatch(fields):
        return None
    length = content_type = authorization = None
    events: dict[str, str] = {}
    keep_alive = True
    for name, value in _NAME_VALUE.findall(fields.decode("latin-1")):  # header bytes as ASGI servers decode them
        value = value.strip(" \t")
        name = name.lower()
        if name.startswith("ce-"):
            events[name] = value  # a repeated one: the last, as the ASGI endpoint takes it
        elif name == "content-length":
            if length is not None or not (value.isascii() and value.isdigit()) or len(value) > 18:
                return None
            length = int(value)
        elif name == "content-type":
            if content_type is not None:
                return None
            content_type = value
        elif name == "authorization":
            if authorization is not None:
                return None
            authorization = value
        elif name == "connection":
            options = {option.strip().lower() for option in value.split(",")}
            if "upgrade" in options:
                return None
            keep_alive = keep_alive and "close" not in options
        elif name in _HANDED_OVER:
            return None
    if length is None:
        return None
    return RequestHead(length, content_type, authorization, events, keep_alive)


def _latin1(value: str | None) -> bytes | None:
    return None if value is None else value.encode("latin-1")


def _could_be_events_request(buffer: bytearray) -> bool:
    """Whether what has arrived so far can still be the start of a plain ``POST /events``."""
    shown = min(len(buffer), len(_REQUEST_LINE))
    return buffer[:shown] == _REQUEST_LINE[:shown]


class EventsProtocol(asyncio.Protocol):
    """One connection to the monitor: plain ``POST /events`` requests answered here, the connection handed to
    uvicorn's protocol at the first request that is not one.

    Args:
        take: Takes an event post: (content type, CloudEvent headers, body) → a future of (status, JSON body).
        guard: The checks every request passes (the same instance serves ``/events`` through ASGI).
        events_port: The port events are served on when it is not the API port (None: every port).
        config, server_state, app_state, _loop: What uvicorn gives its protocols (passed on at a hand-over).
    """

    def __init__(self, take: TakeEvents, guard: Guard, events_port: int | None, *, config, server_state,
                 app_state, _loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.take, self.guard, self.events_port = take, guard, events_port
        self._uvicorn = {"config": config, "server_state": server_state, "app_state": app_state, "_loop": _loop}
        self.connections = server_state.connections
        self.server_state = server_state  # its default headers (date, server) are uvicorn's, refreshed each second
        self.timeout_keep_alive = config.timeout_keep_alive
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: RequestHead | None = None  # the request whose body is still arriving
        self.scanned = 0  # bytes of the buffer already searched for the end of a head
        self.discarding = 0  # bytes of a refused request's body still to arrive (read and dropped, as uvicorn does)
        self.answering = False  # a request was taken and its answer is awaited
        self.keep_alive = True
        self.closed = False
        self.handed_over = False
        self.reading_paused = self.writing_paused = False
        self.idle: asyncio.TimerHandle | None = None

    # ---- asyncio's protocol interface -----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.connections.add(self)
        port = (transport.get_extra_info("sockname") or ("", None))[1]
        if self.events_port is not None and port != self.events_port:
            self._hand_over()  # the API port: uvicorn's app says that events are not taken here
            return
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        self._cancel_idle()
        self.buffer += data
        if self.answering:
            if len(self.buffer) > self.guard.max_bytes + MAX_HEAD_BYTES:  # a client pipelining without end
                self._pause_reading()
            return
        self._serve()

    def eof_received(self) -> bool | None:
        return None  # the transport closes; an answer still awaited is not written, what was taken stays

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.connections.discard(self)
        self._cancel_idle()

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._pause_reading()  # no more requests until the client reads its answers

    def resume_writing(self) -> None:
        self.writing_paused = False
        if not self.answering:
            self._resume_reading()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close now when idle, else after the awaited answer."""
        if self.answering:
            self.keep_alive = False
        elif self.transport is not None:
            self.transport.close()

    # ---- requests ------------------------------------------------------------------------------

    def _serve(self) -> None:
        """Takes the buffered requests in, one at a time, until one is awaited or more bytes are needed."""
        while not (self.answering or self.closed or self.handed_over or self.transport.is_closing()):
            if self.discarding:
                dropped = min(self.discarding, len(self.buffer))
                del self.buffer[:dropped]
                self.discarding -= dropped
                if self.discarding:
                    return
            if self.head is None:
                if not self.buffer:
                    self._arm_idle()
                    return
                if not _could_be_events_request(self.buffer):
                    self._hand_over()
                    return
                end = self.buffer.find(b"\r\n\r\n", max(0, self.scanned - 3))  # a head may come a byte at a time
                if end < 0:
                    self.scanned = len(self.buffer)
                    if len(self.buffer) > MAX_HEAD_BYTES:
                        self._hand_over()
                    return
                self.scanned = 0
                head = parse_head(bytes(self.buffer[:end]))
                if head is None:
                    self._hand_over()
                    return
                del self.buffer[:end + 4]
                self.keep_alive = self.keep_alive and head.keep_alive
                refused = self.guard.refusal(EVENTS_PATH, "POST", _latin1(head.content_type),
                                             _latin1(head.authorization), b"%d" % head.length)
                if refused is not None:  # answered at once; its body is read and dropped, the connection goes on
                    status, message, headers = refused
                    self.discarding = head.length
                    self._write(status, error_body(message), headers)
                    continue
                self.head = head
            if len(self.buffer) < self.head.length:
                return  # the body is still arriving
            body = bytes(self.buffer[:self.head.length])
            del self.buffer[:self.head.length]
            head, self.head = self.head, None
            self.answering = True
            self.take(head.content_type, head.events, body).add_done_callback(self._answered)

    def _answered(self, answer: asyncio.Future) -> None:
        try:
            status, body = answer.result()
        except asyncio.CancelledError:  # the monitor is stopping
            status, body = 503, error_body("the monitor is shutting down; send the event again")
        except Exception as exc:  # noqa: BLE001 - answered, and the connection goes on
            log.error("monitor: an event post failed", exc_info=exc)
            status, body = 500, error_body(f"the monitor failed to take the event ({type(exc).__name__})")
        self.answering = False
        if self.closed or self.transport.is_closing():  # the client went away: what was taken stays
            return
        self._write(status, body)
        if self.keep_alive:
            self._resume_reading()
            self._serve()

    def _write(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = ()) -> None:
        """The whole answer in one write; the connection is closed after it unless kept alive."""
        head = [_STATUS_LINES.get(status) or b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode()),
                b"content-type: application/json\r\ncontent-length: %d\r\n%s: %s\r\n" % (len(body), *NOSNIFF)]
        head += [name + b": " + value + b"\r\n" for name, value in (*self.server_state.default_headers, *headers)]
        if not self.keep_alive:
            head.append(b"connection: close\r\n")
        head += [b"\r\n", body]
        self.transport.write(b"".join(head))
        if not self.keep_alive:
            self.transport.close()

    # ---- the connection ------------------------------------------------------------------------

    def _hand_over(self) -> None:
        """From now on uvicorn's own protocol serves this connection, starting with the bytes not consumed."""
        from driftloop.http_protocol import OneWriteHttpProtocol  # uvicorn's own, one write per answer

        self.handed_over = True
        self._cancel_idle()
        self.writing_paused = False  # uvicorn's protocol keeps its own account from here
        self._resume_reading()
        self.connections.discard(self)
        protocol = OneWriteHttpProtocol(**self._uvicorn)
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        if self.buffer:
            data, self.buffer = bytes(self.buffer), bytearray()
            protocol.data_received(data)

    def _arm_idle(self) -> None:
        if self.idle is None and not self.closed:
            self.idle = asyncio.get_running_loop().call_later(self.timeout_keep_alive, self._idle_timeout)

    def _cancel_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None

    def _idle_timeout(self) -> None:
        self.idle = None
        if not self.answering and self.transport is not None:
            self.transport.close()

    def _pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and not self.closed and not self.writing_paused:
            self.reading_paused = False
            self.transport.resume_reading()


_STATUS_LINES = {status: b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())
                 for status in (202, 400, 401, 413, 415, 500, 503)}
