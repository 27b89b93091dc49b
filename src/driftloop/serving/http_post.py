"""POSTs over one kept-alive HTTP/1.1 connection: what each sender of the payload logger delivers events with.

The payload logger posts two events per prediction, on the gateway's own event loop. A general client (aiohttp)
spends about 100 µs of CPU per POST on request and response objects, header multidicts, timers and tracing hooks,
which the gateway then does not spend serving. This client writes the request as bytes (the caller hands over
the header lines it prepared once) and reads the answer's status line, headers and body (``Content-Length``,
chunked, or up to the close), about 15 µs per POST. One request at a time per connection, no pipelining, no
redirects, no proxies (as aiohttp's default session, which the logger used, did not read them from the
environment either); ``https://`` with the system's trusted CAs.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

from driftloop.errors import ConfigError

MAX_ANSWER_BYTES = 1024 * 1024  # a receiver's answer is a short JSON; a longer one is a broken receiver


class ReceiverError(Exception):
    """The receiver could not be reached, closed the connection, timed out or answered something that is not
    HTTP/1.x; the connection is closed (the next POST opens a new one)."""


def check_url(url: str) -> None:
    """Raises ConfigError (one line) for a URL the logger cannot post to."""
    parts = urlsplit(url)
    if not url.isascii():
        raise ConfigError(f"the payload log URL must be ASCII (percent-encode the rest), got {url!r}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the payload log URL must be http:// or https:// with a host, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError("the payload log URL must not carry credentials: give the monitor's events token "
                          "(DRIFTLOOP_EVENTS_TOKEN) instead")
    try:
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError as exc:
        raise ConfigError(f"the payload log URL has an invalid port: {exc}") from None


class HttpPost:
    """POSTs to one URL over one connection, opened on first use and again after the receiver closed it."""

    def __init__(self, url: str, timeout: float) -> None:
        check_url(url)
        parts = urlsplit(url)
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.timeout = timeout
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._start = f"POST {target} HTTP/1.1\r\nhost: {parts.netloc}\r\n".encode("ascii")
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._late = False  # the last post's answer did not come in time

    async def post(self, header_lines: bytes, body: bytes) -> tuple[int, bytes]:
        """Sends ``body`` with ``header_lines`` (``name: value\\r\\n`` each, no Content-Length); returns the
        answer's status and body. Raises ReceiverError."""
        self._late = False
        try:
            if self._writer is None or self._reader.at_eof() or self._writer.is_closing():
                async with asyncio.timeout(self.timeout):
                    await self._connect()
            # A timer that cuts the connection when the answer is late, rather than asyncio.timeout around every
            # post: its task bookkeeping cost the gateway a twentieth of its CPU at two posts per prediction.
            writer = self._writer
            timer = asyncio.get_running_loop().call_later(self.timeout, self._cut, writer)
            try:
                writer.write(b"%s%scontent-length: %d\r\n\r\n%s" % (self._start, header_lines, len(body), body))
                status, keep_alive, answer = await self._answer()
            finally:
                timer.cancel()
        except (OSError, TimeoutError, EOFError, ValueError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as exc:
            self.close()
            if self._late:
                raise ReceiverError(f"TimeoutError: no answer within {self.timeout:g} s") from None
            raise ReceiverError(f"{type(exc).__name__}: {exc}") from None
        if not keep_alive:
            self.close()
        return status, answer

    def _cut(self, writer: asyncio.StreamWriter) -> None:
        """The answer is late: the connection is dropped, and the read awaiting it ends."""
        self._late = True
        writer.transport.abort()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def _connect(self) -> None:
        self.close()
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port, ssl=self._ssl)

    async def _answer(self) -> tuple[int, bool, bytes]:
        """The status, whether the connection stays open, and the body of the answer (1xx answers skipped)."""
        reader = self._reader
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *lines = head[:-4].split(b"\r\n")
            version, _, rest = status_line.partition(b" ")
            if not version.startswith(b"HTTP/1.") or not rest[:3].isdigit():
                raise ValueError(f"not an HTTP/1.x answer: {status_line[:40]!r}")
            status = int(rest[:3])
            if status >= 200:
                break
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        connection = headers.get(b"connection", b"").lower()
        keep_alive = connection != b"close" and (version == b"HTTP/1.1" or connection == b"keep-alive")
        if status in (204, 304):
            return status, keep_alive, b""
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            return status, keep_alive, await self._chunks()
        if b"content-length" in headers:
            length = int(headers[b"content-length"])
            if not 0 <= length <= MAX_ANSWER_BYTES:
                raise ValueError(f"an answer of {length} bytes")
            return status, keep_alive, await reader.readexactly(length)
        return status, False, await reader.read(MAX_ANSWER_BYTES)  # the body runs to the close

    async def _chunks(self) -> bytes:
        parts, size = [], 0
        while True:
            chunk_size = int((await self._reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if chunk_size == 0:
                while await self._reader.readuntil(b"\r\n") != b"\r\n":  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            size += chunk_size
            if size > MAX_ANSWER_BYTES:
                raise ValueError(f"an answer of more than {MAX_ANSWER_BYTES} bytes")
            parts.append(await self._reader.readexactly(chunk_size))
            await self._reader.readexactly(2)
