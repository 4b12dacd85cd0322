"""Security-lead commands: init, users, roles, rotation, break-glass approval, status."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import vault

from .common import (
    check_fields,
    check_vault_there,
    confirm,
    default_identity_path,
    emit,
    identity_path,
    note,
    pins_path,
    printable,
    shown_url,
    unlock,
    vault_options,
    warn,
    with_progress,
)
from .common import vault_url as resolve_vault_url
from .secrets_input import IDENTITY_ENV, NEW_ENV, RECOVERY_ENV, read_new_passphrase, read_passphrase
from .travel import remember_made, show_suspend_requests, suspend_requests

if TYPE_CHECKING:
    from vault.breakglass import RevealRequest
    from vault.identity import Identity

RECOVERY_ADVICE = """\
Recovery advice (read this once, carefully):
  - The recovery passphrase opens every key in this vault. Write it on paper, seal it,
    and keep it offline with a second trusted person. Do not store it on this laptop.
  - Your identity file is your daily key; its passphrase protects it if the laptop is
    seized. Keep an encrypted backup of it: the recovery passphrase reads and rotates
    everything, but only the lead's identity can enrol or revoke users.
  - Take an audit checkpoint at the end of every day: dvault audit checkpoint"""


def lead_identity(path: Path, passphrase_file: Path | None, prompt: str) -> tuple[Identity, str, bool]:
    """The lead's identity for a vault about to be made: loaded from ``path``, or, if
    there is no file there, a new one (its passphrase asked twice; the caller saves it
    once the vault is made). Returns (identity, its passphrase, whether it is new)."""
    from vault.identity import Identity

    new = not path.exists()
    if new:
        passphrase = read_new_passphrase(passphrase_file, prompt, env=IDENTITY_ENV[:1])
        return Identity.generate(), passphrase, True
    passphrase = read_passphrase(passphrase_file, prompt, env=IDENTITY_ENV[:1])
    return Identity.load(path, passphrase), passphrase, False


@click.command()
@click.option("--vault", "vault_url", required=True, metavar="URL",
              help="Where to create the vault (SQLite path or URL; a URL's password is never printed).")
@click.option("--identity", type=click.Path(dir_okay=False, path_type=Path),
              help="Your (the lead's) identity file; created if it does not exist.")
@click.option("--schema", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A custom schema TOML (default: the participant schema).")
@click.option("--population", type=click.IntRange(1, 10_000_000), help="Expected number of records.")
@click.option("--precise", is_flag=True,
              help="Large vaults only: plan each blind index on its own (faster searches; the tuple of a "
                   "record's buckets then singles it out, see docs/threat-model.md 7.2).")
@click.option("--name", default="lead", show_default=True, help="Your name or handle in the user table.")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Recovery passphrase from this file (else DVAULT_RECOVERY_PASSPHRASE or "
                   "DVAULT_PASSPHRASE, else a prompt).")
@click.option("--identity-passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Identity passphrase from this file (else DVAULT_IDENTITY_PASSPHRASE, else a prompt).")
@click.option("--app-role", "app_roles", multiple=True, metavar="ROLE",
              help="PostgreSQL: a database role the staff and tool clients log in as (repeatable; it must "
                   "exist). It may write records, index, pseudonyms and break-glass requests, append to the "
                   "audit log, and only read keys, slots, users and the vault's state.")
@click.option("--lead-role", "lead_roles", multiple=True, metavar="ROLE",
              help="PostgreSQL: a database role the lead's clients (and recovery) log in as (repeatable; it "
                   "must exist). It may write every table but only append to the audit log.")
@click.option("--shares", "k_of_n", metavar="K-of-N",
              help="Also split a recovery key into N SLIP-39 shares for trustees, any K of which open the vault "
                   "(e.g. 3-of-5; printed once). Later: dvault recovery split.")
@click.option("--slip39-passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --shares: protect them with this SLIP-39 passphrase too (or DVAULT_SLIP39_PASSPHRASE).")
def init(vault_url: str, identity: Path | None, schema: Path | None, population: int | None, precise: bool,
         name: str, passphrase_file: Path | None, identity_passphrase_file: Path | None,
         app_roles: tuple[str, ...], lead_roles: tuple[str, ...], k_of_n: str | None,
         slip39_passphrase_file: Path | None) -> None:
    """Create a vault and enrol you as its security lead. On PostgreSQL, run it as the
    database owner and name the role(s) staff clients use with --app-role and the lead's
    with --lead-role (see dvault db-roles): no role can change the audit log.

    Example: dvault init --vault dd2026.vault --identity ~/lead.dvid --population 150
    """
    from vault.postgres import check_roles, grant_roles
    from vault.shares import parse_k_of_n
    from vault.vault import discard_new

    from .common import need_stdout
    from .recovery import slip39_passphrase, split_now
    split = parse_k_of_n(k_of_n) if k_of_n is not None else None  # before anything is asked or written
    if split is not None:
        need_stdout("the recovery shares")  # their only copy: refused before anything is asked or written
    if app_roles or lead_roles:
        check_roles(vault_url, [*app_roles, *lead_roles])  # before anything is asked or written
    ident_path = identity or default_identity_path()
    lead, id_pw, new_identity = lead_identity(ident_path, identity_passphrase_file, "Passphrase for your identity")
    recovery = read_new_passphrase(passphrase_file, "Recovery passphrase for the new vault", env=RECOVERY_ENV)
    secret = slip39_passphrase(slip39_passphrase_file, False, confirm_it=True) if split else ""
    pins_before = _file_bytes(pins_path(ident_path))
    if new_identity:
        lead.save(ident_path, id_pw)
    try:
        v = vault.create(vault_url, recovery, schema=schema, population=population, precise=precise, lead=lead,
                         lead_name=name)
        try:
            if app_roles or lead_roles:
                grant_roles(vault_url, staff=app_roles, lead=lead_roles)
            pinned = v.pin(pins_path(ident_path), created=True)
            if split is not None:
                split_now(v, *split, secret)
        except BaseException:  # all or nothing: no vault whose set-up was left half done
            discard_new(v)
            _put_back(pins_path(ident_path), pins_before)  # nor a pin of a vault that is not there
            raise
        with v:
            click.echo(f"vault {v.id} created at {shown_url(vault_url)}")
            if pinned:
                note(f"its keys are pinned in {pins_path(ident_path)}")
    except BaseException:  # no vault: an identity made for it would only be a stray key file
        if new_identity:
            ident_path.unlink(missing_ok=True)
        raise
    remember_made(vault_url, ident_path if new_identity else None)
    _note_roles(app_roles, lead_roles)
    if new_identity:
        note(f"created identity {ident_path}")
    click.echo(f"your identity: {ident_path}  fingerprint {lead.public.fingerprint()}")
    note(RECOVERY_ADVICE)


def _file_bytes(path: Path) -> bytes | None:
    """A file's content, None if there is none (one that cannot be read stops the init here,
    before anything is made, as its pin would fail)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _put_back(path: Path, before: bytes | None) -> None:
    """The known-vaults file as it was before a failed init pinned its vault in it:
    removed if the init made it, else its earlier content put back (other vaults' pins)."""
    from vault._files import replace_private

    try:
        if before is None:
            path.unlink(missing_ok=True)
        elif _file_bytes(path) != before:
            replace_private(path, before)
    except (OSError, vault.VaultError):  # the failure being reported matters more; the file is named
        warn(f"dvault: warning: could not undo the pin of the discarded vault in {path}")


