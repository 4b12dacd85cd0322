"""The first day at the desk, through the real ``dvault`` (issue 21's CLI half): the identity
is found where keygen put it, no passphrase on screen, files and passphrases checked,
hints instead of "aborted", progress only where a person watches, ``--json`` where a
script reads, and the CLI's own imports kept light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from vault.identity import Identity
from vault_cli.main import cli, main

import vault
from conftest import run_dvault
from vault import pins as PN

ROOT = Path(__file__).resolve().parent.parent
LEAD_PW, STAFF_PW, RECOVERY = "lead pass words", "staff pass words", "recovery pass words"


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No DVAULT_* variable, no config file, and per-user folders inside tmp_path."""
    for k in [k for k in os.environ if k.startswith("DVAULT_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "config" / "defenders-vault" / "config.toml"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def desk(clean_env: Path, url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A vault with a lead and a staff member (identity files and private passphrase
    files beside them), one participant, pinned for both."""
    tmp = clean_env
    lead, staff = Identity.generate(), Identity.generate()
    lead.save(tmp / "lead.dvid", LEAD_PW)
    staff.save(tmp / "staff.dvid", STAFF_PW)
    for name, pw in (("lead.pass", LEAD_PW), ("staff.pass", STAFF_PW), ("recovery.pass", RECOVERY)):
        (tmp / name).write_text(pw + "\n")
        (tmp / name).chmod(0o600)
    with vault.create(url, RECOVERY, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        v.add({"legal_name": "Amira Haddad", "email": "amira@example.org", "badge_name": "Amira"})
        v.pin(tmp / "lead.dvid.vaults")
        PN.add(tmp / "staff.dvid.vaults", v.pin_line, url)
    monkeypatch.setenv("DVAULT_URL", url)
    return tmp, url


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str,
        stdin: str = "") -> tuple[int, str, str]:
    """``dvault ARGS`` in this process, as the console script runs it (main's error mapping)."""
    return run_dvault(monkeypatch, capsys, *args, stdin=stdin)


STAFF = ("--identity", "staff.dvid", "--passphrase-file", "staff.pass")
LEAD = ("--identity", "lead.dvid", "--passphrase-file", "lead.pass")


# -- 1. the identity keygen writes is the one later commands use ---------------------------------
def test_keygen_without_o_is_found_by_every_later_command(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """keygen with no -o used to write the data folder while find asked for the recovery
    passphrase (and with DVAULT_PASSPHRASE set, said "wrong passphrase", exit 4)."""
    tmp, url = desk
    monkeypatch.setenv("DVAULT_IDENTITY_PASSPHRASE", "noor's own pass words")
    code, out, keygen_err = run(monkeypatch, capsys, "keygen")
    assert code == 0, keygen_err
    made = tmp / "data" / "defenders-vault" / "identity.dvid"
    assert made.is_file() and f"identity: {made}" in keygen_err
    line = out.strip().splitlines()[-1]
    code, _, err = run(monkeypatch, capsys, "user", "add", line, "--name", "noor", "--role", "staff", "--yes", *LEAD)
    assert code == 0, err
    monkeypatch.setenv("DVAULT_PASSPHRASE", "noor's own pass words")  # the fallback, as the issue had it
    code, out, err = run(monkeypatch, capsys, "find", "--email", "amira@example.org", "--pseudonyms-only",
                         "--reason", "desk")
    assert code == 0, err
    assert out.startswith("BA-") and "recovery" not in err.lower()
    assert "commands use it from now on" in keygen_err and "config.toml" in keygen_err  # and how to point elsewhere


def test_keygen_elsewhere_says_how_to_make_it_the_default(clean_env, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DVAULT_IDENTITY_PASSPHRASE", "a long enough passphrase")
    code, _out, err = run(monkeypatch, capsys, "keygen", "-o", "sam.dvid")
    assert code == 0, err
    assert 'identity = "' in err and str(clean_env / "sam.dvid") in err and "DVAULT_IDENTITY" in err


def test_help_documents_the_config_file_and_its_keys() -> None:
    text = CliRunner().invoke(cli, ["--help"]).output
    for needle in ("config.toml", "DVAULT_CONFIG", 'vault = "', 'identity = "', 'shell_idle_lock = "',
                   "dvault keygen writes by default"):
        assert needle in text, needle
    guide = (ROOT / "docs" / "guide.md").read_text("utf-8")
    assert "**The config file**" in guide and "shell_idle_lock" in guide


# -- 3. passphrase files and new passphrases ------------------------------------------------------
def test_a_passphrase_file_others_can_read_is_warned_about(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """A 0644 passphrase file in a folder others can enter: a warning naming the fix, even
    under --quiet (the command still runs). The same file in a 0700 folder is no one
    else's to read: no warning."""
    tmp, _url = desk
    open_dir = Path(tempfile.mkdtemp(prefix="dvault-pw-"))  # under /tmp (pytest's own folder is 0700)
    try:
        open_dir.chmod(0o755)
        pw = open_dir / "staff.pass"
        pw.write_text(STAFF_PW + "\n")
        pw.chmod(0o644)
        code, out, err = run(monkeypatch, capsys, "-q", "list", "--fields", "badge_name", "--identity", "staff.dvid",
                             "--passphrase-file", str(pw), "--reason", "desk")
        assert code == 0, err
        assert f"passphrase file {pw} can be read by others (mode 0644): chmod 600 {pw}" in err
        open_dir.chmod(0o700)
        code, out, err = run(monkeypatch, capsys, "list", "--fields", "badge_name", "--identity", "staff.dvid",
                             "--passphrase-file", str(pw), "--reason", "desk")
        assert code == 0 and "can be read by" not in err
        open_dir.chmod(0o755)
        pw.chmod(0o600)
        code, out, err = run(monkeypatch, capsys, "list", "--fields", "badge_name", "--identity", "staff.dvid",
                             "--passphrase-file", str(pw), "--reason", "desk")
        assert code == 0 and "can be read by" not in err
    finally:
        for f in open_dir.iterdir():
            f.unlink()
        open_dir.rmdir()


@pytest.mark.parametrize("where", ["keygen", "passphrase_identity", "init_identity", "init_recovery",
                                   "passphrase_recovery"])
def test_a_short_new_passphrase_is_refused(desk, monkeypatch, capsys, where: str) -> None:  # type: ignore[no-untyped-def]
    tmp, url = desk
    (tmp / "short.pass").write_text("abc\n")
    (tmp / "short.pass").chmod(0o600)
    args = {"keygen": ("keygen", "-o", "new.dvid", "--passphrase-file", "short.pass"),
            "passphrase_identity": ("passphrase", "identity", *STAFF, "--new-passphrase-file", "short.pass"),
            "init_identity": ("init", "--vault", str(tmp / "other.vault"), "--identity", "new.dvid",
                              "--identity-passphrase-file", "short.pass", "--passphrase-file", "recovery.pass"),
            "init_recovery": ("init", "--vault", str(tmp / "other.vault"), "--identity", "new.dvid",
                              "--identity-passphrase-file", "staff.pass", "--passphrase-file", "short.pass"),
            "passphrase_recovery": ("passphrase", "recovery", "--passphrase-file", "recovery.pass",
                                    "--new-passphrase-file", "short.pass")}[where]
    before = (tmp / "staff.dvid").read_bytes()
    code, _out, err = run(monkeypatch, capsys, *args)
    assert code == 1 and err.count("\n") == 1
    assert "the new passphrase is too short: use at least 12 characters" in err
    assert not (tmp / "new.dvid").exists() and not (tmp / "other.vault").exists()
    assert (tmp / "staff.dvid").read_bytes() == before
    with vault.open(url, RECOVERY):  # the recovery passphrase is unchanged
        pass


# -- 4. hints instead of dead ends ---------------------------------------------------------------
def test_user_add_without_a_terminal_names_yes(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    other = Identity.generate()
    code, _out, err = run(monkeypatch, capsys, "user", "add", other.public.to_line(), "--name", "noor",
                          "--role", "staff", *LEAD)
    assert code == 1 and "aborted" not in err and "--yes" in err and err.count("dvault: error:") == 1
    code, _out, err = run(monkeypatch, capsys, "user", "add", other.public.to_line(), "--name", "noor",
                          "--role", "staff", *LEAD, stdin="n\n")
    assert code == 1 and "aborted" in err  # a "no" typed by a person is still just that
    _code, badge, _err = run(monkeypatch, capsys, "find", "--email", "amira@example.org", "--pseudonyms-only", *LEAD,
                             "--reason", "r")
    for args in (("user", "remove", "sam", *LEAD), ("shred", badge.strip(), *LEAD, "--reason", "r")):
        code, _out, err = run(monkeypatch, capsys, *args)
        assert code == 1 and "aborted" not in err and "--yes" in err, (args, err)


@pytest.mark.parametrize("args", [("show", "BA-X", "--fields", "emial"), ("list", "--fields", "badge_nme"),
                                  ("find", "--email", "a@b.c", "--fields", "emial"),
                                  ("export", "--fields", "badge_nme", "--purpose", "badge"),
                                  ("edit", "BA-X", "--field", "emial"),
                                  ("reveal", "request", "BA-X", "legal_nme"),
                                  ("approve", "3f2a9c1e00aa11bb", "--field", "legal_nme", "--record", "AU-X")])
def test_an_unknown_field_gets_a_suggestion(desk, monkeypatch, capsys, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    reason = () if args[0] == "approve" else ("--reason", "desk")
    code, _out, err = run(monkeypatch, capsys, *args, *STAFF, *reason)
    assert code == 1 and err.count("\n") == 1, err
    assert "did you mean 'email'?" in err or "did you mean 'badge_name'?" in err or \
        "did you mean 'legal_name'?" in err


def test_an_unknown_field_in_the_shell_gets_a_suggestion(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _out, err = run(monkeypatch, capsys, "shell", *STAFF, "--reason", "desk", stdin="list badge_nme\nquit\n")
    assert code == 0 and "did you mean 'badge_name'?" in err


def test_a_mistyped_vault_path_is_said_before_any_prompt(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """No passphrase from a file or a variable, and stdin at its end: the command must stop
    at the missing vault, not at a passphrase prompt."""
    tmp, _url = desk
    for args in (("list", "--fields", "badge_name", "--identity", "staff.dvid", "--reason", "r"),
                 ("status", "--recovery"), ("passphrase", "recovery"),
                 ("user", "add", Identity.generate().public.to_line(), "--name", "x", "--role", "staff",
                  "--identity", "lead.dvid")):
        code, out, err = run(monkeypatch, capsys, *args, "--vault", str(tmp / "dd2062.vault"))
        assert code == 2, (args, err)
        assert f"no vault at {tmp / 'dd2062.vault'}" in err and "assphrase" not in err and "fingerprint" not in err


# -- 5. progress only for a person, --json for scripts -------------------------------------------
def test_audit_verify_rotate_and_requests_speak_json(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(monkeypatch, capsys, "audit", "verify", "--records", "--json", *LEAD)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["ok"] is True and doc["entries"] > 0 and doc["records"]["ok"] is True
    code, out, err = run(monkeypatch, capsys, "rotate", "--json", *LEAD)
    assert code == 0, err
    stats = json.loads(out)
    assert stats and all(isinstance(n, int) for n in stats.values()) and "reencrypted" in stats
    code, out, err = run(monkeypatch, capsys, "requests", "--json", *LEAD)
    assert code == 0 and out == ""  # no requests: no lines (JSON lines, one per request)


def test_audit_verify_json_of_a_damaged_log_exits_5(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa
    tmp, url = desk
    engine = sa.create_engine(url if "://" in url else f"sqlite:///{url}")
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE dv_audit SET detail = '{}' WHERE seq = 2")
    engine.dispose()
    code, out, err = run(monkeypatch, capsys, "audit", "verify", "--json", *LEAD)
    assert code == 5
    doc = json.loads(out)
    assert doc["ok"] is False and doc["first_bad"] == 2 and "dvault: error:" in err


def test_the_rotate_progress_hook_is_quiet_under_json(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """With stderr a terminal, rotate shows a bar; --json or --quiet keeps stderr free of it."""
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    for args, bar in ((("rotate",), True), (("rotate", "--json"), False), (("-q", "rotate"), False)):
        fake = Tty()
        monkeypatch.setattr(sys, "stderr", fake)
        monkeypatch.setattr(sys, "argv", ["dvault", *args, *LEAD])
        try:
            main()
        except SystemExit as e:
            assert not e.code
        assert ("rotating" in fake.getvalue()) is bar, (args, fake.getvalue())
        capsys.readouterr()


# -- 6. one-shot latency: the CLI's imports stay light -------------------------------------------
def test_the_cli_module_imports_no_database_or_crypto_library() -> None:
    """``dvault --version`` and ``--help`` must not pay for SQLAlchemy and the crypto
    libraries: proved by what ``import vault_cli.main`` loads, never by a timing."""
    probe = ("import sys, vault_cli.main\n"
             "heavy = ('sqlalchemy', 'cryptography', 'nacl', 'argon2', 'openpyxl', 'segno', 'psycopg')\n"
             "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}))\n")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
    for args in (["--version"], ["--help"], ["checkin", "--help"]):
        res = subprocess.run([sys.executable, "-X", "importtime", "-m", "vault_cli.main", *args],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert res.returncode == 0
        assert " sqlalchemy" not in res.stderr and " cryptography" not in res.stderr, args


def test_a_mapping_with_a_mistyped_field_gets_a_suggestion(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    tmp, _url = desk
    (tmp / "m.toml").write_text('[columns]\n"Name" = "legal_nme"\n"Mail" = "email"\n')
    (tmp / "in.csv").write_text("Name,Mail\nNadia Abdi,nadia@example.org\n")
    code, _out, err = run(monkeypatch, capsys, "import", "in.csv", "--mapping", "m.toml", "--dry-run", *LEAD,
                          "--reason", "desk")
    assert code == 1 and "maps to unknown field 'legal_nme'; did you mean 'legal_name'?" in err, err


# -- 4. the formula guard leaves phone numbers alone, through dvault export ---------------------
def test_export_keeps_phone_numbers_and_guards_formulas(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """A CSV export from dvault: '+93 70 123 4567' is written as typed (mail merge, travel
    lists), while a cell a spreadsheet would run still gets its apostrophe."""
    tmp, url = desk
    with vault.open(url, RECOVERY) as v:
        v.add({"legal_name": "Farid Ahmadi", "badge_name": "Farid", "phone": "+93 70 123 4567"})
        v.add({"legal_name": "Eve Formula", "badge_name": '=HYPERLINK("http://x","y")', "phone": "+1 (555) 123-4567"})
    code, _out, err = run(monkeypatch, capsys, "export", "--fields", "badge_name,phone", "--out", "desk.csv", *LEAD,
                          "--reason", "travel list")
    assert code == 0, err
    text = (tmp / "desk.csv").read_text("utf-8")
    assert '"Farid","+93 70 123 4567"' in text and '"+1 (555) 123-4567"' in text
    assert "'+93" not in text and "'+1" not in text
    assert '"\'=HYPERLINK(""http://x"",""y"")"' in text


# -- 10. the guide on PostgreSQL: the logins, the move's target, the re-pin ----------------------
def test_the_guide_says_where_a_move_goes_and_repins_after_it() -> None:
    """The guide runs on PostgreSQL too (tests/test_guide.py), where its move still makes a
    SQLite file: it says so and how to move on a server; the staff login (--app-role) is
    set up in the PostgreSQL section; each re-enrolled user pins the new vault first."""
    guide = (ROOT / "docs" / "guide.md").read_text("utf-8")
    section = guide[guide.index("## 10. "):guide.index("## 11. ")]
    assert "SQLite file" in section and "whatever\nthe old vault is" in section
    assert "`--to` the owner's URL" in section and "dvault db-roles" in section
    move_at = section.index("dvault move --to dd2026-new.vault")
    pin_at = section.index("dvault pin add", move_at)
    assert "--vault dd2026-new.vault --identity sam.dvid" in section[pin_at:section.index("\n", pin_at)]
    assert move_at < pin_at < section.index("dvault list --fields badge_name --vault dd2026-new.vault --identity sam")
    pg = guide[guide.index("## PostgreSQL on a shared server"):]
    assert "--app-role dvault_staff" in pg and "dvault db-roles" in pg


# -- 10. one-shot latency: what the entry point does, proved by state, never by a timing ------------
def test_a_one_shot_command_freezes_the_collector_before_it_ends(tmp_path: Path) -> None:
    """The console script's last act is gc.freeze(): the interpreter's final collection then
    skips every object the imports made (about 0.1 s of each command's wall time)."""
    probe = ("import atexit, gc, sys\n"
             "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0, flush=True))\n"
             "sys.argv = ['dvault', *sys.argv[1:]]\n"
             "import vault_cli\n"
             "vault_cli.run()\n")
    for args in (["--version"], ["find", "--email", "x@example.org", "--vault", str(tmp_path / "none.vault")]):
        res = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=ROOT,
                             timeout=60, env={**os.environ, "DVAULT_CONFIG": str(tmp_path / "none.toml")})
        assert "frozen True" in res.stdout, (args, res.stdout, res.stderr)


def test_the_unlock_preload_is_joined_and_the_collector_back_on_after_a_wrong_passphrase(  # type: ignore[no-untyped-def]
        desk, monkeypatch, capsys) -> None:
    """The library's modules load on a thread beside Argon2id with cycle collection off; a
    failed unlock (wrong passphrase) must leave no such thread and the collector on."""
    import gc
    import threading

    tmp, _url = desk
    (tmp / "wrong.pass").write_text("not the passphrase\n")
    (tmp / "wrong.pass").chmod(0o600)
    assert gc.isenabled()
    code, _out, err = run(monkeypatch, capsys, "find", "--email", "amira@example.org", "--identity", "staff.dvid",
                          "--passphrase-file", "wrong.pass", "--reason", "desk")
    assert code == 4 and "wrong passphrase" in err, err
    assert gc.isenabled()
    assert not [t for t in threading.enumerate() if t.name == "dvault-preload"]
    code, out, err = run(monkeypatch, capsys, "find", "--email", "amira@example.org", *STAFF, "--reason", "desk")
    assert code == 0 and "amira@example.org" in out and gc.isenabled(), err
