"""The dvault front end: demo runs end to end; errors are one line with a documented code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vault_cli.main import cli

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_end_to_end() -> None:
    res = CliRunner().invoke(cli, ["demo", "-n", "40"])
    assert res.exit_code == 0, res.output
    assert "first 20 records decrypt to exactly what was stored: True" in res.output
    assert "FOUND" not in res.output
    assert res.output.count("not found") == 4
    assert "39 records remain" in res.output
    assert "the old e-mail is back: True" in res.output  # a rolled-back row reads as genuine ...
    assert "names it: records differ from the audit log: 1 rolled back" in res.output  # ... the check finds it


def test_every_command_has_help_with_example() -> None:
    import click

    def walk(group: click.Group, path: list[str]):  # type: ignore[no-untyped-def]
        for name, cmd in group.commands.items():
            yield path + [name]
            if isinstance(cmd, click.Group):
                yield from walk(cmd, path + [name])

    paths = list(walk(cli, []))
    assert len(paths) > 25
    for path in paths:
        res = CliRunner().invoke(cli, [*path, "--help"])
        assert res.exit_code == 0 and "Example" in res.output, path


def test_usage_error_is_one_line_exit_1() -> None:
    for n in ("0", "2"):  # 1 and 2 once ended in an internal error: the demo updates one record, shreds another
        res = subprocess.run([sys.executable, "-m", "vault_cli.main", "demo", "-n", n],
                             capture_output=True, text=True, cwd=ROOT)
        assert res.returncode == 1
        assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("dvault: error:")
        assert "between 3 and" in res.stderr and "Traceback" not in res.stderr


def test_keygen_prompts_never_argv(tmp_path: Path) -> None:
    out = tmp_path / "me.dvid"
    res = CliRunner().invoke(cli, ["keygen", "-o", str(out)], input="s3cret pass words\ns3cret pass words\n")
    assert res.exit_code == 0, res.output
    assert "dvault1" in res.output and "fingerprint" in res.output and "s3cret" not in res.output
    from vault.identity import Identity
    ident = Identity.load(out, "s3cret pass words")
    assert ident.public.to_line() in res.output
    again = CliRunner().invoke(cli, ["keygen", "-o", str(out)], input="x\nx\n")
    assert again.exit_code != 0


def test_identity_passphrase_change(tmp_path: Path) -> None:
    from vault.identity import Identity
    import vault
    ident = Identity.generate()
    p = ident.save(tmp_path / "i.dvid", "old one")
    Identity.change_passphrase(p, "old one", "new one")
    assert Identity.load(p, "new one").public == ident.public
    import pytest
    with pytest.raises(vault.WrongPassphrase):
        Identity.load(p, "old one")
    assert [f.name for f in tmp_path.iterdir()] == ["i.dvid"]


def test_audit_commands(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import vault
    path = tmp_path / "a.vault"
    with vault.create(path, "recovery pass phrase") as v:
        rid = v.add({"legal_name": "Hidden Name", "email": "h@example.org"})
        v.get(rid)
    runner = CliRunner(env={"DVAULT_PASSPHRASE": "recovery pass phrase"})  # set for each command: read, it is gone
    r = runner.invoke(cli, ["audit", "show", "--vault", str(path)])
    assert r.exit_code == 0 and "read" in r.output and "Hidden" not in r.output
    r = runner.invoke(cli, ["audit", "show", "--vault", str(path), "--json", "--action", "read"])
    assert r.exit_code == 0 and all(json.loads(line)["action"] == "read" for line in r.output.splitlines())
    r = runner.invoke(cli, ["audit", "show", "--vault", str(path), "--summary"])
    assert r.exit_code == 0 and "identity" in r.output
    r = runner.invoke(cli, ["audit", "checkpoint", "--vault", str(path)])
    assert r.exit_code == 0
    cp = r.output.splitlines()[1].split()[-1]
    r = runner.invoke(cli, ["audit", "verify", "--vault", str(path), "--against", cp])
    assert r.exit_code == 0 and "verified" in r.output


def test_reindex_command(tmp_path: Path) -> None:
    """dvault reindex re-plans for a new head count (its progress bar is the library's
    progress callback, shown only on a terminal) and searches still find everyone."""
    import vault
    path = tmp_path / "r.vault"
    with vault.create(path, "recovery pass phrase", population=100) as v:
        v.add_many([{"email": f"p{i}@example.org", "legal_name": f"Person {i}"} for i in range(30)])
    runner = CliRunner(env={"DVAULT_PASSPHRASE": "recovery pass phrase"})
    r = runner.invoke(cli, ["reindex", "--population", "400", "--vault", str(path)])
    assert r.exit_code == 0 and "re-indexed 30 records" in r.output and "population 400" in r.output
    with vault.open(path, "recovery pass phrase") as v:
        assert len(v.find(email="p7@example.org")) == 1 and v.status()["index"]["population"] == 400


def test_audit_verify_exit_code_on_damage(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    import pytest

    import vault
    from vault_cli.main import main
    path = tmp_path / "d.vault"
    with vault.create(path, "recovery pass phrase") as v:
        v.get(v.add({"badge_name": "x"}))
    con = sqlite3.connect(path)
    con.execute("UPDATE dv_audit SET detail = '{}' WHERE seq = 2")
    con.commit()
    con.close()
    pw = tmp_path / "pw"
    pw.write_text("recovery pass phrase\n")
    monkeypatch.setattr(sys, "argv", ["dvault", "audit", "verify", "--vault", str(path), "--passphrase-file", str(pw)])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 5
    assert err.startswith("dvault: error: audit log damaged at entry 2") and err.count("\n") == 1


def test_quiet_completion_and_role_list(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    r = CliRunner().invoke(cli, ["role", "list", "--builtin"])
    assert r.exit_code == 0 and "staff" in r.output and "identity,risk" in r.output
    r = CliRunner(env={"_DVAULT_COMPLETE": "bash_source"}).invoke(cli, [], prog_name="dvault")
    assert "complete" in r.output.lower()
    r = CliRunner().invoke(cli, ["--quiet", "sample-csv", "--rows", "3", "--out", str(tmp_path / "s.csv")])
    assert r.exit_code == 0 and "wrote" not in r.output


def test_shell_session(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import io

    import vault
    from vault_cli.shell import VaultShell
    with vault.create(tmp_path / "s.vault", "pass phrase words") as v:
        v.add({"badge_name": "Amira", "email": "amira@example.org"})
        v.set_reason("desk")
        sh = VaultShell(v)
        sh.use_rawinput = False
        sh.stdin = io.StringIO("find email AMIRA@example.org\nlist badge_name\nfind nothing\nquit\n")
        sh.cmdloop()
        actions = [e["action"] for e in v.audit_entries()]
    assert actions.count("search") == 1 and "read_all" in actions


def _init_with_named_variables(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A clean environment (no config, no fallback variable), both named passphrase
    variables set, and `dvault init` of a vault with a new lead identity."""
    for name in ("DVAULT_PASSPHRASE", "DVAULT_IDENTITY", "DVAULT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("DVAULT_IDENTITY_PASSPHRASE", "identity pass")
    monkeypatch.setenv("DVAULT_RECOVERY_PASSPHRASE", "recovery pass")
    ident, url = tmp_path / "lead.dvid", tmp_path / "v.vault"
    r = CliRunner().invoke(cli, ["init", "--vault", str(url), "--identity", str(ident)])
    assert r.exit_code == 0, r.output
    return ident, url


def test_passphrase_variables_name_their_secret(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """DVAULT_IDENTITY_PASSPHRASE and DVAULT_RECOVERY_PASSPHRASE each mean one secret, for
    every command; DVAULT_PASSPHRASE is the fallback for whichever the command asks for."""
    import vault
    from vault.identity import Identity
    ident, url = _init_with_named_variables(tmp_path, monkeypatch)
    Identity.load(ident, "identity pass")
    vault.open(url, "recovery pass").close()
    as_lead = ["status", "--vault", str(url), "--identity", str(ident)]
    as_recovery = ["status", "--vault", str(url), "--recovery"]
    named = {"DVAULT_IDENTITY_PASSPHRASE": "identity pass", "DVAULT_RECOVERY_PASSPHRASE": "recovery pass"}
    for args in (as_lead, as_recovery):  # each command's variables set for it: read, they are gone
        assert CliRunner(env=named).invoke(cli, args).exit_code == 0
    for args in (as_lead, as_recovery):  # the named variables win
        assert CliRunner(env={**named, "DVAULT_PASSPHRASE": "neither of them"}).invoke(cli, args).exit_code == 0
    for secret, args in (("identity pass", as_lead), ("recovery pass", as_recovery)):
        assert CliRunner(env={"DVAULT_PASSPHRASE": secret}).invoke(cli, args).exit_code == 0  # the fallback
    assert CliRunner(env={"DVAULT_PASSPHRASE": "recovery pass"}).invoke(cli, as_lead).exit_code != 0


def test_cli_pins_each_vault_beside_the_identity(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """init records the new vault in <identity>.vaults (0600, no secret); later commands
    check it, so a vault whose keys changed under the same id is refused with one line."""
    import stat
    import vault
    ident, url = _init_with_named_variables(tmp_path, monkeypatch)
    pins = tmp_path / "lead.dvid.vaults"
    with vault.open(url, "recovery pass") as v:
        vid = v.id
    lines = [ln for ln in pins.read_text().splitlines() if not ln.startswith("#")]
    assert len(lines) == 2 and lines[0].startswith(vid + " ") and lines[1].startswith("at ") and lines[1].endswith(vid) and stat.S_IMODE(pins.stat().st_mode) == 0o600
    status = ["status", "--vault", str(url), "--identity", str(ident)]
    assert CliRunner(env={"DVAULT_IDENTITY_PASSPHRASE": "identity pass"}).invoke(cli, status).exit_code == 0
    pins.write_text(f"{vid} {'0' * 32}\n")  # as if the vault's keys were not those first seen
    from test_cli_errors import run
    monkeypatch.setenv("DVAULT_IDENTITY_PASSPHRASE", "identity pass")
    code, out, err = run(monkeypatch, capsys, *status)
    assert code == 5 and "keys differ" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_audit_verify_records(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """--records: exit 0 and one line when the rows match the log; after a record is put
    back to an older version behind the vault's back, exit 5, naming the record."""
    import sqlite3

    import pytest

    import vault
    from vault_cli.main import main
    path = tmp_path / "r.vault"
    with vault.create(path, "recovery pass phrase") as v:
        rid = v.add({"badge_name": "x", "risk_level": "high"})
        con = sqlite3.connect(path)
        (old,) = con.execute("SELECT data FROM dv_records").fetchone()
        v.update(rid, {"risk_level": "low"})
    pw = tmp_path / "pw"
    pw.write_text("recovery pass phrase\n")
    argv = ["dvault", "audit", "verify", "--records", "--vault", str(path), "--passphrase-file", str(pw)]
    monkeypatch.setattr(sys, "argv", argv)
    main()  # returns normally: exit 0
    out = capsys.readouterr().out
    assert "records match the audit log: 1 rows" in out
    con.execute("UPDATE dv_records SET data = ?", (old,))
    con.commit()
    con.close()
    with pytest.raises(SystemExit) as info:
        main()
    got = capsys.readouterr()
    assert info.value.code == 5
    assert f"rolled back:  record {rid}" in got.out and "missing:" in got.out
    assert got.err.startswith("dvault: error: records differ from the audit log: 1 rolled back") and got.err.count("\n") == 1
    monkeypatch.setattr(sys, "argv", argv + ["--accept"])  # a deliberate restore: taken as it is, once
    main()
    assert "accepted: these rows are the log's record states from now on" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", argv)
    main()
    assert "records match the audit log: 1 rows" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", [a for a in argv if a != "--records"] + ["--accept"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1 and "--accept goes with --records" in capsys.readouterr().err


def test_a_passphrase_variable_is_gone_once_read(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Read, the variable leaves os.environ (and the C environment): a later child process or
    plugin does not inherit it. Another passphrase variable, not read, stays."""
    ident, url = _init_with_named_variables(tmp_path, monkeypatch)
    assert "DVAULT_IDENTITY_PASSPHRASE" not in os.environ and "DVAULT_RECOVERY_PASSPHRASE" not in os.environ
    monkeypatch.setenv("DVAULT_IDENTITY_PASSPHRASE", "identity pass")
    monkeypatch.setenv("DVAULT_PASSPHRASE", "some other secret")
    assert CliRunner().invoke(cli, ["status", "--vault", str(url), "--identity", str(ident)]).exit_code == 0
    assert "DVAULT_IDENTITY_PASSPHRASE" not in os.environ and os.environ["DVAULT_PASSPHRASE"] == "some other secret"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/environ is Linux's")
def test_a_passphrase_variable_leaves_children_and_proc_environ(tmp_path: Path) -> None:
    """In a real process: after the read, neither a child's environment nor /proc/self/environ
    (the block the process started with, which unsetenv alone leaves as it was) holds it."""
    import subprocess
    script = ("import os, subprocess\n"
              "from vault_cli.secrets_input import IDENTITY_ENV, read_passphrase\n"
              "before = open('/proc/self/environ', 'rb').read().count(b'pass-in-env-7')\n"
              "assert read_passphrase(None, 'x', env=IDENTITY_ENV) == 'pass-in-env-7'\n"
              "after = open('/proc/self/environ', 'rb').read().count(b'pass-in-env-7')\n"
              "child = subprocess.run(['env'], capture_output=True).stdout.count(b'pass-in-env-7')\n"
              "print(before, after, child, 'DVAULT_IDENTITY_PASSPHRASE' in os.environ)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVAULT_")}
    env.update({"DVAULT_IDENTITY_PASSPHRASE": "pass-in-env-7", "PYTHONPATH": str(Path(__file__).parent.parent)})
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["1", "0", "0", "False"], out.stderr
