"""Entry point for ``dvault``. Exit codes: 0 ok, 1 usage, 2 not found, 3 access denied,
4 wrong passphrase, 5 integrity failure, 6 the disk, a file or the database cannot be used.

Importing this module loads click and the command definitions only: the library's heavy
parts (SQLAlchemy, the crypto libraries) load when a command first needs them, so that
``dvault --version`` and ``dvault --help`` answer at once (tests/test_cli_desk.py)."""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Any

import click

import vault

from .common import confirm, json_line, need_stdout, note, printable, table, unlock, vault_options

EXIT = {vault.NotFound: 2, vault.AccessDenied: 3, vault.WrongPassphrase: 4, vault.IntegrityError: 5,
        vault.Unavailable: 6}
#: OSError numbers that mean the storage is unusable (exit 6), not a wrong argument
_UNAVAILABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM, errno.EDQUOT})


def _exit_code(err: vault.VaultError) -> int:
    for cls, code in EXIT.items():
        if isinstance(err, cls):
            return code
    return 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(vault.__version__, prog_name="dvault")
@click.option("--debug", is_flag=True, help="Show tracebacks (never needed in normal use).")
@click.option("--quiet", "-q", is_flag=True, help="Only print results, no progress or notes.")
def cli(debug: bool, quiet: bool) -> None:
    """defenders-vault: an encrypted, audited store for participant records.

    Exit codes: 0 ok, 1 usage or invalid input, 2 not found, 3 access denied,
    4 wrong passphrase, 5 integrity failure (or dvault verify found a problem),
    6 the disk is full, the database or a file is read-only or unreadable, or the
    database connection was lost (nothing half-written). Shell completion for bash:
    eval "$(_DVAULT_COMPLETE=bash_source dvault)".

    \b
    Where dvault looks, first match wins:
      vault     --vault, DVAULT_URL, vault in the config file
      identity  --identity, DVAULT_IDENTITY, identity in the config file, the file
                dvault keygen writes by default (Linux: ~/.local/share/defenders-vault/
                identity.dvid; macOS: ~/Library/Application Support/defenders-vault/)
    The config file is DVAULT_CONFIG, else config.toml in the per-user config folder
    (Linux: ~/.config/defenders-vault/config.toml; macOS: ~/Library/Application
    Support/defenders-vault/config.toml). It must be yours and writable by you only.
    Its keys, all optional, each a string:

    \b
      vault = "/home/sam/dd2026.vault"      (or a database URL)
      identity = "/home/sam/sam.dvid"
      shell_idle_lock = "10m"               (dvault shell; default 5m)

    Example: dvault find --email --reason "is she registered?"
    """


@cli.command()
@click.option("--participants", "-n", default=150, show_default=True, help="How many synthetic people.")
def demo(participants: int) -> None:
    """Run an end-to-end demo on a throwaway SQLite vault in a temp dir.

    Example: dvault demo -n 150
    """
    from .demo import run_demo

    if not 3 <= participants <= 100_000:  # the demo updates one record and shreds another
        raise click.UsageError("--participants must be between 3 and 100000")
    run_demo(participants)


@cli.command()
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Identity file to create (default: the per-user data folder, where every command looks).")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the new passphrase from this file (else DVAULT_IDENTITY_PASSPHRASE or "
                   "DVAULT_PASSPHRASE, else a prompt). At least 12 characters.")
