"""dvault purge --expired, dvault retain, dvault subject export/erase and the retention lines
of dvault status: counts and no names on screen, private files, clean one-line errors."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest
from vault.identity import Identity

import vault
from conftest import run_dvault
from vault import local as L
from vault import pins as PN

LEAD_PW, STAFF_PW, RECOVERY = "lead pass words", "staff pass words", "recovery pass words"
NAMES = ("Olga Expired", "olga@example.org", "Rita Recent", "rita@example.org")


@pytest.fixture
def setup(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    lead, staff = Identity.generate(), Identity.generate()
    lead.save(tmp_path / "lead.dvid", LEAD_PW)
    staff.save(tmp_path / "staff.dvid", STAFF_PW)
    (tmp_path / "lead.pass").write_text(LEAD_PW + "\n")
    (tmp_path / "staff.pass").write_text(STAFF_PW + "\n")
    with vault.create(url, RECOVERY, lead=lead) as v:  # the default schema: 90 days after departure
        v.add_user(staff.public, "sam", "staff")
        old = v.add({"legal_name": "Olga Expired", "email": "olga@example.org", "departure": dt.date(2020, 1, 1)})
        new = v.add({"legal_name": "Rita Recent", "email": "rita@example.org", "departure": dt.date(2099, 1, 1)})
        pns = {"old": v._pseudonyms.issue(old, "badge"), "new": v._pseudonyms.issue(new, "badge")}
        v.pin(tmp_path / "lead.dvid.vaults")
        PN.add(tmp_path / "staff.dvid.vaults", v.pin_line, url)
    for k in [k for k in os.environ if k.startswith("DVAULT_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("DVAULT_URL", url)
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.chdir(tmp_path)
    return tmp_path, url, pns


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    return run_dvault(monkeypatch, capsys, *args)


LEAD = ("--identity", "lead.dvid", "--passphrase-file", "lead.pass", "--reason", "lead work")
STAFF = ("--identity", "staff.dvid", "--passphrase-file", "staff.pass", "--reason", "desk work")


def _count(url: str) -> int:
    with vault.open(url, RECOVERY) as v:
        return v.count()


def _clean(code: int, err: str, want: int) -> None:
    assert code == want, err
    assert err.count("dvault: error:") == 1 and "Traceback" not in err


def test_purge_dry_run_then_yes(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    _, url, pns = setup
    code, out, err = run(monkeypatch, capsys, "purge", "--expired", *LEAD)
    assert code == 0, err
    assert "1 of 2 record(s) past retention" in out and "dry run" in out and "1 by the rule's date field" in out
    assert _count(url) == 2
    code, out, _ = run(monkeypatch, capsys, "purge", "--expired", "--as-of", "2099-06-01", "--json", *LEAD)
    assert json.loads(out)["count"] == 2 and _count(url) == 2
    code, out, err = run(monkeypatch, capsys, "purge", "--expired", "--yes", *LEAD)
    assert code == 0 and "1 of 2 record(s) past retention" in out and "shredded" in out
    for blob in (out, err):
        for name in NAMES + tuple(pns.values()):
            assert name not in blob
    assert _count(url) == 1
    code, _, err = run(monkeypatch, capsys, "show", pns["old"], *LEAD)
    _clean(code, err, 2)


@pytest.mark.parametrize("args, code, text", [
    (("purge",), 1, "dvault purge --expired"),
    (("purge", "--expired", "--yes", "--as-of", "2030-01-01"), 1, "--as-of is for a dry run"),
    (("purge", "--expired", "--as-of", "01/01/2030"), 1, "--as-of must be a date"),
    (("retain", "BA-0000"), 1, "give --until"),
    (("retain", "PN", "--until", "2030-02-30"), 1, "--until must be a date"),
])
def test_usage_errors_are_one_line(setup, monkeypatch, capsys, args, code, text) -> None:  # type: ignore[no-untyped-def]
    _, url, pns = setup
    args = tuple(pns["new"] if a == "PN" else a for a in args)
    got, _, err = run(monkeypatch, capsys, *args, *LEAD)
    _clean(got, err, code)
    assert text in err and _count(url) == 2


def test_staff_cannot_purge_retain_or_see_subjects(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    tmp, url, pns = setup
    for args in (("purge", "--expired", "--yes"), ("retain", pns["old"], "--until", "2030-01-01"),
                 ("subject", "export", pns["old"], "--out", "x"), ("subject", "erase", pns["old"], "--yes")):
        code, out, err = run(monkeypatch, capsys, *args, *STAFF)
        _clean(code, err, 3)
        assert "security lead" in err and out == ""
    assert _count(url) == 2 and not (tmp / "x.json").exists()


def test_retain_keeps_a_record_through_a_purge(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    _, url, pns = setup
    code, _, err = run(monkeypatch, capsys, "retain", pns["old"], "--until", "2099-01-01", *LEAD)
    assert code == 0 and "kept until 2099-01-01" in err
    code, out, _ = run(monkeypatch, capsys, "purge", "--expired", "--yes", *LEAD)
    assert code == 0 and out.startswith("0 of 2") and _count(url) == 2
    code, _, err = run(monkeypatch, capsys, "retain", pns["old"], "--clear", *LEAD)
    assert code == 0 and "removed" in err
    code, out, _ = run(monkeypatch, capsys, "purge", "--expired", "--yes", *LEAD)
    assert out.startswith("1 of 2") and _count(url) == 1


def test_status_warns_about_retention(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    _, url, pns = setup
    code, out, err = run(monkeypatch, capsys, "status", "--identity", "lead.dvid", "--passphrase-file", "lead.pass")
    assert code == 0 and "dvault: warning: 1 record(s) past retention" in err
    assert not any(n in out + err for n in NAMES)
    code, out, err = run(monkeypatch, capsys, "status", "--identity", "staff.dvid", "--passphrase-file", "staff.pass")
    assert code == 0 and "past retention" not in err


def test_subject_export_writes_private_listed_files(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    tmp, url, pns = setup
    code, out, err = run(monkeypatch, capsys, "subject", "export", pns["new"], "--out", "rita", *LEAD)
    assert code == 0, err
    data = json.loads((tmp / "rita.json").read_text())
    assert data["fields"]["legal_name"] == "Rita Recent" and data["pseudonyms"]["badge"] == pns["new"]
    text = (tmp / "rita.txt").read_text()
    assert "Rita Recent" in text and "Olga" not in text and "olga" not in (tmp / "rita.json").read_text()
    assert "Rita" not in out + err
    for name in ("rita.json", "rita.txt"):
        assert stat.S_IMODE((tmp / name).stat().st_mode) == 0o600
    listed = {p.resolve() for _, p in L.written()}
    assert {(tmp / "rita.json").resolve(), (tmp / "rita.txt").resolve()} <= listed
    before = (tmp / "rita.json").read_bytes()
    code, _, err = run(monkeypatch, capsys, "subject", "export", pns["new"], "--out", "rita", *LEAD)
    _clean(code, err, 1)
    assert "refusing to overwrite" in err and (tmp / "rita.json").read_bytes() == before
    with vault.open(url, RECOVERY) as v:
        assert len(v.audit_entries(action="subject_export")) == 1  # the refused one read nothing


def test_subject_export_sealed(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from vault import exporter as X
    tmp, _, pns = setup
    rita = Identity.generate()
    code, _, err = run(monkeypatch, capsys, "subject", "export", pns["new"], "--out", "rita.sealed",
                       "--to", rita.public.to_line(), "--yes", *LEAD)
    assert code == 0, err
    blob = (tmp / "rita.sealed").read_bytes()
    assert b"Rita" not in blob and not (tmp / "rita.sealed.json").exists()
    assert json.loads(X.open_sealed(blob, rita).data)["fields"]["email"] == "rita@example.org"


def test_subject_erase(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    _, url, pns = setup
    from vault import pseudonym as P
    code, _, err = run(monkeypatch, capsys, "subject", "erase", P.format(12345, "BA"), "--yes", *LEAD)
    _clean(code, err, 2)  # well formed, names no one
    code, _, err = run(monkeypatch, capsys, "subject", "erase", "BA-12", "--yes", *LEAD)
    _clean(code, err, 1)
    assert "pseudonym" in err and _count(url) == 2
    code, _, err = run(monkeypatch, capsys, "subject", "erase", pns["new"], "--yes", *LEAD)
    assert code == 0 and "erased" in err and _count(url) == 1
    code, _, err = run(monkeypatch, capsys, "subject", "erase", pns["new"], "--yes", *LEAD)
    _clean(code, err, 2)
    with vault.open(url, RECOVERY) as v:
        assert [e["action"] for e in v.audit_entries() if e["action"] in ("subject_erase", "shred")] == [
            "subject_erase", "shred"]
