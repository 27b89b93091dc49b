"""The drift monitor's pages as a person meets them, rendered by a real monitor from real traffic.

A real gateway sends its payload log to a real monitor on loopback: one clean window, then two shifted ones
(m=2 of n=2 triggers a retrain; runner "none" records it), with a hostile category value in the traffic and
labels for the first window posted to /feedback. The pages are read as documents; their numbers are compared
with the monitor's own decision records.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import httpx
import pytest

from driftloop import synthetic
from driftloop.monitor.app import Monitor
from driftloop.monitor.config import MonitorConfig
from driftloop.monitor.windows import read_summaries
from driftloop.registry import LocalRegistry
from driftloop.serving.gateway import Gateway
from driftloop.serving.versions import ServedVersion
from tests.html_checks import MARKER, PAYLOAD, assert_no_script
from tests.report_pages import ReportPage, svg_texts
from tests.table_text import table_columns

from ..conftest import ServerThread, register_trained, run_cli

WINDOW = 200
PAGE_BOUND = 200_000  # bytes: Evidently's dashboards were ~4.3 MB a window


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitor-pages")
    registry = LocalRegistry(root / "registry")
    register_trained(registry, root, synthetic.generate(3000, seed=1))
    registry.promote("churn", 1, actor="test")
    spec = ServedVersion.load(registry, "churn", 1).spec
    clean = synthetic.generate(WINDOW, seed=11, id_offset=10_000)
    shifted = synthetic.generate(2 * WINDOW, seed=12, covariate_shift=0.9, id_offset=20_000)
    shifted.loc[shifted.index[::5], "region"] = PAYLOAD  # a category value that is markup
    config = MonitorConfig.from_dict({"window": {"rows": WINDOW, "seconds": 3600, "min_rows": 20},
                                      "trigger": {"m": 2, "n": 2, "min_labels": 50},
                                      "retrain": {"runner": "none"}, "report_rows": 500})
    store = root / "store"
    monitor = Monitor(registry, store, config, tick_seconds=0.2)
    with ServerThread(monitor.app, http=monitor.http_protocol()) as receiver:
        with ServerThread(Gateway(registry, logger_url=receiver.url + "/events").app) as gateway, \
                httpx.Client(base_url=gateway.url) as client:
            for name, frame in (("clean", clean), ("shifted", shifted)):
                records = json.loads(frame[spec.feature_names].to_json(orient="records"))
                for start in range(0, len(records), 20):
                    response = client.post("/v1/models/churn:predict", json={"instances": records[start:start + 20]},
                                           headers={"x-request-id": f"{name}-{start}"})
                    assert response.status_code == 200, response.text
                if name == "clean":  # labels of the first window arrive before the next one closes
                    _wait(lambda: monitor.windows.get("churn"), "the clean window")
                    labels = [{"id": f"clean-{i - i % 20}", "row": i % 20, "label": int(y)}
                              for i, y in enumerate(clean[synthetic.TARGET])]
                    assert httpx.post(receiver.url + "/feedback", json=labels).status_code == 200
        records = _wait(lambda: len(w := list(monitor.windows.get("churn", ()))) >= 3 and all(r.report for r in w)
                        and w, "three windows with pages")
        # The hostile rows fail the retrain's validation; the index shows that once the audit trail says so.
        _wait(lambda: any(e.action == "retrain-blocked" for e in registry.history("churn")), "the blocked retrain")
        served_index = httpx.get(f"{receiver.url}/reports/churn/index.html")
        served_pages = [httpx.get(f"{receiver.url}/reports/churn/{r.report}") for r in records]
        unknown_index = httpx.get(f"{receiver.url}/reports/nobody/index.html")
        summaries_served = [w.summary(monitor.labels) for w in records]
    offline = run_cli("monitor", "status", "--store", str(store))  # the monitor has stopped
    return {"monitor": monitor, "records": records, "summaries": summaries_served, "spec": spec, "store": store,
            "served_index": served_index, "served_pages": served_pages, "unknown_index": unknown_index,
            "offline": offline, "registry": registry}


def _wait(condition, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _page(run, index: int) -> tuple[str, ReportPage]:
    path = run["store"] / "reports" / "churn" / run["records"][index].report
    document = path.read_text()
    return document, ReportPage(document)


def test_the_window_page_header_says_which_window_what_it_was_compared_with_and_what_was_decided(run) -> None:
    first, drifted = run["records"][0], run["records"][2]
    _, page = _page(run, 0)
    assert page.errors == [] and page.title == f"Drift window #{first.id} of churn"
    assert page.facts["Model"] == "churn" and page.facts["Window"] == f"#{first.id}"
    assert page.facts["Rows"].startswith(f"{WINDOW} (v1: {WINDOW})")
    assert page.facts["Reference"].startswith("production v1")
    opened, closed = (datetime.fromtimestamp(t, UTC) for t in (first.opened_at, first.closed_at))
    assert page.facts["Time range"].startswith(f"{opened:%Y-%m-%d %H:%M:%S} – ")
    assert f"{closed:%H:%M:%S} UTC (" in page.facts["Time range"]
    holdout = run["registry"].get_version("churn", 1).metrics["accuracy"]
    quality = run["summaries"][0]["quality"]
    assert quality["labelled"] == WINDOW  # the labels posted for it, shown once they arrived
    assert page.facts["Realised accuracy"] == (f"{quality['accuracy']:.4f} on {WINDOW} labelled rows "
                                               f"(expected {holdout:.4f}, Δ "
                                               f"{quality['accuracy'] - holdout:+.4f})".replace("-", "\u2212"))
    assert page.facts["Decision"] == "no retrain: too few windows signal" and page.banner.kind == "pass"
    _, last = _page(run, 2)
    assert drifted.decision["action"] == "trigger"
    assert last.facts["Decision"] == "retrain triggered" and last.banner.kind == "fail"
    assert "retrain triggered" in last.banner.title and last.facts["Why"] == drifted.decision["reason"]
    assert last.facts["Retrain"].startswith("churn-v1-")


def test_the_page_shows_the_very_scores_share_and_threshold_the_monitor_decided_on(run) -> None:
    features = run["spec"].feature_names
    for index, record in enumerate(run["records"]):
        _, page = _page(run, index)
        table = page.table_under("Features against the reference")
        shown = {row[0].text: row for row in table.rows}
        assert sorted(shown) == sorted(features) and "prediction" not in shown  # the prediction is no feature
        assert set(record.feature_scores) == set(features)
        for test in record.feature_tests:
            row = shown[test["column"]]
            assert float(row[3].text) == pytest.approx(record.feature_scores[test["column"]], abs=5e-5)
            assert float(row[4].text) == pytest.approx(test["threshold"])
            assert row[5].text == ("drifted" if test["drifted"] else "no")
        drifted = sum(t["drifted"] for t in record.feature_tests)
        assert record.drift_share == round(drifted / len(features), 4)
        assert page.facts["Drift share"] == (f"{drifted} of {len(features)} features drifted "
                                             f"({record.drift_share * 100:.1f} %; dataset drift at 30.0 %)")
        prediction = page.table_under("Prediction drift").rows[0]
        assert float(prediction[2].text) == pytest.approx(record.prediction_drift["score"], abs=5e-5)
    assert [r.dataset_drift for r in run["records"]] == [False, True, True]


def test_pages_are_small_and_script_free_and_summaries_point_at_them(run) -> None:
    reports = run["store"] / "reports" / "churn"
    on_disk = read_summaries(run["store"])["churn"]
    assert [s["id"] for s in on_disk] == [r.id for r in run["records"]]
    for summary in on_disk:
        assert summary["report"] == f"window-{summary['id']:06d}.html" and (reports / summary["report"]).is_file()
    for path in [*reports.glob("window-*.html"), reports / "index.html"]:
        assert path.stat().st_size < PAGE_BOUND, path.name
        assert "<script" not in path.read_text().lower()
    assert [p.status_code for p in run["served_pages"]] == [200] * 3
    assert on_disk[0]["quality"]["labelled"] == WINDOW  # the summary carries what its page shows


def test_the_index_lists_every_window_and_marks_the_trigger(run) -> None:
    assert run["served_index"].status_code == 200 and run["unknown_index"].status_code == 404
    written = (run["store"] / "reports" / "churn" / "index.html").read_text()
    for document, served in ((run["served_index"].text, True), (written, False)):
        page = ReportPage(document)
        assert page.errors == [] and page.title == "Drift monitor: churn"
        table = page.table_under("Windows")
        records = run["records"]
        assert [row[0].text for row in table.rows] == [f"#{r.id}" for r in reversed(records)]
        assert {href for href, _ in page.links} >= {r.report for r in records}
        trigger_row = table.rows[0]
        assert trigger_row[-1].text == "retrain triggered" and "fail" in table.row_classes[0]
        chart = next(svg for svg in page.svgs() if "Drift share" in (svg.get("aria-label") or ""))
        texts = svg_texts(chart)
        # The trigger's mark, from the audit trail (blocked: the hostile rows fail the retrain's validation). The
        # served index is rendered when asked, after the block; the written one when the last page was, which
        # may be before the retrain's validation refused the rows.
        marks = [t for t in texts if t.startswith("retrain")]
        assert marks == ["retrain blocked"] if served else marks in (["retrain"], ["retrain blocked"])
        assert [t for t in texts if t in {str(r.id) for r in records}] == [str(r.id) for r in records]
        assert page.facts["Retrains triggered"] == "1"


def test_a_hostile_category_value_stays_text_in_both_pages(run) -> None:
    document, page = _page(run, 2)
    assert_no_script(document)
    assert MARKER not in "".join(a for svg in page.svgs() for a in svg.attrib.values())
    bars = page.table_under("Features against the reference").row("region")[6]
    assert " ".join(PAYLOAD.split()) in bars.text  # shown, as text, in the plot's tooltip
    assert_no_script(run["served_index"].text)
    assert run["served_pages"][2].headers["content-security-policy"]  # served sandboxed, as every page


def test_monitor_status_reads_the_store_without_a_monitor(run, tmp_path) -> None:
    offline = run["offline"]
    assert offline.returncode == 0, offline.stderr
    assert max(len(line) for line in offline.stdout.splitlines()) <= 80  # wrapped to the terminal, not cut
    columns = table_columns(offline.stdout, "churn: the last")
    assert columns["window"].split() == [str(r.id) for r in run["records"]]
    assert columns["decision"].split() == ["quiet", "quiet", "trigger"]
    accuracy = [cell.strip() for cell in columns["accuracy"].splitlines() if cell.strip()]
    assert accuracy[0] == f"{run['summaries'][0]['quality']['accuracy']:.4f} ({WINDOW})"  # labels that came
    reports = re.findall(r"^  report: (.+)$", offline.stdout, re.M)  # each under its window's row
    assert reports == [r.report for r in run["records"]]
    missing = run_cli("monitor", "status", "--store", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "no monitor store" in missing.stderr and "Traceback" not in missing.stderr