def _note_roles(staff: tuple[str, ...], lead: tuple[str, ...]) -> None:
    for role in staff:
        note(f"database role {role} (staff): records, index, pseudonyms, break-glass requests; the audit log "
             "only SELECT and INSERT; keys, slots, users and the vault's state read-only")
    for role in lead:
        note(f"database role {role} (lead): every table, but the audit log only SELECT and INSERT")


@click.command("db-roles")
@click.option("--vault", "vault_url", metavar="URL", help="The vault's PostgreSQL URL, as its tables' owner "
              "(or DVAULT_URL).")
@click.option("--app-role", "app_roles", multiple=True, metavar="ROLE",
              help="A database role staff and tool clients log in as (repeatable).")
@click.option("--lead-role", "lead_roles", multiple=True, metavar="ROLE",
              help="A database role the lead's clients log in as (repeatable).")
def db_roles(vault_url: str | None, app_roles: tuple[str, ...], lead_roles: tuple[str, ...]) -> None:
    """PostgreSQL: give database roles what staff (--app-role) or lead (--lead-role)
    clients need on an existing vault, and nothing more: whatever the role had on the
    vault's tables is revoked first, and the grants are refused (nothing changes) if the
    role would still hold more, e.g. through PUBLIC. Run it as the tables' owner, for a
    vault made before these roles existed, a moved vault, or a role added later. It
    needs no keys and writes no audit entry (grants are the owner's, outside the vault).

    Example: dvault db-roles --vault "$OWNER_URL" --app-role dvault_staff --lead-role dvault_lead
    """
    from vault.postgres import grant_roles

    if not app_roles and not lead_roles:
        raise click.UsageError("name at least one --app-role or --lead-role")
    url = resolve_vault_url(vault_url)
    grant_roles(url, staff=app_roles, lead=lead_roles)
    click.echo(f"database roles set on {shown_url(url)}")
    _note_roles(app_roles, lead_roles)


