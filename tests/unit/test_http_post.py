"""The payload logger's HTTP client against real receivers on 127.0.0.1: every way an HTTP/1.x answer can be
framed, a kept-alive connection reused, one the receiver closed replaced, and a dead receiver reported."""

from __future__ import annotations

import asyncio

import pytest

from driftloop.errors import ConfigError
from driftloop.serving.http_post import HttpPost, ReceiverError, check_url


async def _receiver(answers: list[bytes], close_after_each: bool = False):
    """A receiver that reads one POST at a time and writes the next of ``answers``; returns the server, the
    requests it read (head, body) and how many connections it accepted."""
    requests: list[tuple[bytes, bytes]] = []
    connections = [0]
    pending = list(answers)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        try:
            while pending:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                requests.append((head, await reader.readexactly(length)))
                writer.write(pending.pop(0))
                await writer.drain()
                if close_after_each:
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, requests, connections


def _run(coroutine):
    return asyncio.run(coroutine)


def test_every_framing_of_an_answer_is_read_and_a_kept_alive_connection_is_reused() -> None:
    answers = [
        b"HTTP/1.1 202 Accepted\r\ncontent-length: 17\r\ncontent-type: application/json\r\n\r\n{\"accepted\":true}",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\n{\"ac\r\n9\r\ncepted\":3\r\n1\r\n}\r\n0\r\n\r\n",
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.0 202 Accepted\r\n\r\nto the close",
    ]

    async def scenario():
        server, requests, connections = await _receiver(answers)
        port = server.sockets[0].getsockname()[1]
        post = HttpPost(f"http://127.0.0.1:{port}/events?x=1", timeout=5)
        results = [await post.post(b"ce-id: e-%d\r\n" % i, b'{"n": %d}' % i) for i in range(len(answers))]
        post.close()
        server.close()
        return results, requests, connections[0]

    results, requests, connections = _run(scenario())
    assert results == [(202, b'{"accepted":true}'), (202, b"{}"), (200, b'{"accepted":3}'), (503, b""),
                       (202, b"to the close")]
    assert connections == 1  # every answer but the last kept the connection open
    head, body = requests[2]
    assert head.startswith(b"POST /events?x=1 HTTP/1.1\r\nhost: 127.0.0.1:") and b"ce-id: e-2\r\n" in head
    assert b"content-length: 8\r\n" in head and body == b'{"n": 2}'


def test_a_connection_the_receiver_closed_is_replaced_before_the_next_post() -> None:
    async def scenario():
        answer = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"
        server, requests, connections = await _receiver([answer] * 3, close_after_each=True)
        port = server.sockets[0].getsockname()[1]
        post = HttpPost(f"http://127.0.0.1:{port}/events", timeout=5)
        statuses = []
        for _ in range(3):
            statuses.append((await post.post(b"", b"{}"))[0])
            await asyncio.sleep(0.05)  # the receiver's close arrives, as an idle keep-alive timeout's would
        post.close()
        server.close()
        return statuses, connections[0]

    assert _run(scenario()) == ([202, 202, 202], 3)


def test_a_dead_or_garbled_receiver_is_a_receiver_error() -> None:
    async def scenario():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(ReceiverError):
            await HttpPost(f"http://127.0.0.1:{port}/events", timeout=2).post(b"", b"{}")
        garbled, _, _ = await _receiver([b"SSH-2.0-OpenSSH\r\n\r\n"])
        port = garbled.sockets[0].getsockname()[1]
        with pytest.raises(ReceiverError, match="not an HTTP/1.x answer"):
            await HttpPost(f"http://127.0.0.1:{port}/events", timeout=2).post(b"", b"{}")
        garbled.close()

    _run(scenario())


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://monitor/events", "http:// or https://"), ("http:///events", "with a host"),
    ("http://user:secret@monitor/events", "must not carry credentials"), ("http://monitor:port/events", "port"),
])
def test_a_url_the_logger_cannot_post_to_is_refused_in_one_line(url, message) -> None:
    with pytest.raises(ConfigError, match=message):
        check_url(url)


def test_a_receiver_that_never_answers_is_a_timeout_and_the_next_post_reconnects() -> None:
    async def scenario():
        accepted = []

        async def silent(reader, writer):  # reads the post, never answers
            accepted.append(writer)
            await reader.read(65536)

        silent_server = await asyncio.start_server(silent, "127.0.0.1", 0)
        post = HttpPost(f"http://127.0.0.1:{silent_server.sockets[0].getsockname()[1]}/events", timeout=0.3)
        with pytest.raises(ReceiverError, match="TimeoutError: no answer within 0.3 s"):
            await post.post(b"", b"{}")
        with pytest.raises(ReceiverError, match="TimeoutError"):
            await post.post(b"", b"{}")
        post.close()
        silent_server.close()
        return len(accepted)

    assert _run(scenario()) == 2  # the late connection was dropped and a new one opened