def keygen(out: Path | None, passphrase_file: Path | None) -> None:
    """Create your identity: keys to receive vault access, encrypted under a passphrase
    of at least 12 characters.

    Prints the public line to send to the security lead (on stdout, so it can be
    captured) and the fingerprint to read to them by voice. The file is created 0600
    and never overwritten. Without -o it goes to the per-user data folder (Linux:
    ~/.local/share/defenders-vault/identity.dvid), where every command finds it; a file
    made elsewhere is named with --identity, DVAULT_IDENTITY or identity = "..." in the
    config file (see dvault --help).

    Example: dvault keygen
    """
    from vault.identity import Identity

    from .common import config_path, default_identity_path, identity_path
    from .secrets_input import IDENTITY_ENV, read_new_passphrase
    from .travel import remember_written

    path = out or default_identity_path()
    if path.exists():
        raise click.UsageError(f"{path} already exists; refusing to overwrite an identity")
    pw = read_new_passphrase(passphrase_file, "Passphrase for the new identity", env=IDENTITY_ENV)
    ident = Identity.generate()
    ident.save(path, pw)
    remember_written(path, "identity")
    note(f"identity: {path}")
    _where_identity_is_found(path, out is None, identity_path(None), config_path())
    note(f"fingerprint (read it to the lead): {ident.public.fingerprint()}")
    note("public line to send to the lead:")
    click.echo(ident.public.to_line())


def _where_identity_is_found(path: Path, default: bool, chosen: Path | None, config: Path) -> None:
    """Tell the user whether later commands will find this identity by themselves."""
    import shlex

    if chosen is not None and chosen.resolve() == path.resolve():
        if default:
            note("dvault commands use it from now on; to use another file, give --identity or put "
                 f"identity = \"...\" in {config}")
        return
    if chosen is not None:  # DVAULT_IDENTITY or the config file names another one
        note(f"dvault: note: commands use {chosen} (DVAULT_IDENTITY or {config}), not this file: give "
             f"--identity {shlex.quote(str(path))}, or change that setting")
        return
    note(f"to use it without --identity: put identity = \"{path.resolve()}\" in {config}, "
         "or set DVAULT_IDENTITY")


@cli.group()
def audit() -> None:
    """Read, verify and checkpoint the audit log.

    Example: dvault audit verify --vault dd2026.vault --identity lead.dvid
    """


@audit.command("show")
@vault_options
@click.option("--actor", help="Only this user (id or name; see dvault user list --all).")
@click.option("--action", help="Only this action (read, search, update, alarm, ...).")
@click.option("--target", metavar="PSEUDONYM",
              help="Only entries about this participant: any pseudonym you hold (BA-..., AU-...). "
                   "Look one up first with: dvault find --email --pseudonyms-only")
@click.option("--since-days", type=click.FloatRange(min=0, max=36500, min_open=True), help="Only the last N days.")
@click.option("--since", "since_text", metavar="WHEN",
              help="Only from this UTC date or time (2026-11-20, 2026-11-20T14:30).")
