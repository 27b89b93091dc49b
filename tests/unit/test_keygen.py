"""`driftloop models keygen`: a key pair a user can make, where each half goes, and no key material in any output."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from driftloop.cli import main
from driftloop.signing import (
    AUDIT_DOMAIN,
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    SIGNED,
    VERIFY_KEY_FILE_ENV,
    SigningKey,
    Trust,
    key_id,
    load_public_keys,
)


def _pem_bodies(*paths: Path) -> list[str]:
    """The base64 lines of each PEM file: text that belongs in the files and nowhere else."""
    return [line for path in paths for line in path.read_text().splitlines() if line and not line.startswith("-----")]


@pytest.mark.parametrize("as_json", [False, True])
def test_keygen_writes_a_key_pair_that_signs_and_verifies_and_prints_only_its_id(tmp_path: Path, capsys,
                                                                                 as_json: bool) -> None:
    out = tmp_path / "keys"
    assert main(["models", "keygen", "--out", str(out), *(["--json"] if as_json else [])]) == 0
    printed = capsys.readouterr()
    private, public = out / PRIVATE_KEY_FILE, out / PUBLIC_KEY_FILE
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = SigningKey.from_pem(private.read_bytes(), "test")
    [public_key] = load_public_keys(public.read_bytes(), "test")
    assert key_id(public_key) == key.key_id
    # The pair works as the registry uses it: what the private half signs, a reader holding the public half accepts.
    trust = Trust.from_env({VERIFY_KEY_FILE_ENV: str(public)})
    check = trust.check(AUDIT_DOMAIN, b"{}", key.sign(AUDIT_DOMAIN, b"{}"), "entry")
    assert (check.status, check.key_id, check.anchored) == (SIGNED, key.key_id, True)

    if as_json:
        assert json.loads(printed.out) == {"key_id": key.key_id, "private_key": str(private), "public_key": str(public)}
    else:  # the id, where each file goes, and the variables that point at them
        assert printed.out.splitlines()[0] == f"key id {key.key_id}"
        for expected in (str(private), str(public), "driftloop-signing", "driftloop-verify-key",
                         f"DRIFTLOOP_SIGNING_KEY_FILE={private}", f"DRIFTLOOP_VERIFY_KEY_FILE={public}",
                         f"DRIFTLOOP_TRUSTED_KEY_IDS={key.key_id}"):
            assert expected in printed.out
    for body in _pem_bodies(private, public):
        assert body not in printed.out + printed.err


@pytest.mark.parametrize("existing", [PRIVATE_KEY_FILE, PUBLIC_KEY_FILE])
def test_keygen_never_overwrites_a_key_and_leaves_no_half_pair(tmp_path: Path, capsys, existing: str) -> None:
    (tmp_path / existing).write_text("an older key\n")
    assert main(["models", "keygen", "--out", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("driftloop: error: ") and err.count("\n") == 1
    assert f"{tmp_path / existing} already exists" in err
    assert [p.name for p in tmp_path.iterdir()] == [existing]
    assert (tmp_path / existing).read_text() == "an older key\n"


def test_keygen_into_something_that_is_not_a_directory_is_one_line(tmp_path: Path, capsys) -> None:
    target = tmp_path / "a-file"
    target.write_text("")
    assert main(["models", "keygen", "--out", str(target)]) != 0
    err = capsys.readouterr().err
    assert err == f"driftloop: error: {target} is not a directory\n"
