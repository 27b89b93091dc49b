"""Keys and trust: where the signing key comes from, what a reader accepts, and that no key material leaks."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from driftloop.errors import ConfigError, IntegrityError
from driftloop.registry import LocalRegistry
from driftloop.signing import (
    AUDIT_DOMAIN,
    MANIFEST_DOMAIN,
    SIGNED,
    UNSIGNED,
    SigningKey,
    Trust,
    load_signing_key,
)

PAYLOAD = b'{"files":{"model.joblib":"abc"}}'


def _secret_line(key: SigningKey) -> str:
    """The base64 body of the private key's PEM: the text that must never appear anywhere else."""
    return key.private_pem().decode().splitlines()[1]


def test_a_local_writer_creates_its_key_once_with_mode_0600_and_says_so(tmp_path: Path, capsys) -> None:
    env = {"HOME": str(tmp_path)}
    assert load_signing_key(env, create=False) is None  # readers never create one
    key = load_signing_key(env, create=True)
    path = tmp_path / ".config" / "driftloop" / "signing-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_signing_key(env, create=True).key_id == key.key_id
    err = capsys.readouterr().err
    assert err.count("created signing key") == 1 and str(path) in err and key.key_id in err
    assert _secret_line(key) not in err


def test_writers_creating_the_key_at_once_end_with_the_same_key(tmp_path: Path) -> None:
    env = {"DRIFTLOOP_SIGNING_KEY_FILE": str(tmp_path / "key")}
    ids: list[str] = []
    threads = [threading.Thread(target=lambda: ids.append(load_signing_key(env, create=True).key_id))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["key"]  # no temporary file left behind


def test_a_named_key_file_that_is_missing_is_one_clear_line_for_a_writer_that_cannot_create(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"signing key file .*missing-key \(DRIFTLOOP_SIGNING_KEY_FILE\) does not"):
        load_signing_key({"DRIFTLOOP_SIGNING_KEY_FILE": str(tmp_path / "missing-key")}, create=False)


def test_a_key_given_as_pem_in_the_environment_signs(tmp_path: Path) -> None:
    key = SigningKey.generate()
    loaded = load_signing_key({"DRIFTLOOP_SIGNING_KEY": key.private_pem().decode(), "HOME": str(tmp_path)})
    assert loaded.key_id == key.key_id
    assert not (tmp_path / ".config").exists()


def test_key_material_never_appears_in_reprs_or_errors(tmp_path: Path) -> None:
    key = SigningKey.generate()
    secret = _secret_line(key)
    damaged = key.private_pem().decode().replace("PRIVATE KEY-----\n", "PRIVATE KEY-----\nxx", 1)
    with pytest.raises(ConfigError) as caught:
        load_signing_key({"DRIFTLOOP_SIGNING_KEY": damaged})
    assert str(caught.value) == "DRIFTLOOP_SIGNING_KEY is not an unencrypted Ed25519 private key in PEM"
    registry = LocalRegistry(tmp_path / "registry", signing_key=key)
    trust = Trust([key.public_key])
    for text in (repr(key), str(key), repr(registry), repr(trust), repr(registry.trust)):
        assert secret not in text and "PRIVATE" not in text


def test_only_the_holder_of_the_private_key_can_sign_what_a_reader_accepts() -> None:
    writer, impostor = SigningKey.generate(), SigningKey.generate()
    reader = Trust([writer.public_key])  # holds the public key only
    signature = writer.sign(MANIFEST_DOMAIN, PAYLOAD)
    assert reader.check(MANIFEST_DOMAIN, PAYLOAD, signature, "m").status == SIGNED
    with pytest.raises(IntegrityError, match="signature does not match"):
        reader.check(MANIFEST_DOMAIN, PAYLOAD.replace(b"abc", b"abd"), signature, "m")
    with pytest.raises(IntegrityError, match="signature does not match"):  # made for another kind of object
        reader.check(AUDIT_DOMAIN, PAYLOAD, signature, "m")
    with pytest.raises(IntegrityError, match=f"signed by key {impostor.key_id}, which this reader does not trust"):
        reader.check(MANIFEST_DOMAIN, PAYLOAD, impostor.sign(MANIFEST_DOMAIN, PAYLOAD), "m")
    # Claiming the writer's id with the impostor's signature fails the writer's public key.
    claimed = f"ed25519:{writer.key_id}:" + impostor.sign(MANIFEST_DOMAIN, PAYLOAD).rsplit(":", 1)[1]
    with pytest.raises(IntegrityError, match="signature does not match"):
        reader.check(MANIFEST_DOMAIN, PAYLOAD, claimed, "m")


def test_a_published_key_counts_only_when_pinned_or_when_the_reader_has_no_anchor() -> None:
    writer, impostor = SigningKey.generate(), SigningKey.generate()
    published = {writer.key_id: writer.public_pem(), impostor.key_id: impostor.public_pem()}
    signed = writer.sign(MANIFEST_DOMAIN, PAYLOAD)

    pinned = Trust(pinned_ids=frozenset({writer.key_id})).with_published(published.get)
    check = pinned.check(MANIFEST_DOMAIN, PAYLOAD, signed, "m")
    assert (check.status, check.key_id, check.anchored) == (SIGNED, writer.key_id, True)
    with pytest.raises(IntegrityError, match="does not trust"):  # published, but not pinned
        pinned.check(MANIFEST_DOMAIN, PAYLOAD, impostor.sign(MANIFEST_DOMAIN, PAYLOAD), "m")

    swapped = Trust(pinned_ids=frozenset({writer.key_id})).with_published(
        {writer.key_id: impostor.public_pem()}.get)  # someone replaced the published copy
    with pytest.raises(IntegrityError, match="does not match its id"):
        swapped.check(MANIFEST_DOMAIN, PAYLOAD, signed, "m")

    unanchored = Trust().with_published(published.get)
    assert not unanchored.anchored
    assert unanchored.check(MANIFEST_DOMAIN, PAYLOAD, signed, "m").anchored is False
    strict = Trust(require=True).with_published(published.get)
    with pytest.raises(IntegrityError, match="trusts no key of its own"):
        strict.check(MANIFEST_DOMAIN, PAYLOAD, signed, "m")


def test_unsigned_objects_pass_only_without_the_policy() -> None:
    assert Trust().check(MANIFEST_DOMAIN, PAYLOAD, None, "m").status == UNSIGNED
    with pytest.raises(IntegrityError, match="m is unsigned, and this reader requires signatures"):
        Trust(require=True).check(MANIFEST_DOMAIN, PAYLOAD, None, "m")
    assert Trust(require=True).check(MANIFEST_DOMAIN, PAYLOAD, None, "m", required=False).status == UNSIGNED


@pytest.mark.parametrize("signature", ["rsa:abc:AAAA", "ed25519:../../etc/passwd:AAAA", "ed25519:" + "a" * 32 + ":!!",
                                       "garbage"])
def test_a_malformed_signature_is_refused_and_names_no_path(signature: str) -> None:
    looked_up: list[str] = []
    trust = Trust().with_published(lambda key_id: looked_up.append(key_id))
    with pytest.raises(IntegrityError, match="malformed signature"):
        trust.check(MANIFEST_DOMAIN, PAYLOAD, signature, "m")
    assert looked_up == []


def test_the_environment_sets_anchors_pins_and_policy(tmp_path: Path) -> None:
    writer, other = SigningKey.generate(), SigningKey.generate()
    key_file = tmp_path / "verify.pem"
    key_file.write_bytes(other.public_pem())
    trust = Trust.from_env({"DRIFTLOOP_VERIFY_KEY": writer.public_pem().decode(),
                            "DRIFTLOOP_VERIFY_KEY_FILE": str(key_file), "DRIFTLOOP_TRUSTED_KEY_IDS": " AB12 ,cd34",
                            "DRIFTLOOP_REQUIRE_SIGNATURES": "1", "HOME": str(tmp_path)})
    assert trust.require and trust.pinned_ids == {"ab12", "cd34"}
    for key in (writer, other):
        assert trust.check(MANIFEST_DOMAIN, PAYLOAD, key.sign(MANIFEST_DOMAIN, PAYLOAD), "m").anchored
    with pytest.raises(ConfigError, match="DRIFTLOOP_VERIFY_KEY does not hold Ed25519 public keys"):
        Trust.from_env({"DRIFTLOOP_VERIFY_KEY": writer.private_pem().decode().replace("PRIVATE", "PUBLIC")})
