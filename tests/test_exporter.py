"""Exports: pseudonymous rows, role limits, 0600 files, sealed exports, CSV injection."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import vault
from conftest import PASSPHRASE
from rawdb import audit_actions
from vault import exporter as X
from vault.identity import Identity


def test_export_rows_and_audit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.vault'}"
    with vault.create(url, PASSPHRASE) as v:
        ids = v.import_rows([{"badge_name": "Amira", "email": "a@example.org"}, {"badge_name": "Kofi"}])
        rows = v.export(["badge_name"], purpose="badge")
        assert sorted(r["badge_name"] for r in rows) == ["Amira", "Kofi"]
        assert all(set(r) == {"pseudonym", "badge_name"} and r["pseudonym"].startswith("BA-") for r in rows)
        assert {v.resolve(r["pseudonym"]).id for r in rows} == set(ids)
        plain = v.export(["email"])
        assert plain and "pseudonym" not in plain[0]
        with pytest.raises(vault.ValidationError):
            v.export([])
    acts = audit_actions(url)
    assert "import" in acts and acts.count("export") == 2


def test_export_respects_roles(tmp_path: Path) -> None:
    lead, tool = Identity.generate(), Identity.generate()
    url = f"sqlite:///{tmp_path / 'r.vault'}"
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(tool.public, "printer", "tool")
        v.add({"badge_name": "Amira", "legal_name": "Amira Haddad"})
    with vault.open(url, identity=tool) as v:
        assert v.export(["badge_name"], purpose="badge")[0]["badge_name"] == "Amira"
        with pytest.raises(vault.AccessDenied):
            v.export(["legal_name"])
        with pytest.raises(vault.AccessDenied):
            v.export(["badge_name"], purpose="travel")


def test_private_files_and_sealing(tmp_path: Path) -> None:
    p = X.write_private(tmp_path / "out.csv", b"x")
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    with pytest.raises(vault.VaultExists):
        X.write_private(p, b"y")
    assert p.read_bytes() == b"x"
    alice, eve = Identity.generate(), Identity.generate()
    blob = X.seal(b"name,phone\nAmira,+961\n", alice.public)
    assert b"Amira" not in blob
    assert X.open_sealed(blob, alice) == b"name,phone\nAmira,+961\n"
    with pytest.raises(vault.IntegrityError):
        X.open_sealed(blob, eve)


def test_csv_injection_defused() -> None:
    text = X.to_csv([{"a": "=HYPERLINK(\"x\")", "b": "-3", "c": "+44 20"}], ["a", "b", "c"])
    assert "'=HYPERLINK" in text and ',"-3",' in text and "'+44 20" in text
    text = X.to_csv([{"a": "\t=1+2", "b": "\r=1+2"}], ["a", "b"])
    assert text == '"a","b"\r\n"\'\t=1+2","\'\r=1+2"\r\n'


@pytest.mark.parametrize("sep", [";", ",", "\t"])
def test_no_cell_starts_a_formula_whatever_the_spreadsheet_splits_on(sep: str) -> None:
    """Excel and LibreOffice in many locales split CSV on ";": a value holding ";=" must not
    open as a second cell that is a formula. Every cell is quoted, so a reader splitting the
    same bytes on any of these separators never starts a cell inside a value."""
    import csv
    import io
    value = "Ana;=cmd|' /C calc'!A0\t=1+1"
    text = X.to_csv([{"a": value, "b": "x"}], ["a", "b"])
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=sep))
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row), rows
    if sep == ",":
        assert rows[1] == [value, "x"]


@pytest.mark.parametrize("value", ["line\rbreak", "line\nbreak", "a\r\nb", "x\r", 'quote " and, comma'])
def test_csv_values_with_line_breaks_stay_one_row(value: str) -> None:
    """Whatever a value holds, a CSV reader (or a spreadsheet) gets the same rows back."""
    import csv
    import io
    text = X.to_csv([{"a": value, "b": "next"}, {"a": "x", "b": "y"}], ["a", "b"])
    assert list(csv.reader(io.StringIO(text, newline=""))) == [["a", "b"], [value, "next"], ["x", "y"]]


def test_replace_private_is_atomic(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An identity file re-encrypted under a new passphrase replaces the old one whole: 0600,
    no temporary file left, and the old file intact if the rename fails."""
    import os
    import stat
    from vault import _files
    p = tmp_path / "id.dvid"
    p.write_bytes(b"old")
    _files.replace_private(p, b"new")
    assert p.read_bytes() == b"new" and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert [f.name for f in tmp_path.iterdir()] == ["id.dvid"]

    def broken(src, dst):  # type: ignore[no-untyped-def]
        raise OSError("disk gone")
    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(vault.VaultError, match=r"^cannot replace .*id\.dvid") as e:
        _files.replace_private(p, b"newer")
    assert not isinstance(e.value, OSError) and e.value.__cause__ is None
    assert p.read_bytes() == b"new" and [f.name for f in tmp_path.iterdir()] == ["id.dvid"]


def test_write_private_failure_is_one_error_and_no_file(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A full disk while writing an export or identity file: a VaultError (the caller's
    class) naming the file, and no half-written file left behind."""
    from vault import _files
    from vault.identity import IdentityError

    def full(fd):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(_files.os, "fsync", full)
    with pytest.raises(IdentityError, match=r"^cannot write .*out\.dvid: No space left on device$"):
        _files.write_private(tmp_path / "out.dvid", b"secret", error=IdentityError)
    assert list(tmp_path.iterdir()) == []
