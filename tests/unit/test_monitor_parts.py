"""The monitor's parts: its configuration file, delayed labels, windows and realised quality."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from driftloop.errors import ConfigError
from driftloop.monitor.config import MonitorConfig, WindowConfig
from driftloop.monitor.events import EventError
from driftloop.monitor.labels import LabelStore
from driftloop.monitor.retention import prune_reports
from driftloop.monitor.store import RowStore
from driftloop.monitor.windows import WindowBuffer, WindowRecord

DAY = 86400.0


def test_config_file_sets_sections_and_keeps_defaults(tmp_path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text("model: churn\nwindow: {rows: 250}\ndrift: {num_method: ks}\n"
                    "trigger: {m: 2, n: 4, cooldown_seconds: 60}\nretrain: {runner: none, recent_rows: 10}\n")
    config = MonitorConfig.load(path)
    assert config.window.rows == 250 and config.window.seconds == WindowConfig().seconds
    assert config.drift.num_method == "ks" and config.drift.max_rows == 5000  # the monitor's own default kept
    assert (config.trigger.m, config.trigger.n, config.trigger.cooldown_seconds) == (2, 4, 60.0)
    assert config.retrain.runner == "none"


@pytest.mark.parametrize("text, message", [
    ("windows: {rows: 5}", "unknown monitor setting 'windows'"),
    ("trigger: {m: 2, typo: 1}", "unknown monitor setting(s) in 'trigger': typo"),
    ("window: {rows: many}", "monitor setting 'window' has a bad value"),
    ("retrain: {runner: kfp}", "needs kfp_host"),
    ("retrain: {runner: kfp, kfp_host: 'http://kfp'}", "needs an s3:// data_dir"),
    ("window: [1, 2", "is not valid YAML"),
    ("- just\n- a list", "must be a mapping"),
    ("retention: {rows_days: 30, row_bytes: 5}", "unknown monitor setting(s) in 'retention': row_bytes"),
    ("retention: {labels_days: -1}", "retention labels_days must be a positive number or null"),
])
def test_config_mistakes_are_named(tmp_path, text, message) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        MonitorConfig.load(path)
    assert message in str(caught.value)


def test_labels_survive_a_restart_and_compare_as_classes(tmp_path) -> None:
    store = LabelStore(tmp_path)
    assert store.add([{"id": "a", "label": 1}, {"id": "b", "label": True}, {"id": "c", "row": 2, "label": 0.0}]) == 3
    reopened = LabelStore(tmp_path)
    keys = pd.Series(["a:0", "b:0", "c:2", "c:0"])
    assert reopened.lookup(keys).tolist() == ["1", "1", "0", None]


@pytest.mark.parametrize("items", [[{"label": 1}], [{"id": "x"}], [{"id": "x", "label": None}],
                                   [{"id": "x", "label": 1, "row": -1}], ["not an object"],
                                   [{"id": "x", "label": float("inf")}], [{"id": "x", "label": float("-inf")}]])
def test_bad_labels_are_refused_whole(tmp_path, items) -> None:
    store = LabelStore(tmp_path)
    with pytest.raises(EventError):
        store.add([{"id": "fine", "label": 1}, *items])
    assert len(store) == 0 and not list((tmp_path / "labels").glob("part-*"))


def rows(n: int, version: int = 1, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"event_id": [f"e{i}" for i in range(start, start + n)], "row": 0, "version": version,
                         "prediction": [i % 2 for i in range(start, start + n)], "x": range(n)})


def test_windows_close_by_rows_or_by_time_with_enough_rows() -> None:
    buffer = WindowBuffer(WindowConfig(rows=100, seconds=60, min_rows=30), now=0)
    buffer.add(rows(70))
    assert not buffer.due(now=10)
    buffer.add(rows(50, start=70))
    assert buffer.due(now=10)
    chunks = buffer.take_chunks(now=10)
    buffer.add(rows(5, start=120))  # arrives while the window is being built
    window, rest = buffer.split(chunks)
    buffer.put_back(rest)
    assert len(window) == 100 and buffer.rows == 25 and buffer.opened_at == 10  # the rest opens the next window
    assert window["event_id"].tolist() == [f"e{i}" for i in range(100)]
    assert buffer.split(buffer.take_chunks(now=10))[0]["event_id"].tolist() == [f"e{i}" for i in range(100, 125)]
    buffer.put_back(rows(20, start=100), rows(5, start=120))  # a window that could not be built: its rows return
    assert not buffer.due(now=100)  # old enough but too few rows: carried on
    buffer.add(rows(15, start=125))
    assert buffer.due(now=100)


def test_realised_quality_updates_as_labels_arrive(tmp_path) -> None:
    labels = LabelStore(tmp_path)
    frame = pd.concat([rows(10, version=1), rows(10, version=2, start=10)], ignore_index=True)
    record = WindowRecord.open(1, "churn", frame, 0, reference_version=1)
    assert record.quality(labels) == {"metric": "accuracy", "labelled": 0, "accuracy": None, "by_version": {}}
    # Version 1 predicted i % 2; label everything 0: v1 right on evens only, v2 rows labelled later.
    labels.add([{"id": f"e{i}", "label": 0} for i in range(10)])
    first = record.quality(labels)
    assert first["labelled"] == 10 and first["by_version"] == {"1": {"labelled": 10, "accuracy": 0.5}}
    labels.add([{"id": f"e{i}", "label": i % 2} for i in range(10, 20)])
    second = record.quality(labels)
    assert second["labelled"] == 20 and second["by_version"]["2"] == {"labelled": 10, "accuracy": 1.0}
    assert second["accuracy"] == 0.75


def test_label_parts_are_merged_and_old_labels_dropped(tmp_path) -> None:
    store = LabelStore(tmp_path, compact_parts=8)
    now = 1_000 * DAY
    store.add([{"id": "ancient", "label": 1}], at=now - 200 * DAY)
    for i in range(10):
        store.add([{"id": f"r{i}", "label": i % 2}, {"id": "again", "label": i}], at=now - 10 * DAY + i)
    assert store.parts() == 11
    assert store.compact(max_age_days=90, now=now) == (1, 11)  # one label too old, eleven parts merged
    reopened = LabelStore(tmp_path)
    keys = pd.Series(["ancient:0", "r3:0", "again:0"])
    assert reopened.parts() == 1 and len(reopened) == 11
    assert reopened.lookup(keys).tolist() == store.lookup(keys).tolist() == [None, "1", "9"]  # the newest wins
    assert store.compact(max_age_days=90, now=now) == (0, 0)  # nothing to merge or drop


def test_rows_and_reports_are_kept_by_age_then_by_size(tmp_path) -> None:
    store = RowStore(tmp_path / "rows")
    days = pd.date_range("2026-01-01", periods=5, freq="D", tz="UTC")
    for i, day in enumerate(days):
        store.add("churn", rows(100, start=100 * i).assign(received_at=day))
    store.write(store.take(), tag=1)
    per_day = store.size() / 5
    now = pd.Timestamp("2026-02-02", tz="UTC")  # the first two days are more than 30 days old
    assert store.retain(30, None, now) == (2, pytest.approx(2 * per_day, rel=0.1))
    assert store.retain(None, int(1.5 * per_day), now)[0] == 2  # the oldest go until the rest fits
    assert store.read("churn")["received_at"].unique().tolist() == [days[4]]
    assert store.retain(None, 1, now) == (0, 0)  # the newest day stays whatever its size
    reports = tmp_path / "reports" / "churn"
    reports.mkdir(parents=True)
    for i in range(4):
        (reports / f"window-{i:06d}.html").write_text("x" * 1000)
        os.utime(reports / f"window-{i:06d}.html", (now.timestamp() - (40 - 10 * i) * DAY,) * 2)
    assert prune_reports(tmp_path / "reports", 25, 1500, now.timestamp()) == (3, 3000)
    assert [p.name for p in reports.iterdir()] == ["window-000003.html"]
