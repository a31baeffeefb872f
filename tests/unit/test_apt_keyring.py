"""The apt_keyring state, loaded by Salt's own loader, against OpenPGP keys generated here with
the real gpg (no network): the fingerprint check, the refusals that name the fingerprints, and
what ends up on disk."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not shutil.which("gpg"), reason="no gpg on this host")


def _generate(home: Path, uid: str) -> tuple[str, bytes]:
    """A new signing key: (its fingerprint, the armored public key)."""
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--no-tty"]
    subprocess.run(
        [*gpg, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    listing = subprocess.run(
        [*gpg, "--with-colons", "--list-keys", uid], check=True, capture_output=True, text=True
    ).stdout
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    armored = subprocess.run(
        [*gpg, "--armor", "--export", uid], check=True, capture_output=True, timeout=60
    ).stdout
    return fpr, armored


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("gpg")
    ours = _generate(base / "ours", "Mesos packages <mesos@example.test>")
    theirs = _generate(base / "theirs", "Someone else <else@example.test>")
    for name, (_, armored) in {"ours": ours, "theirs": theirs}.items():
        (base / f"{name}.asc").write_bytes(armored)
    (base / "not-a-key.asc").write_text("<html>404</html>\n")
    return {"dir": base, "ours": ours[0], "theirs": theirs[0]}


@pytest.fixture
def states(tmp_path):
    """Salt's state functions with this repository's _states, as a minion loads them."""
    import salt.config
    import salt.loader

    def make(test: bool = False):
        opts = salt.config.minion_config(None)
        opts.update(
            file_client="local",
            cachedir=str(tmp_path / "cache"),
            extension_modules=str(tmp_path / "cache" / "extmods"),
            states_dirs=[str(REPO / "_states")],
            test=test,
        )
        utils = salt.loader.utils(opts)
        funcs = salt.loader.minion_mods(opts, utils=utils)
        return salt.loader.states(opts, funcs, utils, salt.loader.serializers(opts))

    return make


def test_the_expected_key_is_written_dearmored_and_then_left_alone(states, keys, tmp_path):
    keyring = tmp_path / "keyrings" / "mesos.gpg"
    source = str(keys["dir"] / "ours.asc")
    # Test mode predicts and writes nothing.
    dry = states(test=True)["apt_keyring.present"](str(keyring), source, [keys["ours"]])
    assert dry["result"] is None and dry["changes"] == {"old": [], "new": [keys["ours"]]}
    assert not keyring.exists()

    present = states()["apt_keyring.present"]
    # Fingerprints as people write them: spaced, lower case.
    spaced = " ".join(keys["ours"][i : i + 4] for i in range(0, 40, 4)).lower()
    done = present(str(keyring), source, [spaced])
    assert done["result"] is True and done["changes"]["new"] == [keys["ours"]], done
    data = keyring.read_bytes()
    assert not data.startswith(b"-----BEGIN")  # binary, as signed-by reads a .gpg file
    assert oct(os.stat(keyring).st_mode & 0o777) == "0o644"
    shown = subprocess.run(
        ["gpg", "--show-keys", "--with-colons"], input=data, capture_output=True, check=True
    ).stdout.decode()
    assert f"fpr:::::::::{keys['ours']}:" in shown

    again = present(str(keyring), source, [keys["ours"]])
    assert again["result"] is True and again["changes"] == {}, again


def test_a_key_with_other_fingerprints_is_refused_naming_both(states, keys, tmp_path):
    keyring = tmp_path / "mesos.gpg"
    keyring.write_bytes(b"the keyring before")
    present = states()["apt_keyring.present"]
    ret = present(str(keyring), str(keys["dir"] / "theirs.asc"), [keys["ours"]])
    assert ret["result"] is False and ret["changes"] == {}
    assert f"its keys are {keys['theirs']}, expected {keys['ours']}" in ret["comment"]
    assert keyring.read_bytes() == b"the keyring before"
    # Also in test mode: the check runs before any prediction.
    dry = states(test=True)["apt_keyring.present"]
    assert dry(str(keyring), str(keys["dir"] / "theirs.asc"), [keys["ours"]])["result"] is False


@pytest.mark.parametrize(
    "source, fingerprints, message",
    [
        ("http://packages.example.internal/k.gpg", None, "fetch it over https"),
        ("not-a-key.asc", None, "no OpenPGP key in it"),
        ("ours.asc", ["1234"], "each must be 40 (or 64) hex digits"),
        ("ours.asc", [], "each must be 40 (or 64) hex digits"),
    ],
)
def test_bad_input_is_named(states, keys, tmp_path, source, fingerprints, message):
    if not source.startswith("http"):
        source = str(keys["dir"] / source)
    keyring = tmp_path / "k.gpg"
    ret = states()["apt_keyring.present"](
        str(keyring), source, [keys["ours"]] if fingerprints is None else fingerprints
    )
    assert ret["result"] is False and message in ret["comment"], ret
    assert not keyring.exists()


def test_without_gpg_test_mode_predicts_and_a_real_run_refuses(states, keys, tmp_path, monkeypatch):
    """On a bare node gpg comes from an earlier state of the same run: test mode predicts."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    keyring = tmp_path / "k.gpg"
    source = str(keys["dir"] / "ours.asc")
    dry = states(test=True)["apt_keyring.present"](str(keyring), source, [keys["ours"]])
    assert dry["result"] is None and "gpg is not installed yet" in dry["comment"], dry
    real = states()["apt_keyring.present"](str(keyring), source, [keys["ours"]])
    assert real["result"] is False and "gpg is not installed" in real["comment"], real
    assert not keyring.exists()
