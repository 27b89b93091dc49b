"""The installed package (the project image installs it non-editable) must carry every subpackage."""

import tomllib

from tests.conftest import REPO_ROOT


def test_every_subpackage_is_declared_for_installation():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(config["packages"])
    source = REPO_ROOT / "src" / "driftloop"
    found = {"driftloop" + ("." + ".".join(p.parent.relative_to(source).parts) if p.parent != source else "")
             for p in source.rglob("__init__.py")}
    missing = found - declared
    assert not missing, f"packages missing from pyproject [tool.setuptools] packages: {sorted(missing)}"
