"""dvault init --shares, recovery split|show and recover, through the CLI on SQLite and
PostgreSQL: the lead is gone; k trustees' shares open the vault, a new lead takes over in
a new vault and re-enrols staff, the old lead's identity opens nothing there."""

from __future__ import annotations

import errno
import io
import os
import sys
from pathlib import Path

import pytest
from vault.identity import Identity

import vault
from conftest import run_dvault

LEAD_PW, STAFF_PW, OMAR_PW = "lead pass words here", "staff pass words here", "omar pass words here"
RECOVERY, RECOVERY2 = "recovery pass words", "another recovery phrase"
SECRET = "amira.cli@example.org"


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str,
        stdin: str | None = None) -> tuple[int, str, str]:
    return run_dvault(monkeypatch, capsys, *args, stdin=stdin)


@pytest.fixture
def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for k in [k for k in os.environ if k.startswith("DVAULT_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.chdir(tmp_path)
    os.umask(0o077)
    for name, pw in (("lead", LEAD_PW), ("staff", STAFF_PW), ("omar", OMAR_PW), ("recovery", RECOVERY),
                     ("recovery2", RECOVERY2)):
        (tmp_path / f"{name}.pass").write_text(pw + "\n")
    return tmp_path


def _shares(out: str) -> list[str]:
    return [line for line in out.splitlines() if len(line.split()) == 33]


def test_recovery_and_reenrolment_end_to_end(desk: Path, url: str, url2: str, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    lead_opts = ("--vault", url, "--identity", "lead.dvid", "--passphrase-file", "lead.pass")
    code, out, err = run(monkeypatch, capsys, "init", "--vault", url, "--identity", "lead.dvid",
                         "--identity-passphrase-file", "lead.pass", "--passphrase-file", "recovery.pass",
                         "--shares", "2-of-3")
    assert code == 0, err
    shares = _shares(out)
    assert len(shares) == 3 and "any 2 of them open every key" in err
    staff = Identity.generate()
    staff.save(desk / "staff.dvid", STAFF_PW)
    with vault.open(url, identity=Identity.load(desk / "lead.dvid", LEAD_PW)) as v:
        v.add_user(staff.public, "sam", "staff")
        v.add({"legal_name": "Amira Haddad", "email": SECRET})
    code, out, err = run(monkeypatch, capsys, "recovery", "show", *lead_opts)
    assert code == 0 and out.startswith("recovery shares   2-of-3, made 20"), err

    # a mistyped word: named by share and word number, nothing made
    words = shares[2].split()
    words[6] = "academic" if words[6] != "academic" else "acid"
    (desk / "typo.txt").write_text(shares[0] + "\n" + " ".join(words) + "\n")
    base = ("recover", "--vault", url, "--to", url2, "--identity", "omar.dvid", "--name", "omar",
            "--new-passphrase-file", "recovery2.pass", "--identity-passphrase-file", "omar.pass",
            "--reason", "the lead is detained")
    code, out, err = run(monkeypatch, capsys, *base, "--shares-file", "typo.txt")
    assert (code, err.strip()) == (1, "dvault: error: share 2, word 7 is wrong (the share's checksum fails; "
                                      "check that word against the paper)")
    assert not (desk / "omar.dvid").exists()
    # typed one by one (no terminal: one a line), checked as they come
    code, out, err = run(monkeypatch, capsys, *base, stdin=shares[0] + "\n" + " ".join(words) + "\n")
    assert code == 1 and "share 2, word 7 is wrong" in err and "needs 2 of its 3 shares" in err

    (desk / "two.txt").write_text(shares[2] + "\n" + shares[0] + "\n")
    code, out, err = run(monkeypatch, capsys, *base, "--shares-file", "two.txt")
    assert code == 0 and out.startswith("moved 1 participants into vault "), err
    runs = [" ".join(s.split()[i:i + 3]) for s in shares for i in range(3, 30)]
    assert not any(r in out + err for r in runs)  # the shares are not echoed
    assert f"dvault user add {staff.public.to_line()} --name sam --role staff" in err
    pin_line = next(line for line in out.splitlines() if line.startswith("pin line: ")).removeprefix("pin line: ")

    # the new lead re-enrols sam; sam pins the new vault and reads; the old lead is refused
    new_lead = ("--vault", url2, "--identity", "omar.dvid", "--passphrase-file", "omar.pass")
    code, out, err = run(monkeypatch, capsys, "user", "add", staff.public.to_line(), "--name", "sam", "--role",
                         "staff", "--yes", *new_lead)
    assert code == 0, err
    code, out, err = run(monkeypatch, capsys, "pin", "add", *pin_line.split(), "--vault", url2,
                         "--identity", "staff.dvid")
    assert code == 0, err
    code, out, err = run(monkeypatch, capsys, "list", "--fields", "email", "--vault", url2, "--identity", "staff.dvid",
                         "--passphrase-file", "staff.pass", "--reason", "desk check")
    assert code == 0 and SECRET in out, err
    code, out, err = run(monkeypatch, capsys, "status", "--vault", url2, "--identity", "lead.dvid",
                         "--passphrase-file", "lead.pass")
    assert code == 3, err
    # the old vault logged the recovery
    with vault.open(url, RECOVERY) as v:
        assert [e["detail"]["k"] for e in v.audit_entries(action="recovery_shares_used")] == [2]
        assert [e["detail"]["n"] for e in v.audit_entries(action="recovery_split")] == [3]


def test_resplit_and_refusals_through_the_cli(desk: Path, url: str, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    lead = Identity.generate()
    lead.save(desk / "lead.dvid", LEAD_PW)
    vault.create(url, RECOVERY, lead=lead).close()
    lead_opts = ("--vault", url, "--identity", "lead.dvid", "--passphrase-file", "lead.pass")
    code, out, _ = run(monkeypatch, capsys, "recovery", "show", *lead_opts)
    assert code == 0 and out.startswith("no recovery shares")
    code, out, err = run(monkeypatch, capsys, "recovery", "split", "--shares", "2-of-3", *lead_opts)
    assert code == 0, err
    old = _shares(out)
    code, out, err = run(monkeypatch, capsys, "recovery", "split", "--shares", "3-of-5", *lead_opts, stdin="n\n")
    assert code == 1 and "Replace the current 2-of-3 shares" in err
    code, out, err = run(monkeypatch, capsys, "recovery", "split", "--shares", "3-of-5", *lead_opts, stdin="y\n")
    assert code == 0 and "the earlier 2-of-3 shares" in err and "open nothing now" in err, err
    new = _shares(out)
    assert len(new) == 5
    code, out, err = run(monkeypatch, capsys, "recovery", "show", *lead_opts)
    assert out.startswith("recovery shares   3-of-5, made ")
    code, out, err = run(monkeypatch, capsys, "status", *lead_opts)
    assert code == 0 and "recovery_shares    3-of-5, made 20" in out, out
    (desk / "old.txt").write_text("\n".join(old[:2]) + "\n")
    base = ("recover", "--vault", url, "--to", str(desk / "new.vault"), "--identity", "omar.dvid",
            "--new-passphrase-file", "recovery2.pass", "--identity-passphrase-file", "omar.pass", "--reason", "r")
    code, out, err = run(monkeypatch, capsys, *base, "--shares-file", "old.txt")
    assert code == 1 and "share 1 is from an earlier split of this vault's recovery" in err, err
    monkeypatch.setenv("DVAULT_RECOVERY_SHARES", "\n".join(new[:2]))
    code, out, err = run(monkeypatch, capsys, *base)
    assert code == 1 and err.strip() == "dvault: error: 2 share(s) given; this split needs 3"
    assert "DVAULT_RECOVERY_SHARES" not in os.environ  # consumed when read
    code, out, err = run(monkeypatch, capsys, "recovery", "split", "--shares", "1-of-3", *lead_opts)
    assert code == 1 and "2 <= k <= n <= 16" in err
    code, out, err = run(monkeypatch, capsys, "recovery", "split", "--shares", "2-of-3", "--vault", url,
                         "--recovery", "--passphrase-file", "recovery.pass", "--yes")
    assert code == 0 and len(_shares(out)) == 3, err


def test_shares_are_typed_one_by_one_at_a_terminal(tmp_path: Path) -> None:
    """A real terminal: no echo, each share checked as it is entered, a wrong one asked again
    with its share and word number named."""
    pexpect = pytest.importorskip("pexpect", reason="pexpect is in the [test] extra")
    from vault import _format as F
    real = F.KdfParams(3, 65536, 4)  # the subprocess has the real floor
    lead = Identity.generate()
    with vault.create(tmp_path / "t.vault", RECOVERY, lead=lead, kdf=real) as v:
        v.add({"legal_name": "Amira Haddad", "email": SECRET})
        shares = v.split_recovery(2, 3, kdf=real)
    for name, pw in (("omar", OMAR_PW), ("recovery2", RECOVERY2)):
        (tmp_path / f"{name}.pass").write_text(pw + "\n")
        (tmp_path / f"{name}.pass").chmod(0o600)
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVAULT_")}
    env.update({"PYTHONPATH": str(root), "DVAULT_CONFIG": str(tmp_path / "none.toml"), "HOME": str(tmp_path),
                "TERM": "dumb"})
    child = pexpect.spawn(sys.executable, ["-m", "vault_cli.main", "recover", "--vault", "t.vault", "--to", "n.vault",
                                           "--identity", "omar.dvid", "--new-passphrase-file", "recovery2.pass",
                                           "--identity-passphrase-file", "omar.pass", "--reason", "lead detained"],
                          cwd=str(tmp_path), env=env, encoding="utf-8", timeout=120)
    import io
    seen = io.StringIO()
    child.logfile_read = seen  # everything the terminal showed
    child.expect("needs 2 of its 3 shares")
    child.expect("Share 1 of 2")
    words = shares[1].split()
    words[20] = "acid" if words[20] != "acid" else "academic"
    child.sendline(" ".join(words))
    child.expect(r"share 1, word 21 is wrong .*; type share 1 again")
    child.expect("Share 1 of 2")
    child.sendline(shares[1])
    child.expect("Share 2 of 2")
    child.sendline(shares[1])  # the same trustee twice
    child.expect("share 2 is the same trustee's share as share 1")
    child.expect("Share 2 of 2")
    child.sendline(shares[2])
    child.expect("moved 1 participants into vault")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    shown = seen.getvalue()
    assert "Share 2 of 2" in shown
    assert not any(" ".join(s.split()[i:i + 3]) in shown for s in shares for i in range(3, 30))  # no echo


class _FullStdout(io.StringIO):
    """A stdout whose writes fail as on a full disk (`> /dev/full`)."""

    def write(self, s: str) -> int:  # type: ignore[override]
        raise OSError(errno.ENOSPC, "No space left on device")


def _one_clear_line(err: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("dvault: warning")]
    assert lines and lines[-1].startswith("dvault: error: "), err
    assert "Traceback" not in err and "internal error" not in err, err


@pytest.mark.parametrize("how", ["closed", "full"])
def test_a_split_that_cannot_write_its_shares_keeps_the_old_ones(desk: Path, url: str, monkeypatch, capsys,
                                                                 how: str) -> None:  # type: ignore[no-untyped-def]
    """`dvault recovery split ... >&-` or `> /dev/full`: the split committed first, so the
    earlier shares opened nothing and the new ones were lost (exit 0 when closed)."""
    lead = Identity.generate()
    lead.save(desk / "lead.dvid", LEAD_PW)
    vault.create(url, RECOVERY, lead=lead).close()
    lead_opts = ("--vault", url, "--identity", "lead.dvid", "--passphrase-file", "lead.pass")
    code, out, err = run(monkeypatch, capsys, "recovery", "split", "--shares", "2-of-3", *lead_opts)
    assert code == 0, err
    old = _shares(out)
    monkeypatch.setattr(sys, "stdout", None if how == "closed" else _FullStdout())
    code, _, err = run(monkeypatch, capsys, "recovery", "split", "--shares", "2-of-3", "--yes", *lead_opts)
    monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    assert code == (1 if how == "closed" else 6), err
    _one_clear_line(err)
    with vault.open_with_shares(url, old[:2]) as v:
        assert v.recovery_shares()["made"] is not None  # type: ignore[index]
        assert [e["detail"]["n"] for e in v.audit_entries(action="recovery_split")] == [3]


def test_a_split_whose_delivery_fails_is_rolled_back_and_the_handle_stays_usable(url: str) -> None:
    """Vault.split_recovery(deliver=...): the delivery runs before the commit; when it
    raises, the earlier shares still open the vault and the handle's keys in memory are
    the database's (a later write and a later split work)."""
    lead = Identity.generate()
    with vault.create(url, RECOVERY, lead=lead) as v:
        old = v.split_recovery(2, 3)

        def lost(_: list[str]) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")
        with pytest.raises(OSError):
            v.split_recovery(2, 3, deliver=lost)
        rid = v.add({"legal_name": "Amira Haddad", "email": SECRET})
        got: list[str] = []
        v.split_recovery(3, 4, deliver=got.extend)
    with vault.open_with_shares(url, got[:3]) as v:
        assert v.get(rid, fields=["email"])["email"] == SECRET
    with pytest.raises(vault.BadShare):
        vault.open_with_shares(url, old[:2])


@pytest.mark.parametrize("how", ["closed", "full"])
def test_init_with_shares_that_cannot_be_written_leaves_nothing(desk: Path, monkeypatch, capsys,
                                                                how: str) -> None:  # type: ignore[no-untyped-def]
    """`dvault init --shares 2-of-3 >&-` / `> /dev/full` left a set-aside vault, a pins file
    and the new identity behind."""
    before = sorted(p.name for p in desk.iterdir())
    monkeypatch.setattr(sys, "stdout", None if how == "closed" else _FullStdout())
    code, _, err = run(monkeypatch, capsys, "init", "--vault", "n.vault", "--identity", "lead.dvid",
                       "--identity-passphrase-file", "lead.pass", "--passphrase-file", "recovery.pass",
                       "--shares", "2-of-3")
    monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    assert code == (1 if how == "closed" else 6), err
    _one_clear_line(err)
    assert sorted(p.name for p in desk.iterdir()) == before


def test_a_failed_init_puts_back_the_pins_file_it_added_to(desk: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """The known-vaults file held another vault's pin: a failed init leaves it as it was."""
    code, out, err = run(monkeypatch, capsys, "init", "--vault", "a.vault", "--identity", "lead.dvid",
                         "--identity-passphrase-file", "lead.pass", "--passphrase-file", "recovery.pass")
    assert code == 0, err
    pins = (desk / "lead.dvid.vaults").read_bytes()
    monkeypatch.setattr(sys, "stdout", _FullStdout())
    code, _, err = run(monkeypatch, capsys, "init", "--vault", "b.vault", "--identity", "lead.dvid",
                       "--identity-passphrase-file", "lead.pass", "--passphrase-file", "recovery.pass",
                       "--shares", "2-of-3")
    monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    assert code == 6, err
    assert (desk / "lead.dvid.vaults").read_bytes() == pins and not (desk / "b.vault").exists()
