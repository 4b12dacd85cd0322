"""Passphrase files are judged as ssh's StrictModes judges a key file: one another local
account can write (so choose the passphrase dvault sets from it) is refused before it is
read; one another account can read is named in a warning (cli/secrets_input.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

import vault
from conftest import run_dvault

PASS = "recovery pass phrase"


def _verify(tmp_path: Path, pw: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
            ) -> tuple[int, str]:
    path = tmp_path / "v.vault"
    if not path.exists():
        vault.create(path, PASS).close()
    code, _, err = run_dvault(monkeypatch, capsys, "audit", "verify", "--vault", str(path), "--passphrase-file", str(pw))
    return code, err


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX modes")
def test_a_passphrase_file_others_can_write_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    pw = tmp_path / "pw"
    pw.write_text(PASS + "\n")
    os.chmod(pw, 0o666)
    code, err = _verify(tmp_path, pw, monkeypatch, capsys)
    assert code != 0 and "refusing passphrase file" in err and "other users can write it" in err
    assert PASS not in err
    os.chmod(pw, 0o600)
    code, err = _verify(tmp_path, pw, monkeypatch, capsys)
    assert code == 0 and "warning" not in err


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX modes")
def test_a_passphrase_file_others_can_read_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    open_dir = Path(tempfile.mkdtemp(prefix="dvault-test-", dir="/tmp"))  # reachable from the root down
    try:
        os.chmod(open_dir, 0o755)
        pw = open_dir / "pw"
        pw.write_text(PASS + "\n")
        os.chmod(pw, 0o644)
        code, err = _verify(tmp_path, pw, monkeypatch, capsys)
    finally:
        shutil.rmtree(open_dir)
    assert code == 0 and f"warning: passphrase file {pw} can be read by others (mode 0644)" in err