@click.group()
def user() -> None:
    """Enrol, list and revoke users (security lead).

    Example: dvault user add dvault1... --name sam --role staff
    """


@user.command("add")
@click.argument("public")
@click.option("--name", required=True, help="A short name or handle for the user table.")
@click.option("--role", required=True, help="staff, tool, lead or a custom role from the schema.")
@click.option("--yes", is_flag=True, help="Skip the fingerprint confirmation (only in scripts).")
@vault_options
def user_add(public: str, name: str, role: str, yes: bool, **kw: Any) -> None:
    """Enrol someone from their public line, after confirming the fingerprint by voice.

    Example: dvault user add dvault1abc... --name sam --role staff
    """
    from vault.identity import PublicIdentity

    pub = PublicIdentity.from_line(public)
    if not yes:
        check_vault_there(resolve_vault_url(kw["vault_url"]))  # a mistyped path before the question
        click.echo(f"fingerprint: {pub.fingerprint()}", err=True)
        confirm(f"Did {printable(name)} read you exactly this fingerprint?")
    with unlock(kw) as v:
        u = v.add_user(pub, name, role)
        click.echo(f"enrolled {printable(u.name)} ({u.user_id}) as {u.role}")
        note(f"Send them this too, for their first open: dvault pin add {v.pin_line} --vault URL "
             "(the vault's path or URL as they will open it)")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@click.option("--all", "show_all", is_flag=True, help="Include revoked users.")
@vault_options
def user_list(as_json: bool, show_all: bool, **kw: Any) -> None:
    """List enrolled users and their roles.

    Example: dvault user list --all
    """
    with unlock(kw) as v:
        rows = [{"id": u.user_id, "name": u.name, "role": u.role, "fingerprint": u.public.fingerprint()}
                for u in v.users(include_revoked=show_all)]
    emit(rows, ["id", "name", "role", "fingerprint"], as_json)


