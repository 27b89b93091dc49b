"""The monitor as an attacker meets it: hostile values in requests, missing or wrong tokens, cross-site
content types, path tricks, malformed bodies on every endpoint, and a bind beyond loopback with no guard.
A real gateway and a real monitor run on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from driftloop import synthetic
from driftloop.http_guard import EVENTS, LABELS, REPORT_CSP
from driftloop.monitor.app import Monitor
from driftloop.monitor.config import MonitorConfig
from driftloop.serving.gateway import Gateway
from driftloop.serving.payload_logger import REQUEST_TYPE, RESPONSE_TYPE
from tests.html_checks import PAYLOAD, assert_no_script
from tests.malformed import JSON, Probe, body_probes, path_probes

from ..conftest import REPO_ROOT, ServerThread, free_port, promoted_churn, run_cli

EVENTS_TOKEN = "events-token-" + "e" * 32
LABELS_TOKEN = "labels-token-" + "l" * 32


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitor-trust")
    registry, _, features = promoted_churn(root, 1500)
    rows = json.loads(synthetic.generate(200, seed=7)[features].to_json(orient="records"))
    return {"root": root, "registry": registry, "rows": rows}


@pytest.fixture
def tokens(monkeypatch):
    monkeypatch.setenv(EVENTS.env, EVENTS_TOKEN)
    monkeypatch.setenv(LABELS.env, LABELS_TOKEN)


def _monitor(world, tmp_path, window_rows: int) -> Monitor:
    config = MonitorConfig.from_dict({"window": {"rows": window_rows, "seconds": 3600, "min_rows": 20},
                                      "retrain": {"runner": "none"}, "report_rows": 500})
    return Monitor(world["registry"], tmp_path / "store", config, tick_seconds=0.2)


def _wait_for(condition, timeout: float = 90.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_hostile_category_sent_for_prediction_is_inert_in_the_served_window_report(world, tmp_path,
                                                                                     tokens) -> None:
    monitor = _monitor(world, tmp_path, window_rows=60)
    rows = [dict(r, region=PAYLOAD) if i % 4 == 0 else r for i, r in enumerate(world["rows"][:60])]
    # What a path that climbs out of reports/ would reach (the store's root).
    (tmp_path / "store").mkdir(parents=True, exist_ok=True)
    (tmp_path / "store" / "window-000001.html").write_text("not a report: outside reports/")
    with ServerThread(monitor.app, http=monitor.http_protocol()) as receiver:
        gateway = Gateway(world["registry"], logger_url=receiver.url + "/events", logger_token=EVENTS_TOKEN)
        with ServerThread(gateway.app) as server, httpx.Client(base_url=server.url) as client:
            for i in range(0, 60, 6):
                assert client.post("/v1/models/churn:predict", json={"instances": rows[i:i + 6]}).status_code == 200
            window = _wait_for(lambda: next((w for w in monitor.windows.get("churn", ()) if w.report), None),
                               what="a window with its report")
        report = httpx.get(f"{receiver.url}/reports/churn/{window.report}")
        climbs = [httpx.get(f"{receiver.url}/reports/{trick}/window-000001.html")
                  for trick in ("%2e%2e", "..", "%2E%2E", ".")]
        climbs.append(httpx.get(f"{receiver.url}/reports/churn/..%2Fwindow-000001.html"))
    assert monitor.store.rows_added == 60  # the gateway's events carried its token
    assert report.status_code == 200
    assert report.headers["content-security-policy"] == REPORT_CSP
    assert report.headers["x-content-type-options"] == "nosniff"
    assert_no_script(report.text)  # the page has no script; the value is escaped text in a plot's tooltip
    assert "&lt;/script&gt;&lt;script&gt;" in report.text
    assert [r.status_code for r in climbs] == [404] * len(climbs)
    assert all("outside reports" not in r.text for r in climbs)


def _event(event_id: str, kind: str, body: dict, token: str | None = EVENTS_TOKEN, **extra) -> dict:
    headers = {"ce-id": event_id, "ce-type": kind, "ce-inferenceservicename": "churn", "ce-modelversion": "1",
               "ce-specversion": "1.0", **JSON, **extra}
    return {"headers": headers | ({"authorization": f"Bearer {token}"} if token else {}),
            "content": json.dumps(body).encode()}


def test_writes_need_their_roles_token_and_a_json_content_type(world, tmp_path, tokens) -> None:
    monitor = _monitor(world, tmp_path, window_rows=10_000)
    labels_file = tmp_path / "labels.csv"
    labels_file.write_text("request,outcome\nr-1,1\nr-2,0\n")
    token_file = tmp_path / "labels-token"
    token_file.write_text(LABELS_TOKEN + "\n")
    request = {"instances": world["rows"][:1]}
    with ServerThread(monitor.app, http=monitor.http_protocol()) as server:
        url = server.url

        def post(path: str, **kwargs) -> httpx.Response:
            return httpx.post(url + path, **kwargs)

        no_token = post("/events", **_event("a", REQUEST_TYPE, request, token=None))
        wrong = post("/events", **_event("a", REQUEST_TYPE, request, token=LABELS_TOKEN))  # the other role's
        events = [post("/events", **_event("a", REQUEST_TYPE, request)),
                  post("/events", **_event("a", RESPONSE_TYPE, {"predictions": [1]}))]
        _wait_for(lambda: monitor.store.rows_added == 1, what="the joined row")
        label = [{"id": "a", "label": 1}]
        feedback = {
            "none": post("/feedback", json=label),
            "events token": post("/feedback", json=label, headers={"authorization": f"Bearer {EVENTS_TOKEN}"}),
            "basic": post("/feedback", json=label, headers={"authorization": f"Basic {LABELS_TOKEN}"}),
            # What a web page can send without asking: text/plain (a CORS "simple request").
            "text/plain": post("/feedback", content=json.dumps(label),
                               headers={"content-type": "text/plain", "authorization": f"Bearer {LABELS_TOKEN}"}),
            "right": post("/feedback", json=label, headers={"authorization": f"Bearer {LABELS_TOKEN}"}),
            "Infinity": post("/feedback", content=b'[{"id": "b", "label": Infinity}]',
                             headers={**JSON, "authorization": f"Bearer {LABELS_TOKEN}"}),
            "5,000 digits": post("/feedback", content=b'[{"id": "b", "label": ' + b"9" * 5000 + b"}]",
                                 headers={**JSON, "authorization": f"Bearer {LABELS_TOKEN}"}),
        }
        refused = run_cli("feedback", "--labels", str(labels_file), "--id-column", "request", "--label-column",
                          "outcome", "--monitor", url, env={LABELS.env: ""})
        posted = run_cli("feedback", "--labels", str(labels_file), "--id-column", "request", "--label-column",
                         "outcome", "--monitor", url, "--token-file", str(token_file), env={LABELS.env: ""})
        metrics = httpx.get(url + "/metrics")
    assert (no_token.status_code, wrong.status_code) == (401, 401)
    assert no_token.headers["www-authenticate"].startswith("Bearer") and "token" in no_token.json()["error"]
    assert [e.status_code for e in events] == [202, 202]
    assert {k: r.status_code for k, r in feedback.items()} == {
        "none": 401, "events token": 401, "basic": 401, "text/plain": 415, "right": 200, "Infinity": 400,
        "5,000 digits": 400}
    assert "application/json" in feedback["text/plain"].json()["error"]
    assert refused.returncode == 2 and "needs a valid bearer token" in refused.stderr
    assert posted.returncode == 0 and "posted 2 labels" in posted.stdout
    assert len(monitor.labels) == 3 and metrics.status_code == 200  # reads stay open (loopback, or the network guard)
    assert EVENTS_TOKEN not in metrics.text and LABELS_TOKEN not in metrics.text


def test_the_monitor_will_not_bind_beyond_loopback_unguarded(tmp_path) -> None:
    open_bind = run_cli("monitor", "--host", "0.0.0.0", "--port", str(free_port()), "--home", str(tmp_path),
                        env={EVENTS.env: "", LABELS.env: ""})
    short = run_cli("monitor", "--host", "0.0.0.0", "--home", str(tmp_path),
                    env={EVENTS.env: "short", LABELS.env: LABELS_TOKEN})
    assert open_bind.returncode == 2 and open_bind.stderr.count("\n") == 1 and "Traceback" not in open_bind.stderr
    assert "refusing to serve /events on 0.0.0.0" in open_bind.stderr and "--trust-network-policy" in open_bind.stderr
    assert short.returncode == 2 and "fewer than 16 characters" in short.stderr


def test_events_are_received_on_the_events_port_and_only_there(world, tmp_path) -> None:
    api, events = free_port(), free_port()
    command = [sys.executable, "-m", "driftloop", "monitor", "--port", str(api), "--events-port", str(events),
               "--registry", str(world["registry"].uri), "--store", str(tmp_path / "store"), "--home", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k not in (EVENTS.env, LABELS.env)}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _answers(f"http://127.0.0.1:{api}/status"), timeout=60, what="the monitor")
        event = _event(uuid.uuid4().hex, REQUEST_TYPE, {"instances": world["rows"][:1]}, token=None)
        on_api = httpx.post(f"http://127.0.0.1:{api}/events", **event)
        on_events = httpx.post(f"http://127.0.0.1:{events}/events", **event)
        status_on_events = httpx.get(f"http://127.0.0.1:{events}/status")
        feedback_on_events = httpx.post(f"http://127.0.0.1:{events}/feedback", json=[{"id": "a", "label": 1}])
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert on_events.status_code == 202
    assert on_api.status_code == 404 and "events port" in on_api.json()["error"]
    assert status_on_events.status_code == 404 and feedback_on_events.status_code == 404


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _monitor_probes(rows: list[dict]) -> list[Probe]:
    auth_events = {"authorization": f"Bearer {EVENTS_TOKEN}"}
    auth_labels = {"authorization": f"Bearer {LABELS_TOKEN}"}
    probes: list[Probe] = []
    for kind, valid in ((REQUEST_TYPE, {"instances": rows[:2]}), (RESPONSE_TYPE, {"predictions": [0, 1]})):
        ce = {"ce-id": "fuzz", "ce-type": kind, "ce-inferenceservicename": "churn", "ce-modelversion": "1"}
        probes += body_probes("POST", "/events", valid, 150, seed=len(probes), headers={**ce, **auth_events})
    # Each half of a pair arrives fine and its partner is malformed, and the CloudEvent headers themselves.
    ce_base = {"ce-type": RESPONSE_TYPE, "ce-inferenceservicename": "churn", **JSON, **auth_events}
    odd_headers = [{"ce-modelversion": "9" * 5000}, {"ce-modelversion": "-1"}, {"ce-annotations": "{"},
                   {"ce-annotations": '{"driftloop.io/model-version": "' + "9" * 5000 + '"}'},
                   {"ce-annotations": "[1]"}, {"ce-annotations": '{"driftloop.io/model-version": {}}'},
                   {"ce-inferenceservicename": "no-such-model"}, {"ce-inferenceservicename": "../../etc"},
                   {"ce-endpoint": "canary"}, {"ce-id": ""}, {"ce-type": ""}, {"ce-modelversion": "999"}]
    for i, extra in enumerate(odd_headers):
        event_id = f"pair{i}"
        probes.append(Probe("POST", "/events", json.dumps({"instances": rows[:1]}).encode(),
                            {**ce_base, "ce-id": event_id, "ce-type": REQUEST_TYPE, "ce-modelversion": "1"}))
        probes.append(Probe("POST", "/events", b'{"predictions": [1]}', {**ce_base, "ce-id": event_id, **extra}))
    for i, response in enumerate([{"predictions": {"a": 1}}, {"outputs": [1]}, {"outputs": "x"}, {"outputs": [{}]},
                                  {"predictions": None}, {"outputs": [{"data": {"x": 1}}]}, [], {"predictions": [[]]},
                                  {"predictions": [0] * 5}, {"outputs": [{"data": [0, 1]}]}]):
        probes.append(Probe("POST", "/events", json.dumps({"instances": rows[:2]}).encode(),
                            {**ce_base, "ce-id": f"resp{i}", "ce-type": REQUEST_TYPE, "ce-modelversion": "1"}))
        probes.append(Probe("POST", "/events", json.dumps(response).encode(),
                            {**ce_base, "ce-id": f"resp{i}", "ce-modelversion": "1"}))
    probes += body_probes("POST", "/feedback", [{"id": "r1", "label": 1, "row": 0}], 150, seed=7, headers=auth_labels)
    probes += body_probes("POST", "/feedback", {"labels": [{"id": "r1", "label": "yes"}]}, 40, seed=8,
                          headers=auth_labels)
    for value in ("Bearer", "Bearer " + "x" * 20_000, "Basic Zm9vOmJhcg==", "bearer " + LABELS_TOKEN + " extra", ""):
        probes.append(Probe("POST", "/feedback", b'[{"id": "a", "label": 1}]', {**JSON, "authorization": value}))
    probes += path_probes("/status?limit={}", ["5"], ["model=%00"])
    probes += [Probe("GET", f"/status?limit={v}") for v in ("abc", "-5", "0", "1" * 400, "1e9", "")]
    probes += path_probes("/windows/{}", ["churn"], ["limit=abc", "limit=-1", "limit=" + "9" * 400])
    probes += path_probes("/reports/churn/{}", ["window-000001.html"])
    probes += path_probes("/reports/{}/window-000001.html", ["churn"])
    probes += path_probes("/quality/{}", ["churn"], ["since=garbage", "since=2026-01-01T00:00:00",
                                                      "since=9999-99-99T00:00:00+00:00", "since=" + "1" * 5000,
                                                      "since=2026-01-01T00:00:00%2B99:00"])
    probes += [Probe("GET", "/metrics"), Probe("DELETE", "/events"), Probe("PUT", "/feedback", b"{}", JSON),
               Probe("POST", "/status", b"{}", JSON), Probe("GET", "/" + "a" * 10_000)]
    return probes


def test_malformed_requests_to_every_monitor_endpoint_get_4xx_and_it_stays_up(world, tmp_path, tokens) -> None:
    monitor = _monitor(world, tmp_path, window_rows=100_000)  # no window closes: this is about the HTTP layer
    probes = _monitor_probes(world["rows"])
    answers: list[tuple[int, Probe, str]] = []
    with ServerThread(monitor.app, http=monitor.http_protocol()) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for probe in probes:
            response = client.request(probe.method, probe.path, content=probe.body, headers=probe.headers)
            answers.append((response.status_code, probe, response.text[:200]))
        alive = client.get("/status")
        pair = [client.post("/events", **_event("after", kind, body)) for kind, body in
                ((REQUEST_TYPE, {"instances": world["rows"][:1]}), (RESPONSE_TYPE, {"predictions": [1]}))]
    server_errors = [(status, probe.describe(), text) for status, probe, text in answers if status >= 500]
    print(f"\nmonitor fuzz: {len(answers)} malformed requests tried, 5xx: {len(server_errors)}")
    assert server_errors == []
    # A lone malformed half waits (202) for a partner that never comes, and a mutated label can still be a
    # label; everything else is refused.
    refused = [(status, text) for status, _, text in answers if 400 <= status < 500]
    assert len(answers) >= 500 and all(s < 300 or 400 <= s < 500 for s, _, _ in answers)
    print(f"monitor fuzz: {len(refused)} refused with 4xx, {len(answers) - len(refused)} accepted")
    # Each refusal is one line of JSON, whoever answered: driftloop's guards, its handlers or FastAPI's.
    assert [(s, t) for s, t in refused if not t.startswith('{"error":') and not t.startswith('{"detail":')] == []
    assert alive.status_code == 200 and [p.status_code for p in pair] == [202, 202]
