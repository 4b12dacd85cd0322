"""Local files (vault._files): folders the tool creates are 0700 whatever the umask, and the
files a client trusts (identity, known vaults, config) are refused when another account
owns or can write them or a folder above them, as ssh's StrictModes does."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

import vault
from conftest import PASSPHRASE
from vault import _files as FS
from vault import pins as PN
from vault.identity import Identity
from vault_cli.main import cli


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def umask_000():  # type: ignore[no-untyped-def]
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_keygen_under_umask_000_on_a_fresh_home(tmp_path: Path, monkeypatch, umask_000) -> None:  # type: ignore[no-untyped-def]
    """~/.local and ~/.local/share, made by keygen on a fresh HOME, were 0777 under umask 000
    (only the last folder got 0700): another account could swap the data folder."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    os.chmod(home, 0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    for k in [k for k in os.environ if k.startswith("DVAULT_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
    r = CliRunner().invoke(cli, ["keygen"], input="a long passphrase\na long passphrase\n")
    assert r.exit_code == 0, r.output
    data = home / ".local" / "share" / "defenders-vault"
    assert [_mode(p) for p in (home / ".local", home / ".local" / "share", data)] == [0o700] * 3
    assert _mode(data / "identity.dvid") == 0o600
    PN.add(home / "deep" / "er" / "sam.vaults", f"{'ab' * 16} {'cd' * 16} {'ef' * 16}", str(tmp_path / "v.vault"))
    assert [_mode(p) for p in (home / "deep", home / "deep" / "er")] == [0o700] * 2
    assert _mode(home / "deep" / "er" / "sam.vaults") == 0o600


def test_identity_save_makes_every_missing_folder_private(tmp_path: Path, umask_000) -> None:  # type: ignore[no-untyped-def]
    Identity.generate().save(tmp_path / "a" / "b" / "c" / "me.dvid", "x" * 12)
    assert [_mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3
    assert _mode(tmp_path / "a/b/c/me.dvid") == 0o600


@pytest.mark.parametrize("what", ["identity", "pins", "config"])
@pytest.mark.parametrize("where", ["file_group", "file_world", "folder_world", "folder_group"])
def test_a_file_others_can_write_is_refused(tmp_path: Path, monkeypatch, capsys, what: str,  # type: ignore[no-untyped-def]
                                            where: str) -> None:
    """One line naming the path and the fix; nothing is read from it."""
    folder = tmp_path / "mine"
    folder.mkdir(mode=0o700)
    me = Identity.generate()
    me.save(folder / "me.dvid", "x" * 12)
    target = {"identity": folder / "me.dvid", "pins": folder / "me.dvid.vaults", "config": folder / "config.toml"}[what]
    if what == "pins":
        PN.add(target, f"{'ab' * 16} {'cd' * 16} {'ef' * 16}", str(tmp_path / "v.vault"))
    if what == "config":
        target.write_text('vault = "v.vault"\n')
        os.chmod(target, 0o600)
    monkeypatch.setattr(FS, "_own_group", lambda gid, uid: False)  # not the user's private group
    bits, path = {"file_group": (0o020, target), "file_world": (0o002, target),
                  "folder_world": (0o002, folder), "folder_group": (0o020, folder)}[where]
    os.chmod(path, stat.S_IMODE(path.stat().st_mode) | bits)
    fix = f"chmod {'g' if bits == 0o020 else 'o'}-w {path}"
    if what == "identity":
        with pytest.raises(vault.UnsafeFile, match=f"fix: {fix}"):
            Identity.load(target, "x" * 12)
    elif what == "pins":
        with pytest.raises(vault.UnsafeFile, match=f"fix: {fix}"):
            PN.known(target)
    else:
        from test_cli_errors import run
        monkeypatch.setenv("DVAULT_CONFIG", str(target))
        code, out, err = run(monkeypatch, capsys, "status")
        assert code == 1 and err.startswith("dvault: error: refusing") and f"fix: {fix}" in err, err
        assert len(err.strip().splitlines()) == 1


def test_a_file_of_another_user_is_refused(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "mine"
    folder.mkdir(mode=0o700)
    Identity.generate().save(folder / "me.dvid", "x" * 12)
    if os.getuid() == 0:
        os.chown(folder / "me.dvid", 4242, -1)
    else:  # as another user sees it: the file is not theirs
        uid = os.getuid()
        monkeypatch.setattr(os, "getuid", lambda: uid + 1)
    with pytest.raises(vault.UnsafeFile, match="belongs to another user"):
        Identity.load(folder / "me.dvid", "x" * 12)


def test_what_ssh_accepts_is_accepted(tmp_path: Path) -> None:
    """A root-owned sticky world-writable folder above (as /tmp), the user's own private group."""
    assert stat.S_IMODE(os.stat("/tmp").st_mode) & stat.S_ISVTX  # the test runs under it
    FS.check_private(tmp_path / "me.dvid", "identity file")
    import grp
    import pwd
    me = pwd.getpwuid(os.getuid())
    if grp.getgrgid(me.pw_gid).gr_name == me.pw_name:
        assert FS._own_group(me.pw_gid, os.getuid())


def test_a_vault_opens_with_its_pins_in_a_private_folder(tmp_path: Path) -> None:
    lead = Identity.generate()
    with vault.create(tmp_path / "v.vault", PASSPHRASE, lead=lead) as v:
        line = v.pin_line
    PN.add(tmp_path / "p" / "lead.vaults", line, str(tmp_path / "v.vault"))
    with vault.open(tmp_path / "v.vault", identity=lead, pins=tmp_path / "p" / "lead.vaults"):
        pass
    os.chmod(tmp_path / "p", 0o777)
    with pytest.raises(vault.UnsafeFile):
        vault.open(tmp_path / "v.vault", identity=lead, pins=tmp_path / "p" / "lead.vaults")
