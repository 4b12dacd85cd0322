"""The desk on a real terminal (pexpect): find asks the passphrase before the term, check-in
from a USB scanner (which types the badge pseudonym and Enter), and progress bars that a
person at a terminal sees and a script (--json, --quiet) does not."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from vault.identity import Identity

import vault

pexpect = pytest.importorskip("pexpect", reason="pexpect is in the [test] extra")

ROOT = Path(__file__).resolve().parent.parent
REAL = vault.KdfParams(3, 64 * 1024, 4)  # the child process runs with the real floor
PW, RECOVERY = "staff secret words here", "recovery secret words here"


def _spawn(args: list[str], cwd: Path) -> pexpect.spawn:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVAULT_")}
    env.update({"PYTHONPATH": str(ROOT), "DVAULT_CONFIG": str(cwd / "none.toml"), "HOME": str(cwd), "TERM": "dumb",
                "DVAULT_URL": str(cwd / "t.vault")})
    return pexpect.spawn(sys.executable, ["-m", "vault_cli.main", *args], cwd=str(cwd), env=env,
                         encoding="utf-8", timeout=60)


@pytest.fixture
def desk(tmp_path: Path) -> tuple[Path, list[str]]:
    lead = Identity.generate()
    lead.save(tmp_path / "lead.dvid", PW, kdf=REAL)
    (tmp_path / "lead.pass").write_text(PW + "\n")
    (tmp_path / "lead.pass").chmod(0o600)
    with vault.create(tmp_path / "t.vault", RECOVERY, lead=lead, kdf=REAL) as v:
        rids = [v.add({"badge_name": b, "email": f"{b.lower()}@example.org"}) for b in ("Amira", "Kofi")]
        badges = [v._pseudonyms.issue(r, "badge") for r in rids]
        v.pin(tmp_path / "lead.dvid.vaults")
    return tmp_path, badges


def _finish(child: pexpect.spawn) -> str:
    child.expect(pexpect.EOF)
    out = child.before or ""
    child.close()
    return out


def test_find_asks_the_passphrase_before_the_term(desk) -> None:  # type: ignore[no-untyped-def]
    """Whoever types the passphrase at the first prompt must not see it on screen: the
    first prompt is the hidden passphrase prompt, the e-mail comes after."""
    tmp, badges = desk
    child = _spawn(["find", "--email", "--identity", "lead.dvid", "--reason", "is she registered?"], tmp)
    first = child.expect(["Passphrase for identity lead.dvid", "E-mail address", "email"])
    assert first == 0, "the first prompt must be the passphrase"
    child.sendline(PW)
    child.expect("E-mail address: ")
    child.sendline("AMIRA@example.org")
    child.expect(badges[0])
    transcript = (child.before or "") + _finish(child)
    assert child.exitstatus == 0 and PW not in transcript


def test_checkin_from_a_scanner_at_the_prompt(desk) -> None:  # type: ignore[no-untyped-def]
    tmp, badges = desk
    child = _spawn(["checkin", "--identity", "lead.dvid", "--passphrase-file", "lead.pass", "--reason", "desk"], tmp)
    child.expect("Scan or type badges")
    child.expect("badge: ")
    child.send(badges[1] + "\r")  # a scanner ends its typing with Enter (a carriage return on a terminal)
    child.expect(f"checked in: {badges[1]}  Kofi")
    child.expect("badge: ")
    child.send(badges[1] + "\r")
    child.expect("already checked in")
    child.expect("badge: ")
    child.send("\r")  # an empty line ends the queue
    _finish(child)
    assert child.exitstatus == 0


@pytest.mark.parametrize("extra,shown", [((), True), (("--json",), False), (("-q",), False)])
def test_import_progress_only_for_a_person(desk, extra: tuple[str, ...], shown: bool) -> None:  # type: ignore[no-untyped-def]
    tmp, _badges = desk
    child0 = _spawn(["sample-csv", "--rows", "30", "--out", "r.csv"], tmp)
    _finish(child0)
    quiet = [a for a in extra if a == "-q"]
    opts = [a for a in extra if a != "-q"]
    child = _spawn([*quiet, "import", "r.csv", "--preset", "kobo", *opts, "--identity", "lead.dvid",
                    "--passphrase-file", "lead.pass", "--reason", "desk"], tmp)
    transcript = _finish(child)
    assert child.exitstatus == 0, transcript
    assert ("importing" in transcript) is shown, transcript


@pytest.mark.parametrize("args,label", [(["export", "--fields", "badge_name", "--out", "e.csv"], "exporting"),
                                        (["rotate"], "rotating")])
def test_export_and_rotate_progress_on_a_terminal(desk, args: list[str], label: str) -> None:  # type: ignore[no-untyped-def]
    tmp, _badges = desk
    child = _spawn([*args, "--identity", "lead.dvid", "--passphrase-file", "lead.pass"]
                   + (["--reason", "desk"] if args[0] == "export" else []), tmp)
    transcript = _finish(child)
    assert child.exitstatus == 0 and label in transcript, transcript


@pytest.mark.parametrize("quiet", [False, True])
def test_backup_progress_on_a_terminal_and_quiet_under_q(desk, quiet: bool) -> None:  # type: ignore[no-untyped-def]
    """dvault backup shows a bar to a person at a terminal (as reindex, verify and import
    do), and none under -q; the backup is written either way."""
    tmp, _badges = desk
    child = _spawn([*(["-q"] if quiet else []), "backup", "b.dvbak", "--identity", "lead.dvid",
                    "--passphrase-file", "lead.pass"], tmp)
    transcript = _finish(child)
    assert child.exitstatus == 0, transcript
    assert ("backing up" in transcript) is not quiet, transcript
    assert "backed up 2 records" in transcript and (tmp / "b.dvbak").is_file()


@pytest.mark.parametrize("args,label", [(["reindex"], "re-indexing"), (["verify"], "Verifying")])
def test_reindex_and_verify_progress_on_a_terminal(desk, args: list[str], label: str) -> None:  # type: ignore[no-untyped-def]
    tmp, _badges = desk
    child = _spawn([*args, "--identity", "lead.dvid", "--passphrase-file", "lead.pass"], tmp)
    transcript = _finish(child)
    assert child.exitstatus == 0 and label in transcript, transcript


def test_move_progress_on_a_terminal(desk) -> None:  # type: ignore[no-untyped-def]
    tmp, _badges = desk
    (tmp / "recovery.pass").write_text(RECOVERY + "\n")
    (tmp / "new.pass").write_text("new recovery secret words\n")
    (tmp / "new-lead.pass").write_text("new lead secret words here\n")
    for name in ("recovery.pass", "new.pass", "new-lead.pass"):
        (tmp / name).chmod(0o600)
    child = _spawn(["move", "--passphrase-file", "recovery.pass", "--to", str(tmp / "new.vault"), "--identity",
                    "new-lead.dvid", "--new-passphrase-file", "new.pass", "--identity-passphrase-file",
                    "new-lead.pass", "--reason", "lead's laptop seized"], tmp)
    transcript = _finish(child)
    assert child.exitstatus == 0 and "moving" in transcript, transcript


def test_backup_through_a_pipe_has_no_bar(desk) -> None:  # type: ignore[no-untyped-def]
    """A script (stderr to a pipe) gets the result line and no bar."""
    import subprocess

    tmp, _badges = desk
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVAULT_")}
    env.update({"PYTHONPATH": str(ROOT), "DVAULT_CONFIG": str(tmp / "none.toml"), "HOME": str(tmp),
                "DVAULT_URL": str(tmp / "t.vault")})
    res = subprocess.run([sys.executable, "-m", "vault_cli.main", "backup", "b.dvbak", "--identity", "lead.dvid",
                          "--passphrase-file", "lead.pass"], cwd=tmp, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "backed up 2 records" in res.stdout and "backing up" not in res.stderr + res.stdout
