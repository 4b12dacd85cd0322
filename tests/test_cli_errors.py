"""Every bad input: its documented exit code, one line on stderr, nothing written; and
nothing secret in argv of spawned processes or in stray files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from vault.identity import Identity

import vault
from conftest import run_dvault
from vault import pins as PN

LEAD_PW, STAFF_PW, RECOVERY = "lead pass words", "staff pass words", "recovery pass words"
SECRET_VALUES = ("Amira Haddad", "amira@example.org", "P83526008", "Hospital visit for Amira")


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    lead, staff = Identity.generate(), Identity.generate()
    lead.save(tmp_path / "lead.dvid", LEAD_PW)
    staff.save(tmp_path / "staff.dvid", STAFF_PW)
    (tmp_path / "lead.pass").write_text(LEAD_PW + "\n")
    (tmp_path / "staff.pass").write_text(STAFF_PW + "\n")
    url = str(tmp_path / "v.vault")
    with vault.create(url, RECOVERY, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        rid = v.add({"legal_name": "Amira Haddad", "email": "amira@example.org", "passport_number": "P83526008",
                     "badge_name": "Amira"})
        badge = v._pseudonyms.issue(rid, "badge")
        v.pin(tmp_path / "lead.dvid.vaults")  # as init does, and `dvault pin add` for the staff member: the
        PN.add(tmp_path / "staff.dvid.vaults", v.pin_line, url)  # commands below print no first-open note
    for k in [k for k in os.environ if k.startswith("DVAULT_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("DVAULT_URL", url)
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.chdir(tmp_path)
    return tmp_path, url, badge


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    return run_dvault(monkeypatch, capsys, *args)


def _count(url: str) -> int:
    with vault.open(url, RECOVERY) as v:
        return v.count()


def _audited(url: str, action: str) -> int:
    with vault.open(url, RECOVERY) as v:
        return len(v.audit_entries(action=action))


STAFF = ("--identity", "staff.dvid", "--passphrase-file", "staff.pass", "--reason", "desk work")
LEAD = ("--identity", "lead.dvid", "--passphrase-file", "lead.pass", "--reason", "lead work")
CSV_HEADER = "personal/full_name;personal/badge_name;personal/date_of_birth;contact/email\n"


@pytest.mark.parametrize("case", ["wrong_passphrase", "missing_vault", "unknown_field", "outside_role",
                                  "mistyped_pseudonym", "unknown_pseudonym", "passphrase_not_utf8",
                                  "mapping_not_utf8", "not_a_database", "export_over_a_file", "unquoted_name",
                                  # from a CLI hunt (2026-11-27); each gave a traceback-free but wrong
                                  # "internal error", a changed file or a wrong exit before its fix
                                  "passphrase_env_not_utf8", "reason_not_utf8", "since_days_nan",
                                  "checkpoint_at_zero", "port_not_a_number", "no_input_for_passphrase",
                                  "identity_file_missing", "sqlite_file_not_a_vault", "empty_file",
                                  "export_into_a_missing_folder"])
def test_bad_inputs(setup, monkeypatch, capsys, case: str) -> None:  # type: ignore[no-untyped-def]
    tmp, url, badge = setup
    before = _count(url)
    if case == "wrong_passphrase":
        (tmp / "bad.pass").write_text("not it\n")
        code, out, err = run(monkeypatch, capsys, "list", "--fields", "badge_name", "--identity", "staff.dvid",
                             "--passphrase-file", "bad.pass", "--reason", "x")
        want = 4
    elif case == "missing_vault":
        code, out, err = run(monkeypatch, capsys, "list", "--fields", "badge_name", "--vault", str(tmp / "nope.vault"),
                             *STAFF)
        want = 2
    elif case == "unknown_field":
        code, out, err = run(monkeypatch, capsys, "list", "--fields", "badge_name,shoe_size", *STAFF)
        want = 1
    elif case == "outside_role":
        code, out, err = run(monkeypatch, capsys, "show", badge, "--fields", "legal_name", *STAFF)
        want = 3
    elif case == "mistyped_pseudonym":
        typo = badge[:4] + ("7" if badge[4] != "7" else "8") + badge[5:]
        code, out, err = run(monkeypatch, capsys, "show", typo, *STAFF)
        want = 1
    elif case == "unknown_pseudonym":  # a well-formed pseudonym (valid check character) nobody holds
        code, out, err = run(monkeypatch, capsys, "show", "BA-0000-0000-000", *STAFF)
        want = 2
    elif case == "passphrase_not_utf8":  # the decoder's message would quote the passphrase's bytes
        (tmp / "bad.pass").write_bytes(b"staff pass \xe9ords\n")
        code, out, err = run(monkeypatch, capsys, "list", "--fields", "badge_name", "--identity", "staff.dvid",
                             "--passphrase-file", "bad.pass", "--reason", "x")
        want = 1
        assert "xe9" not in err and "ords" not in err
    elif case == "mapping_not_utf8":
        (tmp / "in.csv").write_text(CSV_HEADER)
        (tmp / "map.toml").write_bytes(b'[columns]\n"personal/full_name" = "legal_\xffname"\n')
        code, out, err = run(monkeypatch, capsys, "import", "in.csv", "--mapping", "map.toml", "--dry-run", *LEAD)
        want = 1
    elif case == "not_a_database":
        (tmp / "in.csv").write_text(CSV_HEADER + "Amira Haddad;Amira;1980-02-03;amira@example.org\n")
        code, out, err = run(monkeypatch, capsys, "list", "--fields", "badge_name", "--vault", "in.csv", *STAFF)
        want = 1
    elif case == "export_over_a_file":  # refused before anything is decrypted or audited
        (tmp / "out.csv").write_text("keep me\n")
        exports = _audited(url, "export")
        code, out, err = run(monkeypatch, capsys, "export", "--fields", "badge_name", "--out", "out.csv", *STAFF)
        want = 1
        assert (tmp / "out.csv").read_text() == "keep me\n" and _audited(url, "export") == exports
    elif case == "export_into_a_missing_folder":  # refused before anything is decrypted or audited
        exports = _audited(url, "export")
        code, out, err = run(monkeypatch, capsys, "export", "--fields", "badge_name", "--out", "nope/out.csv", *STAFF)
        want = 1
        assert _audited(url, "export") == exports and "cannot write to" in err
    elif case == "passphrase_env_not_utf8":  # bytes that were not UTF-8 arrive as lone surrogates
        monkeypatch.setenv("DVAULT_PASSPHRASE", "staff \udcff")
        code, out, err = run(monkeypatch, capsys, "list", "--fields", "badge_name", "--identity", "staff.dvid",
                             "--reason", "x")
        want = 1
        assert "UTF-8" in err
    elif case == "reason_not_utf8":
        code, out, err = run(monkeypatch, capsys, "list", "--fields", "badge_name", *STAFF[:4], "--reason", "\udcff")
        want = 1
        assert "UTF-8" in err
    elif case == "since_days_nan":
        code, out, err = run(monkeypatch, capsys, "audit", "show", "--since-days", "nan", *LEAD[:4])
        want = 1
        assert "--since-days" in err
    elif case == "checkpoint_at_zero":  # seq 0 "verified" any log before the fix
        code, out, err = run(monkeypatch, capsys, "audit", "verify", "--against", "dvcp1:0:" + "a" * 32, *LEAD[:4])
        want = 1
        assert "not a checkpoint" in err
    elif case == "port_not_a_number":
        code, out, err = run(monkeypatch, capsys, "list", "--fields", "badge_name", "--vault",
                             "postgresql+psycopg://postgres@127.0.0.1:notaport/x", *STAFF)
        want = 1
        assert "not a database URL" in err
    elif case == "no_input_for_passphrase":  # no terminal, no file, no variable: one line, no getpass noise
        import io
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        code, out, err = run(monkeypatch, capsys, "list", "--fields", "badge_name", "--identity", "staff.dvid",
                             "--reason", "x")
        want = 1
        assert "no input for" in err
    elif case == "identity_file_missing":  # said before its passphrase is asked for
        code, out, err = run(monkeypatch, capsys, "list", "--fields", "badge_name", "--identity", "nope.dvid",
                             "--reason", "x")
        want = 2
    elif case in ("sqlite_file_not_a_vault", "empty_file"):  # refused without changing a byte of it
        import hashlib
        import sqlite3
        other = tmp / "other.db"
        if case == "empty_file":
            other.write_bytes(b"")
        else:
            con = sqlite3.connect(other)
            con.execute("CREATE TABLE t (x)")
            con.commit()
            con.close()
        digest = hashlib.sha256(other.read_bytes()).hexdigest()
        code, out, err = run(monkeypatch, capsys, "list", "--fields", "badge_name", "--vault", str(other), *STAFF)
        want = 2
        assert hashlib.sha256(other.read_bytes()).hexdigest() == digest
        assert sorted(p.name for p in tmp.iterdir() if p.name.startswith("other")) == ["other.db"]
    else:  # an unquoted value: click would repeat its second word
        code, out, err = run(monkeypatch, capsys, "find", "--name", "Amira", "Haddad", *STAFF)
        want = 1
        assert "Haddad" not in err
    assert code == want, err
    assert err.startswith("dvault: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not any(s in err for s in SECRET_VALUES)
    assert _count(url) == before and not out


@pytest.mark.parametrize("problem", ["bad_encoding", "missing_column", "bad_date", "duplicate_row"])
def test_malformed_csv_imports_nothing(setup, monkeypatch, capsys, problem: str) -> None:  # type: ignore[no-untyped-def]
    tmp, url, _ = setup
    (tmp / "map.toml").write_text('[columns]\n"personal/full_name" = "legal_name"\n"personal/badge_name" = "badge_name"\n'
                                  '"personal/date_of_birth" = "date_of_birth"\n"contact/email" = "email"\n')
    rows = ["Zainab Okonkwo;Zainab;1980-02-03;z@example.org\n", "Kofi Mensah;Kofi;1975-06-07;k@example.org\n"]
    if problem == "bad_encoding":
        data = (CSV_HEADER + "Jürgen Müller;J;1970-01-01;j@example.org\n").encode("latin-1")
    elif problem == "missing_column":
        data = ("personal/full_name;personal/badge_name;contact/email\n" + "A B;A;a@example.org\n").encode()
    elif problem == "bad_date":
        data = (CSV_HEADER + rows[0] + "Kofi Mensah;Kofi;07/06/1975;k@example.org\n").encode()
    else:
        data = (CSV_HEADER + rows[0] + rows[1] + rows[0]).encode()
    (tmp / "in.csv").write_bytes(data)
    before = _count(url)
    code, out, err = run(monkeypatch, capsys, "import", "in.csv", "--mapping", "map.toml", *LEAD)
    assert code == 1
    assert _count(url) == before
    lines = err.strip().splitlines()
    assert all(line.startswith("dvault:") or "good row" in line for line in lines), err
    assert "Traceback" not in err and "Zainab" not in err and "Kofi" not in err
    if problem in ("bad_date", "duplicate_row"):
        assert "line 3" in err or "line 4" in err
    code, out, err = run(monkeypatch, capsys, "import", "in.csv", "--mapping", "map.toml", "--dry-run", *LEAD)
    assert code == 1 and _count(url) == before


def test_no_secrets_in_spawned_argv_or_stray_files(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    tmp, url, badge = setup
    spawned: list[object] = []
    real_popen = subprocess.Popen

    def spy(*a, **kw):  # type: ignore[no-untyped-def]
        spawned.append(a[0] if a else kw.get("args"))
        return real_popen(*a, **kw)
    monkeypatch.setattr(subprocess, "Popen", spy)
    monkeypatch.setattr(os, "execv", lambda *a: spawned.append(a))
    monkeypatch.setattr(os, "execve", lambda *a: spawned.append(a))
    monkeypatch.setenv("TMPDIR", str(tmp))
    reason = "Hospital visit for Amira"
    calls = [("find", "--email", "amira@example.org", "--identity", "staff.dvid", "--passphrase-file", "staff.pass",
              "--reason", reason),
             ("show", badge, *STAFF),
             ("export", "--fields", "badge_name,email", "--purpose", "badge", "--out", "export.csv", *STAFF),
             ("audit", "show", "--identity", "lead.dvid", "--passphrase-file", "lead.pass")]
    for args in calls:
        code, out, err = run(monkeypatch, capsys, *args)
        assert code == 0, err
    assert spawned == []  # the CLI starts no processes, so no argv can carry a secret
    allowed = {"v.vault", "v.vault-wal", "v.vault-shm", "export.csv"}
    for f in tmp.rglob("*"):
        if f.is_file() and f.name not in allowed:
            data = f.read_bytes()
            for s in SECRET_VALUES + (LEAD_PW, STAFF_PW, RECOVERY, reason):
                if f.name.endswith(".pass") and s in (LEAD_PW, STAFF_PW):
                    continue  # the passphrase files this test itself wrote
                assert s.encode() not in data and s.encode("utf-16-le") not in data, (f.name, s)
    assert "amira@example.org" in (tmp / "export.csv").read_text()


@pytest.mark.parametrize("problem", ["vault_exists", "empty_recovery"])
def test_failed_init_leaves_no_identity(tmp_path: Path, monkeypatch, capsys, problem: str) -> None:  # type: ignore[no-untyped-def]
    """init makes the lead's identity for the new vault; if the vault is not made, neither is it."""
    for k in [k for k in os.environ if k.startswith("DVAULT_")]:
        monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "id.pass").write_text(LEAD_PW + "\n")
    (tmp_path / "rec.pass").write_text("" if problem == "empty_recovery" else RECOVERY + "\n")
    if problem == "vault_exists":
        (tmp_path / "v.vault").write_bytes(b"someone else's file")
    code, out, err = run(monkeypatch, capsys, "init", "--vault", "v.vault", "--identity", "lead.dvid",
                         "--identity-passphrase-file", "id.pass", "--passphrase-file", "rec.pass")
    assert code == 1 and err.startswith("dvault: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "lead.dvid").exists()
    if problem == "vault_exists":
        assert (tmp_path / "v.vault").read_bytes() == b"someone else's file"


def test_shell_survives_a_bad_line(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """An unbalanced quote or a failing lookup costs one error line, not the unlocked session."""
    import io
    monkeypatch.setattr(sys, "stdin", io.StringIO('find name "Amira\nfind email amira@example.org\nquit\n'))
    code, out, err = run(monkeypatch, capsys, "shell", *STAFF)
    assert code == 0, err
    assert err.count("dvault: error: cannot parse that line") == 1 and "Traceback" not in err
    assert "amira@example.org" in out  # the next line still ran, in the same session


def test_shell_never_echoes_a_line_and_keeps_its_reason(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import io
    monkeypatch.setattr(sys, "stdin", io.StringIO("fnd Amira \x1b[31mHaddad\nreason\nlist badge_name\nquit\n"))
    code, out, err = run(monkeypatch, capsys, "shell", *STAFF)
    assert code == 0, err
    assert "Haddad" not in out + err and "\x1b" not in out + err and "unknown command" in err
    assert "usage: reason TEXT" in err
    tmp, url, _ = setup
    with vault.open(url, identity=Identity.load(tmp / "lead.dvid", LEAD_PW)) as v:
        last = v.audit_entries(action="read_all")[-1]
    assert last["reason"] == "desk work"  # the bare "reason" line did not clear it


def test_a_second_user_with_the_same_name_is_refused(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    other = Identity.generate()
    code, out, err = run(monkeypatch, capsys, "user", "add", other.public.to_line(), "--name", "SAM", "--role", "staff",
                         "--yes", *LEAD[:4])
    assert code == 1 and "another enrolled user has that name" in err and err.count("\n") == 1


@pytest.mark.parametrize("edit", ["detail = '{'", "detail = 'null'", "detail = x'00'",
                                  # a fuzz hunt (2026-11-27): RecursionError and TypeError before
                                  "detail = '" + "[" * 100_000 + "'", "actor = '" + "x" * 64 + "'",
                                  "at = 'noon'", "hash = x'00'"])
def test_an_edited_audit_row_is_an_integrity_error(setup, monkeypatch, capsys, edit: str) -> None:  # type: ignore[no-untyped-def]
    import sqlite3
    tmp, url, _ = setup
    con = sqlite3.connect(url)
    con.execute(f"UPDATE dv_audit SET {edit} WHERE seq = 3")
    con.commit()
    con.close()
    code, out, err = run(monkeypatch, capsys, "audit", "verify", *LEAD[:4])
    assert code == 5 and "entry 3" in err and err.count("\n") == 1, err
    # the listing shows the row where it stands, flagged, and goes on (it used to exit 5:
    # one edited row blinded the lead to every other entry)
    code, out, err = run(monkeypatch, capsys, "audit", "show", *LEAD[:4])
    assert code == 0 and "1 entry fails their own check" in err, err
    assert [ln.split()[:2] for ln in out.splitlines() if ln.split()[:1] == ["3"]] == [["3", "FORGED?"]], out


def test_an_edited_record_row_is_an_integrity_error(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import sqlite3
    tmp, url, _ = setup
    con = sqlite3.connect(url)
    con.execute("UPDATE dv_records SET data = 'text, not bytes'")
    con.commit()
    con.close()
    for args, says in ((("list", "--fields", "badge_name", *STAFF), "malformed"),
                       (("audit", "verify", "--records", *LEAD[:4]), "1 damaged (of 1 rows)")):
        code, out, err = run(monkeypatch, capsys, *args)
        assert code == 5 and says in err and err.count("\n") == 1, err


def test_database_urls_are_shown_without_password() -> None:
    from vault_cli.common import shown_url
    assert shown_url("postgresql+psycopg://dv:s3cret-pw@db.example.org/vault") == \
        "postgresql+psycopg://dv:***@db.example.org/vault"
    assert shown_url("dd2026.vault") == "dd2026.vault"


def test_passphrase_recovery_changes_it_and_refuses_bad_input(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    tmp, url, _badge = setup
    (tmp / "recovery.pass").write_text(RECOVERY + "\n")
    (tmp / "new.pass").write_text("a brand new recovery phrase\n")
    (tmp / "wrong.pass").write_text("not the recovery phrase\n")
    code, _out, err = run(monkeypatch, capsys, "passphrase", "recovery", "--passphrase-file", "wrong.pass",
                          "--new-passphrase-file", "new.pass")
    assert code == 4 and err.strip() == "dvault: error: wrong passphrase"
    code, _out, err = run(monkeypatch, capsys, "passphrase", "recovery", "--passphrase-file", "recovery.pass",
                          "--new-passphrase-file", "recovery.pass")
    assert code == 1 and err.strip() == "dvault: error: the new passphrase is the same as the current one"
    with vault.open(url, RECOVERY) as v:  # both refusals changed nothing
        assert not v.audit_entries(action="change_passphrase")
    code, out, err = run(monkeypatch, capsys, "passphrase", "recovery", "--passphrase-file", "recovery.pass",
                         "--new-passphrase-file", "new.pass")
    assert code == 0 and "recovery passphrase changed" in out, err
    assert "brand new" not in out + err and RECOVERY not in out + err
    with pytest.raises(vault.WrongPassphrase):
        vault.open(url, RECOVERY)
    with vault.open(url, "a brand new recovery phrase") as v:
        assert len(v.audit_entries(action="change_passphrase")) == 1
        assert v.count() == 1
    with vault.open(url, identity=Identity.load(tmp / "lead.dvid", LEAD_PW)) as v:  # the lead's slot still opens
        assert v.count() == 1


def test_passphrase_identity_rewraps_the_file(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    tmp, url, _badge = setup
    (tmp / "new.pass").write_text("staff has a new phrase\n")
    before = Identity.load(tmp / "staff.dvid", STAFF_PW).public.to_line()
    code, _out, err = run(monkeypatch, capsys, "passphrase", "identity", "--identity", "staff.dvid",
                          "--passphrase-file", "lead.pass", "--new-passphrase-file", "new.pass")
    assert code == 4 and "wrong passphrase" in err
    assert Identity.load(tmp / "staff.dvid", STAFF_PW).public.to_line() == before  # untouched
    code, _out, err = run(monkeypatch, capsys, "passphrase", "identity", "--identity", "missing.dvid",
                          "--passphrase-file", "staff.pass", "--new-passphrase-file", "new.pass")
    assert code == 2 and err.strip() == "dvault: error: no identity file at missing.dvid"
    code, out, err = run(monkeypatch, capsys, "passphrase", "identity", "--identity", "staff.dvid",
                         "--passphrase-file", "staff.pass", "--new-passphrase-file", "new.pass")
    assert code == 0 and "passphrase changed" in out, err
    assert "new phrase" not in out + err and STAFF_PW not in out + err
    assert oct((tmp / "staff.dvid").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(vault.WrongPassphrase):
        Identity.load(tmp / "staff.dvid", STAFF_PW)
    staff = Identity.load(tmp / "staff.dvid", "staff has a new phrase")
    assert staff.public.to_line() == before
    with vault.open(url, identity=staff) as v:  # same keys: the vault needs no change
        assert v.count() == 1
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith("staff")) == ["staff.dvid", "staff.dvid.vaults", "staff.pass"]


def test_passphrase_identity_through_a_link_changes_the_linked_file(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """From a CLI hunt: through a symbolic link (the identity kept on a stick), the link was
    replaced by a new file beside it and the real identity kept its old passphrase, while
    the command said "passphrase changed"."""
    tmp, url, _badge = setup
    (tmp / "stick").mkdir(mode=0o700)
    real = tmp / "stick" / "sam.dvid"
    os.replace(tmp / "staff.dvid", real)
    (tmp / "staff.dvid").symlink_to(real)
    (tmp / "new.pass").write_text("staff has a new phrase\n")
    code, out, err = run(monkeypatch, capsys, "passphrase", "identity", "--identity", "staff.dvid",
                         "--passphrase-file", "staff.pass", "--new-passphrase-file", "new.pass")
    assert code == 0 and "passphrase changed" in out and str(real) in out, err
    assert (tmp / "staff.dvid").is_symlink() and os.path.realpath(tmp / "staff.dvid") == str(real)
    with pytest.raises(vault.WrongPassphrase):
        Identity.load(real, STAFF_PW)
    Identity.load(real, "staff has a new phrase")
    assert oct(real.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in real.parent.iterdir()) == ["sam.dvid"]  # no temporary file left
    beside = sorted(p.name for p in tmp.iterdir() if p.name.startswith("staff"))
    assert beside == ["staff.dvid", "staff.dvid.vaults", "staff.pass"]


def test_a_damaged_vault_file_is_an_integrity_failure(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """From a CLI hunt: a page of the vault file damaged on disk (dv_meta's b-tree page):
    verify, status and audit verify said "database error: DatabaseError", exit 1 (a usage
    error), not the integrity failure the exit codes promise."""
    import sqlite3
    tmp, url, _ = setup
    con = sqlite3.connect(url)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA journal_mode=DELETE")
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'dv_meta'").fetchone()[0]
    con.close()
    data = bytearray(Path(url).read_bytes())
    start = (root - 1) * page_size
    n = int.from_bytes(data[start + 3:start + 5], "big")  # cell count; the cell pointers follow the header
    header = 12 if data[start] in (2, 5) else 8
    for i in range(n):  # every cell pointer off the end of the page
        at = start + header + 2 * i
        data[at:at + 2] = (page_size - 3 - i).to_bytes(2, "big")
    Path(url).write_bytes(bytes(data))
    for args in (("verify", *LEAD[:4]), ("status", *LEAD[:4]), ("audit", "verify", *LEAD[:4])):
        code, out, err = run(monkeypatch, capsys, *args)
        assert code == 5, (args, code, err)
        assert err.startswith("dvault: error: the database file is damaged (a page of it does not parse)"), err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("command", ["reveal show", "approve"])
def test_a_request_id_with_a_newline_gives_one_line(setup, monkeypatch, capsys, command: str) -> None:  # type: ignore[no-untyped-def]
    """From a CLI hunt: the id was echoed raw, and a newline in it printed a second line
    ("dvault: ok: approved") after the error. It is refused by its form, before the
    passphrase is asked for, without being repeated."""
    who = STAFF[:4] if command == "reveal show" else LEAD[:4]
    code, out, err = run(monkeypatch, capsys, *command.split(), "abc\ndvault: ok: approved", *who)
    assert code == 2 and out == ""
    assert err == ("dvault: error: no break-glass request with that id (a request id is 16 hex digits, as dvault "
                   "reveal request printed it)\n")


def test_an_error_quoting_what_was_typed_stays_one_line(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """Whatever a message quotes (here a file name typed with a newline and a terminal
    escape), the error is one line with those characters escaped."""
    code, out, err = run(monkeypatch, capsys, "status", "--identity", "x\ndvault: ok\x1b[2J.dvid",
                         "--passphrase-file", "lead.pass")
    assert code == 2 and len(err.splitlines()) == 1 and "\x1b" not in err, err
    assert "x\\x0advault: ok\\x1b[2J.dvid" in err


def test_move_into_a_new_vault_under_a_new_lead(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    tmp, url, badge = setup
    (tmp / "recovery.pass").write_text(RECOVERY + "\n")
    (tmp / "new.pass").write_text("a brand new recovery phrase\n")
    (tmp / "nadia.pass").write_text("nadia's identity phrase\n")
    base = ("move", "--passphrase-file", "recovery.pass", "--identity-passphrase-file", "nadia.pass",
            "--reason", "the lead's laptop was seized")
    refusals = [  # (args, exit code, message): each leaves neither a vault nor an identity behind
        (("--to", "new.vault", "--identity", "nadia.dvid", "--new-passphrase-file", "recovery.pass"),
         1, "the new vault needs a new recovery passphrase, not the old one"),
        (("--to", "new.vault", "--identity", "lead.dvid", "--new-passphrase-file", "new.pass",
          "--identity-passphrase-file", "lead.pass"),
         1, "the new vault needs a new lead identity: this one leads the old vault"),
        (("--to", "v.vault", "--identity", "nadia.dvid", "--new-passphrase-file", "new.pass"),
         1, f"refusing to overwrite {url}"),
    ]
    for args, want_code, message in refusals:
        code, out, err = run(monkeypatch, capsys, *base, *args)
        assert (code, err.strip()) == (want_code, f"dvault: error: {message}"), err
        assert not (tmp / "new.vault").exists() and not (tmp / "nadia.dvid").exists()
    (tmp / "wrong.pass").write_text("not the recovery phrase\n")
    code, _out, err = run(monkeypatch, capsys, "move", "--passphrase-file", "wrong.pass", "--to", "new.vault",
                          "--identity", "nadia.dvid", "--new-passphrase-file", "new.pass", "--reason", "x")
    assert code == 4 and err.strip() == "dvault: error: wrong passphrase"

    code, out, err = run(monkeypatch, capsys, *base, "--to", "new.vault", "--identity", "nadia.dvid",
                         "--new-passphrase-file", "new.pass", "--name", "nadia")
    assert code == 0 and out.startswith("moved 1 participants into vault "), err
    staff = Identity.load(tmp / "staff.dvid", STAFF_PW)
    assert f"dvault user add {staff.public.to_line()} --name sam --role staff" in err  # re-enrol, by hand
    assert not any(s in out + err for s in (*SECRET_VALUES, RECOVERY, "brand new", "nadia's identity"))
    nadia = Identity.load(tmp / "nadia.dvid", "nadia's identity phrase")
    assert (tmp / "nadia.dvid.vaults").exists()  # the new vault is pinned for its lead
    with vault.open(tmp / "new.vault", identity=nadia, pins=tmp / "nadia.dvid.vaults") as v:
        rec = next(iter(v.records()))
        assert rec["legal_name"] == "Amira Haddad" and rec["passport_number"] == "P83526008"
        assert [u.name for u in v.users()] == ["nadia"]
        assert [e["reason"] for e in v.audit_entries(action="import")] == ["the lead's laptop was seized"]
        with pytest.raises(vault.NotFound):
            v.resolve(badge)  # pseudonyms changed with the purpose keys
    with pytest.raises(vault.WrongPassphrase):
        vault.open(tmp / "new.vault", RECOVERY)
    assert _count(url) == 1 and _audited(url, "export") == 1  # the old vault: as it was, plus its log


def test_audit_show_by_record_and_time_range(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt
    import json

    tmp, url, badge = setup
    lead = ("--identity", "lead.dvid", "--passphrase-file", "lead.pass")
    code, _out, err = run(monkeypatch, capsys, "show", badge, *LEAD)
    assert code == 0, err
    code, out, err = run(monkeypatch, capsys, "audit", "show", "--target", badge.lower(), "--json", *lead)
    assert code == 0, err
    entries = [json.loads(line) for line in out.splitlines()]
    assert [e["action"] for e in entries] == ["read"] and entries[0]["target"].startswith("AU-")
    assert entries[0]["reason"] == "lead work"
    # the time as the table shows it (whole seconds) as --until keeps that entry
    shown = dt.datetime.fromtimestamp(entries[0]["at"] / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    code, out, err = run(monkeypatch, capsys, "audit", "show", "--json", "--action", "read", "--until", shown, *lead)
    assert code == 0 and [json.loads(x)["seq"] for x in out.splitlines()] == [entries[0]["seq"]], err
    today = dt.datetime.now(dt.timezone.utc).date()
    windows = {(str(today), str(today)): True, ("2000-01-01", "2000-01-02"): False,
               (f"{today}T00:00", None): True, (None, str(today - dt.timedelta(days=1))): False}
    for (since, until), any_entry in windows.items():
        args = [*(("--since", since) if since else ()), *(("--until", until) if until else ())]
        code, out, err = run(monkeypatch, capsys, "audit", "show", "--json", "--action", "read", *args, *lead)
        assert code == 0 and bool(out.strip()) == any_entry, (since, until, err)
    for args, message in ((("--since", "last tuesday"), "--since: expected a UTC date or time like 2026-11-20 or 2026-11-20T14:30"),
                          (("--since", "2026-11-20", "--until", "2026-11-19"), "--until is before --since"),
                          (("--since", "2026-11-20", "--since-days", "3"), "give --since or --since-days, not both"),
                          (("--target", badge[:-1] + ("A" if badge[-1] != "A" else "B")), "mistyped pseudonym: check character does not match")):
        code, out, err = run(monkeypatch, capsys, "audit", "show", *args, *lead)
        assert (code, err.strip()) == (1, f"dvault: error: {message}"), err


HOSTILE = "Ali\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2K\r\u202eecnaliavrus\x9b31m\x7f"


def _as_an_older_release(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let control characters in, as a vault written by a release that did not refuse them
    holds them: what is already stored must still reach the screen escaped."""
    import re
    monkeypatch.setattr("vault.values._CONTROL", re.compile("(?!)"))


@pytest.mark.parametrize("command", ["list", "list-json", "show", "find-json", "audit-table", "audit-json", "shell"])
def test_no_terminal_control_reaches_the_screen(setup, monkeypatch, capsys, command: str) -> None:  # type: ignore[no-untyped-def]
    """A registration form is filled in by anyone: a value (or a reason) must not move the
    cursor, rewrite a line, write the clipboard or reorder text on a staff member's screen."""
    tmp, url, _badge = setup
    with monkeypatch.context() as m, vault.open(url, RECOVERY) as v:
        _as_an_older_release(m)
        rid = v.add({"legal_name": HOSTILE, "badge_name": HOSTILE, "email": "x@example.org"})
        badge = v._pseudonyms.issue(rid, "badge")
    hostile_reason = ("--reason", "checking\x1b[1A\x1b[2K" + "\u2066")
    args = {"list": ("list", "--fields", "badge_name", *LEAD),
            "list-json": ("list", "--fields", "badge_name", "--json", *LEAD),
            "show": ("show", badge, *LEAD),
            "find-json": ("find", "--email", "x@example.org", "--json", *LEAD),
            "audit-table": ("audit", "show", "--identity", "lead.dvid", "--passphrase-file", "lead.pass"),
            "audit-json": ("audit", "show", "--json", "--identity", "lead.dvid", "--passphrase-file", "lead.pass"),
            "shell": ("shell", "--identity", "lead.dvid", "--passphrase-file", "lead.pass")}[command]
    if command.startswith("audit"):
        code, _out, err = run(monkeypatch, capsys, "show", badge, *LEAD[:4], *hostile_reason)
        assert code == 0, err
    if command == "shell":
        monkeypatch.setattr(sys, "stdin", __import__("io").StringIO(f"show {badge}\nfind email x@example.org\n"))
    code, out, err = run(monkeypatch, capsys, *args)
    assert code == 0, err
    for ch in ("\x1b", "\x07", "\r", "\x9b", "\x7f", "\u202e", "\u2066"):
        assert ch not in out + err, (command, repr(ch))
    assert "\\x1b" in out or "\\u001b" in out  # shown, escaped, not dropped
    if command.endswith("json"):  # and JSON decodes back to the exact text
        import json
        key, want = ("reason", hostile_reason[1]) if command.startswith("audit") else ("badge_name", HOSTILE)
        assert want in [json.loads(line).get(key) for line in out.splitlines()]


def test_printable_escapes_controls_but_keeps_every_script() -> None:
    from vault_cli.common import printable

    for name in ("Nasrin Sotoudeh", "نسرین ستوده", "می‌خواهم", "Zoë Ñúñez", "👩‍⚖️ advocate", "José\u00a0María"):
        assert printable(name) == name  # ZWNJ, ZWJ, no-break space: parts of real names
    assert printable("a\x1b[2Kb\rc\u202ed\x9b") == "a\\x1b[2Kb\\x0dc\\u202ed\\x9b"
    assert printable("line one\n\tline two\x07", lines=True) == "line one\n\tline two\\x07"  # reveal show
    assert printable("line one\nline two") == "line one\\x0aline two"


def test_audit_summary_names_users_and_actor_takes_a_name(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    tmp, url, badge = setup
    lead = ("--identity", "lead.dvid", "--passphrase-file", "lead.pass")
    for who in (STAFF, STAFF, LEAD):
        code, _out, err = run(monkeypatch, capsys, "show", badge, *who)
        assert code == 0, err
    (tmp / "recovery.pass").write_text(RECOVERY + "\n")
    code, _out, err = run(monkeypatch, capsys, "list", "--fields", "passport_number", "--recovery",
                          "--passphrase-file", "recovery.pass", "--reason", "audit of passports")
    assert code == 0, err
    code, out, err = run(monkeypatch, capsys, "audit", "show", "--summary", *lead)
    assert code == 0, err
    rows = {line.split()[1]: line.split()[2:] for line in out.splitlines()[1:]}
    header = out.splitlines()[0].split()
    assert header == ["actor", "name", "public", "logistics", "contact", "identity", "risk"]
    assert rows["sam"] == ["2", "2"]  # public and contact, twice each (staff read no identity)
    assert rows["(recovery"] == ["passphrase)", "1"]  # the recovery actor, named as such: identity 1
    code, out, err = run(monkeypatch, capsys, "audit", "show", "--summary", "--json", *lead)
    counts = json.loads(out)
    sam = Identity.load(tmp / "staff.dvid", STAFF_PW).public.user_id
    assert counts[sam] == {"public": 2, "contact": 2}
    with vault.open(url, RECOVERY) as v:
        assert counts[v.recovery_actor_id] == {"identity": 1}
    code, out, err = run(monkeypatch, capsys, "audit", "show", "--actor", "sam", "--json", *lead)
    assert code == 0 and {json.loads(line)["actor"] for line in out.splitlines()} == {sam}


def test_pin_show_and_add_before_the_first_open(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    tmp, url, badge = setup
    (tmp / "staff.dvid.vaults").unlink()  # never opened, never pinned
    code, line, err = run(monkeypatch, capsys, "pin", "show", "--identity", "lead.dvid", "--passphrase-file", "lead.pass")
    assert code == 0 and len(line.split()) == 3, err
    vid, fp, signers = line.split()
    wrong = ("0" if fp[0] != "0" else "1") + fp[1:]
    for args, want_code, message in (
            ((vid, "nothex", signers), 1, "a pin is the vault id, its fingerprint and its signers: 32, 32 and 32 hex "
                                          "digits"),
            ((vid, fp, signers), 0, None),
            ((vid, wrong, signers), 5, "this vault's keys differ from those you opened it with before: your key slot "
                                       "may have been replaced; do not add records, tell the lead")):
        code, out, err = run(monkeypatch, capsys, "pin", "add", *args, "--identity", "staff.dvid")
        if message is None:
            assert code == 0 and out.strip() == f"vault {vid} pinned in staff.dvid.vaults", err
        else:
            assert (code, err.strip()) == (want_code, f"dvault: error: {message}")
    assert (tmp / "staff.dvid.vaults").read_text().splitlines()[1:] == [f"{vid} {fp} {signers}",
                                                                       f"at {PN.location_hash(url)} {vid}",
                                                                       f"new {vid}"]  # not opened yet
    code, out, err = run(monkeypatch, capsys, "show", badge, *STAFF)  # the pinned vault opens as before
    assert code == 0, err
    assert f"new {vid}" not in (tmp / "staff.dvid.vaults").read_text()  # ... and is no longer pending
    code, out, err = run(monkeypatch, capsys, "user", "add", Identity.generate().public.to_line(), "--name", "kim",
                         "--role", "tool", "--yes", *LEAD[:4])
    assert code == 0 and f"dvault pin add {vid} {fp} {signers}" in err  # the lead is told to send the pin line


def test_ctrl_c_while_the_modules_load_is_one_line(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """The entry point imports the CLI inside a handler: an interrupt there was a traceback."""
    import importlib.abc

    import vault_cli

    class Interrupt(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
            if name == "vault_cli.main":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "vault_cli.main")
    monkeypatch.setattr(sys, "meta_path", [Interrupt(), *sys.meta_path])
    with pytest.raises(SystemExit) as e:
        vault_cli.run()
    assert e.value.code == 130 and capsys.readouterr().err == "dvault: error: interrupted\n"


def test_export_to_a_terminal_escapes_what_the_screen_would_act_on(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """list and show escape controls; export to stdout did not. A pipe still gets exact bytes."""
    tmp, url, _ = setup
    with monkeypatch.context() as m, vault.open(url, RECOVERY) as v:
        _as_an_older_release(m)
        v.add({"badge_name": "X\x1b]0;PWNED\x07 A\u202eB\x9b2J"})
    for fmt in ("csv", "json"):
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
        code, out, err = run(monkeypatch, capsys, "export", "--fields", "badge_name", "--format", fmt, *STAFF)
        assert code == 0, err
        assert not any(c in out for c in "\x1b\x07\u202e\x9b") and "PWNED" in out, out
        monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
        code, out, err = run(monkeypatch, capsys, "export", "--fields", "badge_name", "--format", fmt, *STAFF)
        assert code == 0 and "\u202e" in out  # a pipe gets the data as it is


def test_importing_the_same_file_twice_adds_no_one_twice(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    tmp, url, _ = setup
    (tmp / "map.toml").write_text('[columns]\n"personal/full_name" = "legal_name"\n'
                                  '"personal/badge_name" = "badge_name"\n"contact/email" = "email"\n')
    (tmp / "a.csv").write_text(CSV_HEADER + "Kofi Mensah;Kofi;1970-01-01;kofi@example.org\n")
    code, out, err = run(monkeypatch, capsys, "import", "a.csv", "--mapping", "map.toml", *LEAD)
    assert code == 0 and "imported 1" in out, err
    (tmp / "b.csv").write_text(CSV_HEADER + "Kofi Mensah;Kofi;1970-01-01;KOFI@example.org\n"
                                            "Lina Haddad;Lina;1980-01-01;lina@example.org\n")
    before = _count(url)
    code, out, err = run(monkeypatch, capsys, "import", "b.csv", "--mapping", "map.toml", *LEAD)
    assert code == 1 and "line 2: already in the vault (same e-mail" in err and _count(url) == before
    code, out, err = run(monkeypatch, capsys, "import", "b.csv", "--mapping", "map.toml", "--skip-bad", *LEAD)
    assert code == 0 and "imported 1" in out and _count(url) == before + 1, err


INT_SCHEMA = ('[schema]\nname = "t"\nversion = 1\nclasses = ["public"]\n[fields.name]\ntype = "text"\nclass = "public"\n'
              '[fields.seats]\ntype = "integer"\nclass = "public"\n')


@pytest.mark.parametrize("case", ["huge_integer", "deeply_nested_mapping"])
def test_a_hostile_import_is_one_line_per_problem(tmp_path: Path, monkeypatch, capsys, case: str) -> None:  # type: ignore[no-untyped-def]
    """From a fuzz hunt (2026-11-27): a cell of 4301 digits (int()'s ValueError) and a
    mapping nested 600 deep (tomllib's RecursionError) each ended as "internal error"."""
    url = str(tmp_path / "i.vault")
    vault.create(url, RECOVERY, schema=INT_SCHEMA).close()
    for k in [k for k in os.environ if k.startswith("DVAULT_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text("Name,Seats\nAmira," + "9" * 4301 + "\n")
    mapping = '[columns]\n"Name" = "name"\n"Seats" = "seats"\n'
    if case == "deeply_nested_mapping":
        mapping += "[values.name]\nx = " + "{x=" * 600 + "1" + "}" * 600 + "\n"
    (tmp_path / "map.toml").write_text(mapping)
    for extra in (("--dry-run",), ()):
        monkeypatch.setenv("DVAULT_RECOVERY_PASSPHRASE", RECOVERY)  # each command's: read, it is gone
        code, out, err = run(monkeypatch, capsys, "import", "in.csv", "--mapping", "map.toml", *extra,
                             "--vault", url, "--recovery", "--reason", "fuzz check")
        assert code == 1 and "Traceback" not in err and "internal error" not in err and "9999" not in err, err
        lines = err.strip().splitlines()
        if case == "huge_integer":
            assert "line 2, column 'Seats': is out of the 64-bit range" in lines[0], err
        else:
            assert len(lines) == 1 and "nested" in err, err
    with vault.open(url, RECOVERY) as v:
        assert v.count() == 0


def test_a_role_that_may_not_add_is_refused_before_any_report_or_question(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """`import` by a tool printed its plan ("2 good row(s)...") before the refusal, and `add`
    asked for every field first: now one line, exit 3, each refusal logged once."""
    tmp, url, _ = setup
    tool = Identity.generate()
    tool.save(tmp / "tool.dvid", "tool pass words")
    (tmp / "tool.pass").write_text("tool pass words\n")
    with vault.open(url, identity=Identity.load(tmp / "lead.dvid", LEAD_PW)) as v:
        v.add_user(tool.public, "badge-printer", "tool")
        PN.add(tmp / "tool.dvid.vaults", v.pin_line, url)  # no first-open note before the refusal
    (tmp / "map.toml").write_text('[columns]\n"personal/full_name" = "legal_name"\n'
                                  '"personal/badge_name" = "badge_name"\n"contact/email" = "email"\n')
    (tmp / "in.csv").write_text(CSV_HEADER + "Kofi Mensah;Kofi;1970-01-01;kofi@example.org\n")
    as_tool = ("--identity", "tool.dvid", "--passphrase-file", "tool.pass", "--reason", "badges")
    before, denied = _count(url), _audited(url, "denied")
    for args in (("import", "in.csv", "--mapping", "map.toml"), ("add",)):
        code, out, err = run(monkeypatch, capsys, *args, *as_tool)
        assert code == 3 and not out, err
        assert err.startswith("dvault: error: ") and err.count("\n") == 1 and "cannot write" in err, err
    assert _count(url) == before and _audited(url, "denied") == denied + 2


def test_shell_help_never_echoes_its_argument(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """`help <text>` answered "*** No help on <text>", control characters and all (cmd.Cmd);
    a known command still gets its usage, an unknown one a fixed line."""
    import io
    lines = "help Amira Haddad \x1b]0;owned\x07\x1b[2J\n? Haddad\nhelp find\nhelp\nquit\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    code, out, err = run(monkeypatch, capsys, "shell", *STAFF)
    assert code == 0, err
    assert "Haddad" not in out + err and "\x1b" not in out + err and "owned" not in out + err
    assert err.count("dvault: error: no such command") == 2
    assert "find email|name|phone|passport VALUE" in out and "Documented commands" in out


# -- from a second CLI hunt: standard input or output closed (`dvault ... <&-`, `>&-`) ----------------
LEAD_NO_REASON = ("--identity", "lead.dvid", "--passphrase-file", "lead.pass")
STAFF_NO_REASON = ("--identity", "staff.dvid", "--passphrase-file", "staff.pass")


def _one_clear_line(err: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("dvault: warning")]
    assert lines and lines[-1].startswith("dvault: error: "), err
    assert "Traceback" not in err and "internal error" not in err, err


@pytest.mark.parametrize("command", ["reason", "find_term", "shred_confirm", "add", "checkin", "reveal_reason"])
def test_a_prompt_on_closed_stdin_is_one_clear_line(setup, monkeypatch, capsys, command: str) -> None:  # type: ignore[no-untyped-def]
    """With fd 0 closed Python's sys.stdin is None: click's prompt failed with "internal error
    (RuntimeError)", checkin with AttributeError. Now as end of input: one line, exit 1."""
    tmp, url, badge = setup
    args = {"reason": ("list", "--fields", "badge_name", *LEAD_NO_REASON),
            "find_term": ("find", "--email", *LEAD_NO_REASON, "--reason", "x"),
            "shred_confirm": ("shred", badge, *LEAD_NO_REASON, "--reason", "x"),
            "add": ("add", *LEAD_NO_REASON, "--reason", "x"),
            "checkin": ("checkin", *STAFF_NO_REASON, "--reason", "x"),
            "reveal_reason": ("reveal", "request", badge, "legal_name", *STAFF_NO_REASON)}[command]
    monkeypatch.setattr(sys, "stdin", None)
    code, out, err = run(monkeypatch, capsys, *args)
    assert code == 1, err
    _one_clear_line(err)
    assert "standard input is closed" in err, err
    assert _count(url) == 1


def _log_rows(url: str) -> int:
    import sqlite3
    with sqlite3.connect(url) as db:
        return int(db.execute("SELECT count(*) FROM dv_audit").fetchone()[0])


@pytest.mark.parametrize("command", ["list", "find", "export", "show", "audit_show", "checkin"])
def test_results_to_a_closed_stdout_are_refused_before_anything_is_read(setup, monkeypatch, capsys,
                                                                         command: str) -> None:  # type: ignore[no-untyped-def]
    """`dvault list >&-` and `find --pseudonyms-only >&-` exited 0 having written nothing (the
    reads audited all the same); `export >&-` was "internal error (AttributeError)"."""
    tmp, url, badge = setup
    args = {"list": ("list", "--fields", "badge_name", *LEAD),
            "find": ("find", "--email", "amira@example.org", "--pseudonyms-only", *LEAD),
            "export": ("export", "--fields", "badge_name", *LEAD),
            "show": ("show", badge, "--fields", "badge_name", *LEAD),
            "audit_show": ("audit", "show", *LEAD_NO_REASON),
            "checkin": ("checkin", badge, *STAFF)}[command]
    before = _log_rows(url)
    monkeypatch.setattr(sys, "stdout", None)
    code, out, err = run(monkeypatch, capsys, *args)
    monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    assert code == 1, err
    _one_clear_line(err)
    assert "standard output is closed" in err, err
    assert _log_rows(url) == before  # refused before the unlock: nothing read, nothing audited
