"""`dvault backup` / `dvault restore`: one line per error, the vault untouched on refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import vault
from vault_cli.main import cli

PW = "recovery pass phrase"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DVAULT_PASSPHRASE": PW}
    return subprocess.run([sys.executable, "-m", "vault_cli.main", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_backup_restore_cli(tmp_path: Path) -> None:
    path = tmp_path / "a.vault"
    with vault.create(path, PW) as v:
        ids = v.add_many([{"legal_name": "Hidden Name", "email": "h@example.org"}, {"badge_name": "Other"}])
    runner = CliRunner(env={"DVAULT_PASSPHRASE": PW})
    r = runner.invoke(cli, ["backup", str(tmp_path / "b.dvbak"), "--ledger", str(tmp_path / "l.dvledger"),
                            "--vault", str(path), "--recovery"])
    assert r.exit_code == 0, r.output
    assert "backed up 2 records" in r.output and "Hidden" not in r.output
    with vault.open(path, PW) as v:
        v.delete(ids[0])
    r = CliRunner(env={"DVAULT_PASSPHRASE": PW}).invoke(cli, ["restore", str(tmp_path / "b.dvbak"), "--vault",
                                                              str(path), "--recovery", "--yes"])
    assert r.exit_code == 0, r.output
    assert "restored 1 records" in r.output and "shredded again 1" in r.output
    with vault.open(path, PW) as v:
        assert v.ids() == [ids[1]]


def test_restore_of_damaged_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "a.vault"
    with vault.create(path, PW) as v:
        v.add({"legal_name": "Hidden Name"})
        v.backup(tmp_path / "b.dvbak")
    data = (tmp_path / "b.dvbak").read_bytes()
    (tmp_path / "cut.dvbak").write_bytes(data[: len(data) // 2])
    before = path.read_bytes()
    res = _run("restore", str(tmp_path / "cut.dvbak"), "--vault", str(path), "--recovery", "--yes")
    assert res.returncode == 5, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dvault: error: the backup file is corrupt or truncated")
    assert "Traceback" not in res.stderr and path.read_bytes() == before



def test_a_backup_into_a_missing_folder_is_bad_input_not_an_integrity_failure(tmp_path: Path, monkeypatch,
                                                                                capsys) -> None:  # type: ignore[no-untyped-def]
    """`dvault backup missing/x.dvbak` and `--ledger missing/l` exited 5 ("integrity
    failure"): a write error the backup did not map was a BadBackup (from a CLI hunt)."""
    import sqlite3

    from conftest import run_dvault
    path = tmp_path / "a.vault"
    with vault.create(path, PW) as v:
        v.add({"legal_name": "Hidden Name"})

    def log_rows() -> int:
        with sqlite3.connect(path) as db:
            return int(db.execute("SELECT count(*) FROM dv_audit").fetchone()[0])
    entries = log_rows()
    monkeypatch.chdir(tmp_path)
    for args in (("missing/x.dvbak",), ("x.dvbak", "--ledger", "missing/l.dvledger")):
        monkeypatch.setenv("DVAULT_PASSPHRASE", PW)
        code, out, err = run_dvault(monkeypatch, capsys, "backup", *args, "--vault", str(path), "--recovery")
        assert code == 1, err
        assert err.strip() == f"dvault: error: cannot write to {args[-1]}: no such folder", err
        assert not (tmp_path / "missing").exists() and not (tmp_path / "x.dvbak").exists()
    assert log_rows() == entries  # refused before the unlock: nothing read, nothing audited
    # the library, given such a path, says so as a plain error (exit 1), not BadBackup (exit 5)
    with vault.open(path, PW) as v:
        for target, ledger in ((tmp_path / "missing" / "x.dvbak", None),
                               (tmp_path / "y.dvbak", tmp_path / "missing" / "l.dvledger"),
                               (tmp_path / "a.vault" / "z.dvbak", None)):
            try:
                v.backup(target, ledger=ledger)
            except vault.VaultError as e:
                assert type(e) is vault.VaultError and "cannot write" in str(e), repr(e)
            else:
                raise AssertionError("no error")
        assert not (tmp_path / "y.dvbak").exists()
