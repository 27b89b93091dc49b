"""The monitor's events front door (monitor/events_http.py) answers exactly as the app behind it does.

Plain ``POST /events`` requests are read and answered by driftloop's own HTTP/1.1 protocol; anything else on the
connection is handed to uvicorn. These tests speak raw HTTP over a socket, as KServe's agent and curl do, so
that keep-alive, pipelining, the hand-over mid-connection, refusals and the connection's end are what is asserted.
"""

from __future__ import annotations

import json
import socket
import uuid

import httpx
import orjson
import pytest

from driftloop.monitor.app import Monitor
from driftloop.monitor.config import MonitorConfig
from driftloop.monitor.events_http import parse_head
from driftloop.serving.payload_logger import REQUEST_TYPE, RESPONSE_TYPE

from ..conftest import ServerThread, promoted_churn

TOKEN = "events-token-0123456789abcdef"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("events-http")
    registry, frame, features = promoted_churn(root, 600)
    rows = json.loads(frame[features].head(50).to_json(orient="records"))
    config = MonitorConfig.from_dict({"retrain": {"runner": "none"}, "max_body_bytes": 64 * 1024})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DRIFTLOOP_EVENTS_TOKEN", TOKEN)
        monitor = Monitor(registry, root / "store", config, tick_seconds=3600)
    with ServerThread(monitor.app, http=monitor.http_protocol()) as server:
        yield {"monitor": monitor, "rows": rows, "port": server.port, "url": server.url}


def event(event_id: str, kind: str, body: dict, *, token: str | None = TOKEN, content_type: str = "application/json",
          extra: str = "") -> bytes:
    """One binary-mode event half as KServe's agent (Go's net/http) writes it."""
    data = orjson.dumps(body)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST /events HTTP/1.1\r\nHost: monitor\r\nUser-Agent: Go-http-client/1.1\r\n"
            f"Content-Length: {len(data)}\r\nContent-Type: {content_type}\r\n{auth}Ce-Id: {event_id}\r\n"
            f"Ce-Type: {kind}\r\nCe-Source: http://churn-predictor/\r\nCe-Specversion: 1.0\r\n"
            f"Ce-Inferenceservicename: churn\r\nCe-Modelversion: 1\r\nCe-Endpoint: \r\n{extra}\r\n").encode() + data


def pair(world, event_id: str, i: int = 0) -> tuple[bytes, bytes]:
    return (event(event_id, REQUEST_TYPE, {"instances": [world["rows"][i]]}),
            event(event_id, RESPONSE_TYPE, {"predictions": [i % 2]}))


def taken(world, event_id: str) -> bool:
    """Whether a pair with this id was joined into rows (the open window's recent traffic holds them)."""
    return any(getattr(rows, "event_id", None) == event_id for rows in world["monitor"].recent["churn"])


