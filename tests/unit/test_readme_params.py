"""The README's table of CT parameters says what CTParams defines (one definition; the table follows it)."""

from __future__ import annotations

import re

from driftloop import ct_params
from tests.conftest import REPO_ROOT


def test_the_readme_lists_every_ct_parameter_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| (`[^`]*`|–) \|", (REPO_ROOT / "README.md").read_text(), re.M))
    for f in ct_params.fields():
        assert f.name in rows, f"README.md: no row for {f.name}"
        if f.name in ("data_uri", "target"):
            continue
        default = ct_params.default_of(f.name)
        shown = '""' if default == "" else "{}" if default == {} else str(default)
        assert rows[f.name] == f"`{shown}`", f"README.md: {f.name} default"
