"""The README's table of contents lists its sections as they are (tools/readme_toc.py writes it)."""

import importlib.util

from ..conftest import REPO_ROOT


def test_the_readme_table_of_contents_is_current() -> None:
    spec = importlib.util.spec_from_file_location("readme_toc", REPO_ROOT / "tools" / "readme_toc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.README.read_text()

    assert module.with_toc(text) == text, "README.md: stale table of contents; run .venv/bin/python tools/readme_toc.py"