@user.command("remove")
@click.argument("user_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@vault_options
def user_remove(user_id: str, yes: bool, **kw: Any) -> None:
    """Revoke a user (by id or name: lost laptop, someone leaving) and rotate every class
    they held.

    Example: dvault user remove noor
    """
    with unlock(kw) as v:
        matches = [u for u in v.users() if user_id in (u.user_id, u.name)]
        if len(matches) != 1:
            raise vault.NotFound(f"no single enrolled user with id or name {user_id!r}")
        u = matches[0]
        if not yes:
            confirm(f"Revoke {printable(u.name)} ({u.user_id}) and rotate their keys now?")
        v.remove_user(u.user_id)
        note(f"revoked {printable(u.name)} ({u.user_id}); keys rotated")


@click.group()
def role() -> None:
    """Roles and the classes they hold.

    Example: dvault role list
    """


@role.command("list")
@click.option("--builtin", is_flag=True, help="Show the built-in participant schema's roles; no vault needed.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@vault_options
def role_list(builtin: bool, as_json: bool, **kw: Any) -> None:
    """List roles: classes they read, classes they may only write, pseudonym purposes.

    Example: dvault role list --builtin
    """
    if builtin:
        schema = vault.load_schema()
    else:
        with unlock(kw) as v:
            schema = v.schema
    rows = [{"role": r.name, "reads": ",".join(r.classes), "writes only": ",".join(r.write_only) or "-",
             "purposes": ",".join(r.purposes), "manages": r.manage} for r in schema.roles.values()]
    emit(rows, ["role", "reads", "writes only", "purposes", "manages"], as_json)


@click.command()
@click.option("--class", "classes", multiple=True, help="Rotate only this class (repeatable).")
@click.option("--reencrypt", is_flag=True, help="Also re-encrypt every field under fresh data keys.")
@click.option("--json", "as_json", is_flag=True, help="The counts as one JSON object.")
@vault_options
def rotate(classes: tuple[str, ...], reencrypt: bool, as_json: bool, **kw: Any) -> None:
    """Rotate class keys; resumable: if interrupted, run it again.

    Example: dvault rotate --reencrypt
    """
    import json as _json

    with unlock(kw) as v:
        for c in classes:
            if c not in v.schema.classes:
                from .common import did_you_mean
                raise click.UsageError(f"unknown class {printable(c)!r}{did_you_mean(c, v.schema.classes)}")
        stats = with_progress("rotating", v.count(),
                              lambda step: v.rotate(list(classes) or None, reencrypt=reencrypt, progress=step),
                              show=not as_json)
    if as_json:
        click.echo(_json.dumps(stats, sort_keys=True))
    else:
        click.echo(", ".join(f"{k} {n}" for k, n in stats.items()))
    if stats.get("unreadable"):
        warn(f"{stats['unreadable']} record row(s) do not authenticate and were left as they were (tampered or "
             "planted in the database?): dvault verify names them")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@vault_options
def requests(as_json: bool, **kw: Any) -> None:
    """List break-glass requests. The lead sees every request, who each record is (audit
    pseudonym and badge name), the reason, and warnings (a reason naming someone else, a
    request edited in the database); anyone else sees only their own.

    Example: dvault requests
    """
    with unlock(kw) as v:
        reqs = v.reveal_requests()
        lead = v.role.manage
        suspends = suspend_requests(v) if lead else []
    if lead:
        rows = [{"request": r.req_id, "by": printable(r.requester_name or r.requester), "record": r.record or "-",
                 "badge name": printable(r.badge_name or "-"), "field": r.field, "approved": r.approved,
                 "check": "WARNING" if (r.problem or r.flags) else "", "reason": printable(r.reason or "")}
                for r in reqs]
        emit(rows, ["request", "by", "record", "badge name", "field", "approved", "check", "reason"], as_json)
        for r in reqs:
            for w in _warnings(r):
                click.echo(f"dvault: warning: request {r.req_id}: {w}", err=True)
        show_suspend_requests(suspends, as_json)
        return
    rows = [{"request": r.req_id, "record": r.record or "-", "field": r.field, "approved": r.approved}
            for r in reqs]
    emit(rows, ["request", "record", "field", "approved"], as_json)


def _warnings(r: RevealRequest) -> list[str]:
    return ([r.problem] if r.problem else []) + list(r.flags)


@click.command()
@click.argument("request_id")
@click.option("--record", "expect_record", metavar="PSEUDONYM",
              help="The record you approve for (its audit pseudonym, as dvault requests shows it).")
@click.option("--field", "expect_field", metavar="FIELD", help="The field you approve (as dvault requests shows it).")
@click.option("--hours", type=click.FloatRange(0.01, 24 * 14), default=24, show_default=True,
              help="How long the grant stays valid.")
@click.option("--yes", is_flag=True, help="Do not ask (scripts): then --record and --field are required.")
@vault_options
def approve(request_id: str, expect_record: str | None, expect_field: str | None, hours: float, yes: bool,
            **kw: Any) -> None:
    """Approve a break-glass request: that one field, of that person, for a limited time.
    Shows who the record is (audit pseudonym, badge name), the field, the requester and
    the reason, and asks; the approval is refused if the request is about another record
    or field than the one confirmed, or was edited in the database.

    Example: dvault approve 3f2a9c1e00aa11bb --hours 2
    """
    from vault.breakglass import known_form
    if yes and not (expect_record and expect_field):
        raise click.UsageError("--yes needs --record and --field: the record and field you approve")
    known_form(request_id)  # before the passphrase is asked for; and never echoed as typed
    with unlock(kw) as v:
        if expect_field is not None:
            check_fields(v.schema, [expect_field])
        req = next((r for r in v.reveal_requests() if r.req_id == request_id), None)
        if req is None:
            raise vault.NotFound(f"no break-glass request {request_id}")
        click.echo(f"request   {req.req_id} by {printable(req.requester_name or req.requester)} ({req.requester})",
                   err=True)
        click.echo(f"record    {req.record or '-'}  badge name: {printable(req.badge_name or '-')}", err=True)
        click.echo(f"field     {req.field}", err=True)
        click.echo(f"reason    {printable(req.reason or '(cannot be read)')}", err=True)
        for w in _warnings(req):
            click.echo(f"dvault: warning: {w}", err=True)
        record, field = expect_record or req.record or "", expect_field or req.field
        if not yes and not req.problem:
            confirm(f"Approve {field} of {record} for {hours:g} h?")
        v.approve_reveal(request_id, int(hours * 3600), record=record, field=field)
    note(f"approved {request_id} for {hours:g} h")


@click.command()
@click.option("--population", type=click.IntRange(1, 10_000_000), help="Expected number of records (default: "
              "the current plan's).")
@click.option("--precise/--joint", default=None,
              help="Plan each blind index on its own (large vaults, faster searches; leaks more, see "
                   "docs/threat-model.md 7.2) or all jointly (the default). Default: keep the current choice.")
@vault_options
def reindex(population: int | None, precise: bool | None, **kw: Any) -> None:
    """Re-plan and rebuild the blind indexes (lead); resumable: if interrupted, run it again.

    Example: dvault reindex --population 150
    """
    with unlock(kw) as v:
        done = with_progress("re-indexing", v.count(),
                             lambda step: v.reindex(population=population, precise=precise, progress=step))
        st = v.status()["index"]
    click.echo(f"re-indexed {done} records: {st['plan']} plan for population {st['population']}, k {st['k']}, "
               f"bits {st['per_index']}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="JSON.")
@vault_options
def status(as_json: bool, **kw: Any) -> None:
    """Vault facts, accepted schema risks, problems found at open, and the canary count
    and alarms (for the lead).

    Example: dvault status
    """
    import json as _json
    with unlock(kw, advice=False) as v:  # status lists the advice among its warnings
        st = v.status()
        st["warnings"] = st["warnings"] + v.retention_warnings()  # counts only (vault.retention)
        alarms = v.alarms() if v.role.manage else []
        if v.role.manage:  # the lead alone can tell them: staff neither read nor count them
            st["canaries"] = v.canary_count()
            st["recovery_shares"] = _shares_line(v)
        if v.warnings:
            st["problems"] = list(v.warnings)
    st["alarms"] = len(alarms)
    if as_json:
        click.echo(_json.dumps(st, sort_keys=True, default=str))
        return
    for k, val in st.items():
        click.echo(f"{k:18} {val}")
    for w in st["warnings"]:
        click.echo(f"dvault: warning: {w}", err=True)
    if alarms:
        click.echo(click.style(f"dvault: ALARM: {len(alarms)} canary record access(es); see dvault audit show "
                               "--action alarm", fg="red"), err=True)


def _shares_line(v: vault.Vault) -> str:
    """k-of-n and when the recovery shares were made (dvault recovery show)."""
    try:
        info = v.recovery_shares()
    except vault.IntegrityError as e:
        return f"UNVERIFIED: {e}"
    if info is None:
        return "none"
    return f"{info['k']}-of-{info['n']}, made {info['made']}" + "".join(f"; {p}" for p in info.get("problems", []))


@click.group()
def passphrase() -> None:
    """Change a passphrase: your identity file's, or the vault's recovery passphrase.

    Example: dvault passphrase identity --identity ~/sam.dvid
    """


_NEW_PASSPHRASE_FILE = click.option(
    "--new-passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The new passphrase from this file (else DVAULT_NEW_PASSPHRASE, else a prompt, asked twice).")


def _new_passphrase(file: Path | None, old: str, prompt: str) -> str:
    new = read_new_passphrase(file, prompt, env=NEW_ENV)
    if new == old:
        raise click.UsageError("the new passphrase is the same as the current one")
    return new


@passphrase.command("identity")
@click.option("--identity", type=click.Path(dir_okay=False, path_type=Path),
              help="The identity file (or DVAULT_IDENTITY, or the config file, or the default place).")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The current passphrase from this file (else DVAULT_IDENTITY_PASSPHRASE or "
                   "DVAULT_PASSPHRASE, else a prompt).")
@_NEW_PASSPHRASE_FILE
def passphrase_identity(identity: Path | None, passphrase_file: Path | None, new_passphrase_file: Path | None) -> None:
    """Re-encrypt your identity file under a new passphrase. Its keys stay the same, so no
    vault changes and the lead has nothing to do. The file is replaced atomically.

    Example: dvault passphrase identity --identity ~/sam.dvid
    """
    from vault.identity import Identity

    path = identity_path(identity) or default_identity_path()
    if not path.exists():
        raise vault.NotFound(f"no identity file at {path}")
    old = read_passphrase(passphrase_file, f"Current passphrase for identity {path.name}", env=IDENTITY_ENV)
    ident = Identity.load(path, old)  # a wrong passphrase fails before the new one is asked for
    written = ident.replace_file(path, _new_passphrase(new_passphrase_file, old, "New passphrase for the identity"))
    # through a link, say which file now holds the new passphrase (the link is kept)
    shown = f"{path} (the file {written})" if path.is_symlink() else str(path)
    click.echo(f"identity {shown}: passphrase changed")


@passphrase.command("recovery")
@click.option("--vault", "vault_url", metavar="URL", help="Vault: SQLite path or database URL (or DVAULT_URL).")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The current recovery passphrase from this file (else DVAULT_RECOVERY_PASSPHRASE or "
                   "DVAULT_PASSPHRASE, else a prompt).")
@_NEW_PASSPHRASE_FILE
def passphrase_recovery(vault_url: str | None, passphrase_file: Path | None, new_passphrase_file: Path | None) -> None:
    """Set a new recovery passphrase for the vault (it needs the current one). The
    recovery slot also gets a new secret, so the old passphrase no longer opens this
    database; copies and backups made before still open with it. Logged as
    change_passphrase.

    Example: dvault passphrase recovery --vault dd2026.vault
    """
    url = resolve_vault_url(vault_url)
    check_vault_there(url)
    old = read_passphrase(passphrase_file, "Current vault recovery passphrase", env=RECOVERY_ENV)
    with vault.open(url, old) as v:  # a wrong passphrase fails before the new one is asked for
        new = _new_passphrase(new_passphrase_file, old, "New recovery passphrase")
        v.change_passphrase(new)
    click.echo("recovery passphrase changed")
    note("Backups made before this still open with the old passphrase: destroy them or keep them "
         "as safe as the new one.")


COMMANDS = [init, db_roles, user, role, rotate, requests, approve, reindex, status, passphrase]