@click.option("--until", "until_text", metavar="WHEN", help="Only up to this UTC date (the whole day) or time.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.option("--summary", is_flag=True, help="Who accessed which classes how often (verified entries only).")
def audit_show(actor: str | None, action: str | None, target: str | None, since_days: float | None,
               since_text: str | None, until_text: str | None, as_json: bool, summary: bool, **kw: Any) -> None:
    """Show audit entries (reasons only for the lead). An entry whose signature does not
    verify (forged in its actor's name, or edited) is marked and counted for no one.

    Example: dvault audit show --vault dd2026.vault --identity lead.dvid --since-days 7 --summary
    """
    import json as _json
    import time as _time

    from vault import audit as A

    if since_days and since_text:
        raise click.UsageError("give --since or --since-days, not both")
    need_stdout("the audit entries")
    if since_days is not None and since_days != since_days:  # NaN passes FloatRange
        raise click.UsageError("--since-days must be a number of days")
    since = int((_time.time() - since_days * 86400) * 1000) if since_days else _utc_ms("--since", since_text)
    until = _utc_ms("--until", until_text, end_of_day=True)
    if since is not None and until is not None and until < since:
        raise click.UsageError("--until is before --since")
    with unlock(kw) as v:
        names = {u.user_id: u.name for u in v.users(include_revoked=True)}
        if actor is not None and actor not in names:
            by_name = [i for i, n in names.items() if n == actor]
            actor = by_name[0] if len(by_name) == 1 else actor  # else an id outside the table (recovery)
        entries = v.audit_entries(actor=actor, action=action, target=target, since_ms=since, until_ms=until)
        if action == "alarm" and v.role.manage and target is None:  # the touches found in staff entries too
            entries = [{"action": "alarm", "reason": None, **a} for a in v.alarms()
                       if (actor is None or a["actor"] == actor) and (since is None or a["at"] >= since)
                       and (until is None or a["at"] <= until)]
        if summary:
            counts = A.summary(entries, {n: f.cls for n, f in v.schema.fields.items()})
            if as_json:
                click.echo(_json.dumps(counts, indent=2, sort_keys=True))
            elif counts:
                rows = [{"actor": who, "name": names.get(who, "(recovery passphrase)" if who == v.recovery_actor_id
                                                          else ""), **per} for who, per in sorted(counts.items())]
                click.echo(table(rows, ["actor", "name", *v.schema.classes]))
            else:
                note("no reads in this range")
        elif as_json:
            for e in entries:
                click.echo(json_line(e, sort_keys=True))
        else:
            _audit_table(entries)
        bad = [e for e in entries if not e.get("verified", True) and not e.get("quarantined")]
        if bad:
            click.echo(f"dvault: warning: {len(bad)} entr{'y fails' if len(bad) == 1 else 'ies fail'} their own check "
                       "(forged in the actor's name, or edited): shown as FORGED?, counted for no one; see dvault "
                       "audit verify", err=True)
        alarms = v.alarms() if v.role.manage else []
        if alarms:
            click.echo(f"dvault: warning: {len(alarms)} canary alarm(s) in the log", err=True)


def _audit_table(entries: list[dict[str, Any]]) -> None:
    """One line per entry; the seq and reason columns only for the lead, who alone sees entry
    numbers and can open reasons (free text from every user: shown through printable(), as
    every value is)."""
    import json as _json
    import time as _time

    rows = [{"seq": e.get("seq"), "time (UTC)": _time.strftime("%Y-%m-%d %H:%M:%S", _time.gmtime(e["at"] / 1000)),
             "actor": e["actor"], "action": e["action"], "target": e["target"] or "-",
             "detail": _json.dumps(_brief(e["detail"]), sort_keys=True, separators=(",", ":")), "reason": e["reason"],
             "check": "quarantined" if e.get("quarantined") else "FORGED?" if e.get("verified") is False else ""}
            for e in entries]
    numbered = ["seq"] if all("seq" in e for e in entries) else []
    flagged = ["check"] if any(r["check"] for r in rows) else []
    columns = numbered + flagged + ["time (UTC)", "actor", "action", "target", "detail"]
    if rows:
        click.echo(table(rows, columns + (["reason"] if any(e["reason"] for e in entries) else [])))
    else:
        note("no entries")


def _brief(detail: dict[str, Any]) -> dict[str, Any]:
    """A detail for one table line: record states (docs/format.md 13a) as counts, since an
    import's list holds one token per row; --json prints them whole."""
    state = detail.get("state")
    if not isinstance(state, dict):
        return detail
    return {**detail, "state": {k: len(v) for k, v in state.items() if isinstance(v, list)}}


def _utc_ms(option: str, text: str | None, *, end_of_day: bool = False) -> int | None:
    """Milliseconds since the epoch of a UTC date (its first or, for --until, its last
    millisecond) or date and time; the log's clock is UTC."""
    import datetime as _dt

    if text is None:
        return None
    try:
        if len(text.strip()) == 10:
            day = _dt.date.fromisoformat(text.strip())
            when = _dt.datetime(day.year, day.month, day.day, tzinfo=_dt.UTC)
            if end_of_day:
                return int(when.timestamp() * 1000) + 86_400_000 - 1
        else:
            when = _dt.datetime.fromisoformat(text.strip())
            if when.tzinfo is None:
                when = when.replace(tzinfo=_dt.UTC)
            if end_of_day:  # --until 08:50:42 (as the table shows it) covers that whole second
                return int(when.timestamp() * 1000) + _unit_ms(text.strip()) - 1
    except ValueError:
        raise click.UsageError(f"{option}: expected a UTC date or time like 2026-11-20 or 2026-11-20T14:30") from None
    return int(when.timestamp() * 1000)


def _unit_ms(text: str) -> int:
    """The length of the last unit a time was written to: hour, minute, second or finer."""
    import re as _re
    clock = _re.sub(r"(Z|[+-]\d\d(:?\d\d)?)$", "", text.partition("T")[2] or text.partition(" ")[2])
    if "." in clock or "," in clock:
        return 1
    return {0: 3_600_000, 1: 60_000}.get(clock.count(":"), 1000)


@audit.command("verify")
@vault_options
@click.option("--against", "checkpoint", help="A checkpoint (dvcp1:...) taken earlier.")
@click.option("--records", is_flag=True,
              help="Lead: also check every record row against the state the log gives it (rollback, deletion).")
@click.option("--accept", is_flag=True,
              help="With --records, after a deliberate restore: log the rows as they are now as their states.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout (the exit code is the same).")
def audit_verify(checkpoint: str | None, records: bool, accept: bool, as_json: bool, **kw: Any) -> None:
    """Verify the hash chain and signatures; name the first bad entry. Exit 5 if damaged.

    With --records, also find rows put back to an older version, rows no entry wrote,
    records deleted without an entry and rows that fail authentication (exit 5 if any).
    With --accept as well, the rows as they are now become the log's record states (one
    signed entry) and the exit is 0. With --json, one document on stdout, same exit code.

    Example: dvault audit verify --vault dd2026.vault --against dvcp1:120:abcd... --records
    """
    if accept and not records:
        raise click.UsageError("--accept goes with --records")
    with unlock(kw) as v:
        verdict = v.audit_verify(checkpoint)
        check = v.check_records(accept=accept) if records and verdict.ok else None
    if as_json:
        _verify_json(verdict, check, accept)
    elif not verdict.ok:
        raise vault.IntegrityError(str(verdict))
    else:
        _verify_lines(verdict, check, accept)
    if check is not None and not check.ok and not accept:
        raise vault.IntegrityError(str(check))


def _verify_lines(verdict: Any, check: Any, accept: bool) -> None:
    click.echo(str(verdict))
    if check is None:
        return
    for rid in check.rolled_back:
        click.echo(f"rolled back:  record {rid} holds a state that a later entry replaced or shredded")
    for rid in check.unlogged:
        click.echo(f"never logged: record {rid} holds a state no entry wrote")
    for seq in check.missing:
        click.echo(f"missing:      the state entry {seq} wrote is in no row")
    for rid in check.damaged:
        click.echo(f"damaged:      record {rid} fails authentication (edited in place, or malformed)")
    if check.ok or accept:
        click.echo(str(check))
    if accept and not check.ok:
        click.echo("accepted: these rows are the log's record states from now on")


def _verify_json(verdict: Any, check: Any, accept: bool) -> None:
    """The verdict (and the record check) as one JSON document; a damaged log still exits 5."""
    import json as _json

    doc: dict[str, Any] = {"ok": verdict.ok, "entries": verdict.entries, "first_bad": verdict.first_bad,
                           "problem": verdict.problem or None, "quarantined": list(verdict.quarantined),
                           "message": str(verdict)}
    if check is not None:
        doc["records"] = {"ok": check.ok, "rows": check.rows, "rolled_back": list(check.rolled_back),
                          "unlogged": list(check.unlogged), "missing": list(check.missing),
                          "damaged": list(check.damaged), "accepted": accept and not check.ok,
                          "message": str(check)}
    click.echo(_json.dumps(doc, sort_keys=True))
    if not verdict.ok:
        raise vault.IntegrityError(str(verdict))


@audit.command("quarantine")
@click.argument("seq", type=click.IntRange(min=1))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@vault_options
def audit_quarantine(seq: int, yes: bool, **kw: Any) -> None:
    """Lead: set aside one bad entry (forged, edited) that verify stops at, by a signed
    decision in the log. Verify and the record check then step over it and name it as
    quarantined; the entry itself stays. Look at it first (dvault audit verify,
    dvault audit show).

    Example: dvault audit quarantine 4182 --vault dd2026.vault --identity lead.dvid
    """
    import time as _time

    with unlock(kw) as v:
        found = v.audit_problem(seq)
        if found["problem"] is None:
            raise click.UsageError(f"entry {seq} verifies: there is nothing to quarantine")
        when = _time.strftime("%Y-%m-%d %H:%M:%S", _time.gmtime(found["at"] / 1000))
        click.echo(f"entry {found['seq']}: {found['action'] or '(malformed row)'} by {found['actor']} at {when} UTC: "
                   f"{found['problem']}", err=True)
        if not yes:
            confirm("Quarantine it (verify and the record check will step over it)?")
        v.quarantine(seq)
    click.echo(f"entry {found['seq']} quarantined")


@audit.command("checkpoint")
@vault_options
def audit_checkpoint(**kw: Any) -> None:
    """Print a signed head of the log; keep the short form on paper, send the long one away.

    Example: dvault audit checkpoint --vault dd2026.vault --identity lead.dvid
    """
    with unlock(kw) as v:
        cp = v.audit_checkpoint()
    click.echo(f"short (paper): {':'.join(cp.split(':')[:3])}")
    click.echo(f"signed:        {cp}")


def _register() -> None:
    from . import admin, backup, checkin, data, lifecycle, move, pins, records, recovery, samples, shell, travel, verify
    for mod in (admin, records, data, checkin, shell, move, pins, samples, travel, recovery, lifecycle, backup, verify):
        for cmd in mod.COMMANDS:
            cli.add_command(cmd)


_register()


def main() -> None:
    from .hardening import harden
    harden()  # also when run as ``python -m vault_cli.main`` (run() did it already otherwise)
    debug = "--debug" in sys.argv[1:]
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("dvault: error: aborted", err=True)
        sys.exit(1)
    except click.ClickException as e:
        click.echo(f"dvault: error: {printable(_usage_message(e))}", err=True)
        sys.exit(1)  # usage errors are 1 here (click uses 2, which we reserve for not found)
    except vault.VaultError as e:
        if debug:
            raise
        # printable: a message may quote what was typed (an id, a pseudonym, a file name);
        # a newline or terminal escape in it must not forge a second line or hide this one
        click.echo(f"dvault: error: {printable(str(e))}", err=True)
        sys.exit(_exit_code(e))
    except OSError as e:
        if debug:
            raise
        where = f" ({e.filename})" if isinstance(e.filename, str) else ""
        click.echo(f"dvault: error: {e.strerror or e.__class__.__name__}{printable(where)}", err=True)
        sys.exit(6 if e.errno in _UNAVAILABLE_ERRNOS else 1)
    except KeyboardInterrupt:
        click.echo("dvault: error: interrupted", err=True)
        sys.exit(130)
    except UnicodeError:  # an argument or variable whose bytes were not UTF-8 (or echoed back)
        if debug:
            raise
        click.echo("dvault: error: an argument, variable or file is not valid UTF-8 text", err=True)
        sys.exit(1)
    except Exception as e:  # a bug or an unmapped library error: its text may hold data
        if debug:
            raise
        click.echo(f"dvault: error: internal error ({type(e).__name__}); rerun with --debug for details",
                   err=True)
        sys.exit(1)


def _usage_message(e: click.ClickException) -> str:
    """click's message, except where it would repeat words the user typed as values: an
    unquoted name ("--name Nadia Abdi") surfaces as an unexpected extra argument."""
    msg = e.format_message()
    if isinstance(e, click.UsageError) and msg.startswith("Got unexpected extra argument"):
        return "unexpected extra arguments (quote values that contain spaces; they are not repeated here)"
    return msg


if __name__ == "__main__":
    from . import leave_fast

    try:
        main()
    finally:
        leave_fast()