class Connection:
    """A raw HTTP/1.1 connection that reads whole answers (status, headers, body)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, *requests: bytes) -> None:
        self.sock.sendall(b"".join(requests))

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self._read()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), headers, body

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def test_pairs_on_one_connection_are_taken_in_order_with_one_answer_each(world) -> None:
    before = world["monitor"].store.rows_added
    connection = Connection(world["port"])
    for n in range(3):
        connection.send(*pair(world, f"kept-{n}", n))
        answers = [connection.answer(), connection.answer()]
        assert [status for status, _, _ in answers] == [202, 202]
        assert all(json.loads(body) == {"accepted": True} for _, _, body in answers)
        assert all(h["x-content-type-options"] == "nosniff" and h["content-type"] == "application/json"
                   for _, h, _ in answers)
    connection.send(*[half for n in range(3, 6) for half in pair(world, f"piped-{n}", n)])  # six requests at once
    assert [connection.answer()[0] for _ in range(6)] == [202] * 6
    connection.close()
    assert world["monitor"].store.rows_added - before == 6


def test_another_request_on_the_same_connection_is_served_by_the_app(world) -> None:
    connection = Connection(world["port"])
    request, response = pair(world, "then-status")
    connection.send(request, b"GET /status HTTP/1.1\r\nHost: monitor\r\n\r\n", response)
    first, status, last = connection.answer(), connection.answer(), connection.answer()
    assert first[0] == 202 and last[0] == 202  # the last event went through uvicorn and the same endpoint
    assert status[0] == 200 and "events_received" in json.loads(status[2])
    connection.close()
    assert taken(world, "then-status")


def test_a_chunked_event_is_handed_over_and_taken(world) -> None:
    request, response = pair(world, "chunked")
    head, body = request.split(b"\r\n\r\n", 1)
    head = head.replace(f"Content-Length: {len(body)}".encode(), b"Transfer-Encoding: chunked")
    connection = Connection(world["port"])
    connection.send(head + b"\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n", response)
    assert [connection.answer()[0], connection.answer()[0]] == [202, 202]
    connection.close()
    assert taken(world, "chunked")


@pytest.mark.parametrize(("change", "status", "message"), [
    ({"token": None}, 401, "/events needs a valid bearer token"),
    ({"token": "wrong-token-0123456789abcdef"}, 401, "/events needs a valid bearer token"),
    ({"content_type": "text/plain"}, 415, "send the body as JSON"),
])
def test_a_refused_event_is_answered_as_the_guard_answers_and_the_connection_goes_on(world, change, status,
                                                                                     message) -> None:
    received = world["monitor"].events_received
    connection = Connection(world["port"])
    connection.send(event("refused", REQUEST_TYPE, {"instances": [world["rows"][0]]}, **change),
                    *pair(world, f"after-refusal-{uuid.uuid4().hex}"))
    got, headers, body = connection.answer()
    assert got == status and message in json.loads(body)["error"] and "connection" not in headers
    assert ("www-authenticate" in headers) == (status == 401)
    assert [connection.answer()[0], connection.answer()[0]] == [202, 202]  # its body was read and dropped
    connection.close()
    assert world["monitor"].events_received == received + 2  # the refused one was never taken
    # The same request through the app's own path (a query makes it uvicorn's: ASGI, the same guard) is answered
    # the same, headers included.
    token = change.get("token", TOKEN)
    asgi = httpx.post(world["url"] + "/events?via=app", content=b"{}",
                      headers={"content-type": change.get("content_type", "application/json"),
                               **({"authorization": f"Bearer {token}"} if token else {})})
    assert asgi.status_code == status and message in asgi.json()["error"]
    same = ("content-type", "x-content-type-options", "www-authenticate", "server")
    assert {k: asgi.headers.get(k) for k in same} == {k: headers.get(k) for k in same} and "date" in headers


def test_a_body_over_the_limit_is_413_and_dropped(world) -> None:
    connection = Connection(world["port"])
    oversized = b"[" + b" " * 70_000 + b"]"
    connection.send(b"POST /events HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\nAuthorization: Bearer "
                    + TOKEN.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(oversized) + oversized,
                    *pair(world, "after-413"))
    status, _, body = connection.answer()
    assert status == 413 and "larger than 65536 bytes" in json.loads(body)["error"]
    assert [connection.answer()[0], connection.answer()[0]] == [202, 202]
    connection.close()
    assert taken(world, "after-413")


def test_a_malformed_event_is_400_and_the_connection_goes_on(world) -> None:
    rejected = world["monitor"].events_rejected
    connection = Connection(world["port"])
    connection.send(event("not-payload", "org.example.other", {"instances": []}))
    connection.send(event("not-json", REQUEST_TYPE, {}).replace(b"Content-Length: 2", b"Content-Length: 5")[:-2]
                    + b"{oops")
    not_payload, not_json = connection.answer(), connection.answer()
    assert not_payload[0] == 400 and "not a KServe payload event" in json.loads(not_payload[2])["error"]
    assert not_json[0] == 400 and "body is not JSON" in json.loads(not_json[2])["error"]
    assert world["monitor"].events_rejected == rejected + 2
    connection.send(*pair(world, "after-bad"))
    assert [connection.answer()[0], connection.answer()[0]] == [202, 202]
    connection.close()


def test_a_client_asking_to_close_gets_its_answer_then_the_end(world) -> None:
    connection = Connection(world["port"])
    request, _ = pair(world, "closing")
    connection.send(request.replace(b"Host: monitor\r\n", b"Host: monitor\r\nConnection: close\r\n"))
    status, headers, _ = connection.answer()
    assert status == 202 and headers["connection"] == "close" and connection.closed_by_server()


@pytest.mark.parametrize("head", [
    b"POST /events HTTP/1.0\r\nContent-Length: 2",  # HTTP/1.0: uvicorn's
    b"POST /events?x=1 HTTP/1.1\r\nContent-Length: 2",  # a query: uvicorn's
    b"POST /events HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2",  # two lengths
    b"POST /events HTTP/1.1\r\nContent-Length: +2",
    b"POST /events HTTP/1.1\r\nTransfer-Encoding: chunked",
    b"POST /events HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue",
    b"POST /events HTTP/1.1\r\nContent-Length: 2\r\n folded",  # obsolete line folding
    b"POST /events HTTP/1.1\r\nContent-Length: 2\r\nBad Name: x",
    b"POST /events HTTP/1.1\r\nContent-Length: 2\r\nX: a\x01b",
    b"POST /events HTTP/1.1\r\nContent-Length: 2\r\nContent-Type: a\r\ncontent-type: b",
    b"POST /events HTTP/1.1\r\nContent-Length: 2\r\nConnection: upgrade",
    b"POST /events HTTP/1.1",
])
def test_only_the_plain_case_is_read_here(head) -> None:
    """Whatever is not a plain event post is left to uvicorn (None), which judges it as before."""
    assert parse_head(head) is None


def test_the_plain_case_keeps_the_cloudevent_headers_lower_cased_and_nothing_else() -> None:
    head = parse_head(b"POST /events HTTP/1.1\r\nContent-Length: 7\r\nCE-ID: a\r\nCe-Type:  t \r\n"
                      b"Authorization: Bearer s\r\nCookie: c")
    assert head is not None and head.length == 7 and head.authorization == "Bearer s"
    assert head.events == {"ce-id": "a", "ce-type": "t"} and head.keep_alive
