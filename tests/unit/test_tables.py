"""Terminal tables: values wrap or stack, never cut; numbers read as numbers."""

from __future__ import annotations

import pytest

from driftloop.tables import Column, Table, metric, moment, number, plain, signed
from tests.table_text import squash, table_columns

PATH = "/home/someone/projects/churn/data/2026/11/customers-with-a-long-export-name.parquet"
REASON = ("gate passed: roc_auc 0.9725 reaches the minimum 0.6000; on the holdout: roc_auc 0.9725 vs champion v1 "
          "0.9747: Δ -0.0022, within the allowed drop of 0.0100")


def _versions() -> Table:
    table = Table("versions of a-model-with-a-rather-long-name", [
        Column("version"), Column("created", wrap=True, fold=False), Column("aliases", wrap=True),
        Column("roc_auc", right=True), Column("data", wrap=True), Column("reason", below=True)])
    table.add_row("v1", moment("2026-11-28T07:37:58.151+00:00"), "production, blue-green-candidate", 0.97471,
                  PATH, REASON)
    table.add_row("v12", moment("2026-11-29T17:01:02.999+00:00"), None, 0.9725, PATH.upper(), "first version")
    return table


@pytest.mark.parametrize("width", [200, 40])
def test_a_wide_table_and_a_stacked_one_show_every_value_whole(width) -> None:
    text = plain(_versions(), width)
    assert all(len(line) <= width for line in text.splitlines()), text
    assert "…" not in text
    for value in (PATH, PATH.upper(), REASON, "2026-11-28 07:37:58.151+00:00", "blue-green-candidate", "0.9747"):
        assert squash(value) in squash(text), (value, text)


@pytest.mark.parametrize("width", [80, 66])
def test_wrapped_columns_reassemble_to_their_values(width) -> None:
    text = plain(_versions(), width)
    assert "─" in text  # still a table: it wraps before it stacks
    assert all(len(line) <= width for line in text.splitlines()) and "…" not in text
    assert squash(REASON) in squash(text)  # a value under its row runs on across lines
    columns = table_columns(text, "versions of")
    assert squash(columns["created"]) == squash("2026-11-28 07:37:58.151+00:00" "2026-11-29 17:01:02.999+00:00")
    assert squash(columns["data"]) == squash(PATH + PATH.upper())
    assert squash(columns["aliases"]) == squash("production, blue-green-candidate–")
    assert squash(columns["roc_auc"]) == "0.97470.9725"


def test_too_narrow_for_columns_stacks_rows() -> None:
    text = plain(_versions(), 40)
    assert "─" not in text and "version v1" in text and "version v12" in text


def test_number_formats() -> None:
    assert number(482.0) == "482" and number(482) == "482" and number(0.206512) == "0.2065" and number(3.5) == "3.5"
    assert metric(0.9747123) == "0.9747" and metric(None) == "–" and metric(1.0) == "1.0000"
    assert signed(-0.0022) == "-0.0022" and signed(0.0021) == "+0.0021"
