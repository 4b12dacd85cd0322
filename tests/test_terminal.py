"""Real terminal sessions (pexpect): `dvault init` and `dvault add` prompts, no echo of
passphrases, validation re-prompts, and nothing secret on the command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect", reason="pexpect is in the [test] extra")

ROOT = Path(__file__).resolve().parent.parent


def _spawn(args: list[str], cwd: Path, **extra: str) -> "pexpect.spawn":
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVAULT_")}
    env.update({"PYTHONPATH": str(ROOT), "DVAULT_CONFIG": str(cwd / "none.toml"), "HOME": str(cwd), "TERM": "dumb"})
    env.update(extra)
    return pexpect.spawn(sys.executable, ["-m", "vault_cli.main", *args], cwd=str(cwd), env=env,
                         encoding="utf-8", timeout=60)


def test_init_and_add_prompts(tmp_path: Path) -> None:
    lead_pw, recovery_pw = "lead secret words here", "recovery secret words here"
    child = _spawn(["init", "--vault", "t.vault", "--identity", "lead.dvid", "--population", "150"], tmp_path)
    child.expect("Passphrase for your identity")
    child.sendline(lead_pw)
    child.expect("Repeat for confirmation")
    child.sendline(lead_pw)
    child.expect("Recovery passphrase for the new vault")
    child.sendline(recovery_pw)
    child.expect("Repeat for confirmation")
    child.sendline(recovery_pw)
    child.expect("Recovery advice")
    child.expect(pexpect.EOF)
    transcript = child.before or ""
    child.close()
    assert child.exitstatus == 0
    assert lead_pw not in transcript and recovery_pw not in transcript  # no echo

    child = _spawn(["add", "--vault", "t.vault", "--identity", "lead.dvid", "--reason", "desk"], tmp_path)
    child.expect("Passphrase for identity")
    child.sendline(lead_pw)
    answers = {"badge_name": "Amira", "photo_consent": "maybe", "arrival": "08/11/2026", "email": "amira@example.org",
               "legal_name": "Amira Haddad", "risk_level": "extreme"}
    retries = {"photo_consent": "yes", "arrival": "2026-11-08", "risk_level": "high"}
    errors, last, retry = 0, "", False
    while True:
        i = child.expect([r"dvault: error: ([^\r\n]*)", r"\n(?!dvault)(\w+)(?: \[[^\]]*\])?: ",
                          r"Add this participant.*\? \[Y/n\]: "])
        if i == 0:
            errors += 1
            assert "Amira" not in child.match.group(1) and "maybe" not in child.match.group(1)
            retry = True
        elif i == 1:
            field = child.match.group(1)
            if retry and field == last:
                child.sendline(retries.pop(field))
            else:
                child.sendline(answers.get(field, ""))
            last, retry = field, False
        else:
            child.sendline("y")
            break
    child.expect(r"BA-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{3}")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert errors == 3  # bad bool, bad date, bad enum were each refused and asked again


def test_the_shell_locks_when_idle(tmp_path: Path) -> None:
    """After the idle time the shell closes the vault, clears the screen and asks for the
    passphrase again (not from the file given at the start, nor from a variable); Ctrl-D
    there ends it."""
    import vault
    from vault.identity import Identity
    real = vault.KdfParams(3, 64 * 1024, 4)  # the child process runs with the real floor
    lead = Identity.generate()
    lead.save(tmp_path / "lead.dvid", "lead secret words here", kdf=real)
    (tmp_path / "lead.pass").write_text("lead secret words here\n")
    with vault.create(tmp_path / "t.vault", "recovery secret words here", lead=lead, kdf=real) as v:
        v.add({"badge_name": "Amira"})
        v.pin(tmp_path / "lead.dvid.vaults")
    child = _spawn(["shell", "--vault", "t.vault", "--identity", "lead.dvid", "--passphrase-file", "lead.pass",
                    "--reason", "desk", "--idle-lock", "2s"], tmp_path,
                   DVAULT_PASSPHRASE="lead secret words here")  # set, not read (the file was): not for the unlock
    child.expect("dvault> ")
    child.sendline("list badge_name")
    child.expect("Amira")
    child.expect("dvault> ")
    child.expect(r"\x1b\[2J", timeout=10)  # nothing typed for 2 s: locked, the screen cleared
    child.expect("locked after 2 s without input: the vault is closed")
    assert child.expect(["Passphrase for identity lead.dvid", "dvault> "]) == 0  # asked, not unlocked from $DVAULT_*
    child.sendline("lead secret words here")
    child.expect("dvault> ")
    child.sendline("list badge_name")  # the same session, reopened, with its reason
    child.expect("Amira")
    child.expect("dvault> ")
    child.expect("locked after", timeout=10)
    child.expect("Passphrase for identity")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    with vault.open(tmp_path / "t.vault", "recovery secret words here") as v:
        opens = [e for e in v.audit_entries() if e["action"] == "open"]
        reads = [e for e in v.audit_entries() if e["action"] == "read_all"]
    assert len(reads) == 2 and len(opens) >= 3  # the unlock after the lock opened the vault again
