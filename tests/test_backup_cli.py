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
