"""Import and export: the two places where plaintext crosses the vault's boundary."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import vault

from .common import (
    confirm,
    need_stdout,
    note,
    open_vault_as,
    pins_path,
    printable,
    reason_option,
    set_reason,
    unlock,
    vault_options,
    warn,
    with_progress,
)
from .secrets_input import IDENTITY_ENV, read_passphrase
from .travel import remember_written

if TYPE_CHECKING:
    from vault.exporter import Opened
    from vault.identity import Identity, PublicIdentity


@click.command(name="import")
@click.argument("csv_file", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML mapping of columns to schema fields (docs/mapping.md).")
@click.option("--preset", type=click.Choice(["kobo", "kobo-labels", "civicrm"]),
              help="A shipped mapping: KoboToolbox (any header setting) or CiviCRM.")
@click.option("--encoding", help="Text encoding of a CSV (default UTF-8; e.g. cp1252 for Excel on Windows).")
@click.option("--date-format", "date_formats", multiple=True, metavar="FMT",
              help="Accept dates in this strptime format too, e.g. %d/%m/%Y (repeatable; replaces the mapping's).")
@click.option("--dry-run", is_flag=True, help="Check every row and report; change nothing.")
@click.option("--skip-bad", is_flag=True, help="Import the good rows even if some are bad.")
@click.option("--update", "apply_updates", is_flag=True,
              help="Also apply the changes of rows whose source id names a stored record.")
@click.option("--include-unapproved", is_flag=True, help="Import rows the source marks as not approved too.")
@click.option("--json", "as_json", is_flag=True, help="A JSON report on stdout: one entry per row, no values.")
@click.option("--shred-source", is_flag=True,
              help="Once every row is in (or already was), overwrite the file and delete it.")
@vault_options
@reason_option
def import_(csv_file: Path, mapping: Path | None, preset: str | None, encoding: str | None,
            date_formats: tuple[str, ...], dry_run: bool, skip_bad: bool, apply_updates: bool,
            include_unapproved: bool, as_json: bool, shred_source: bool, **kw: Any) -> None:
    """Import a registration export: CSV (any encoding, ';' or ',') or XLSX, with a mapping
    or a shipped preset (KoboToolbox, CiviCRM).

    Every bad row is reported with its line number, and every column nothing uses is
    named; nothing is imported until all rows are fixed or --skip-bad is given. Then all
    good rows go in one transaction. A row whose person is already in the vault (same
    e-mail, passport number, or name and birth date) is refused; a row whose source id
    (Kobo _uuid, CiviCRM contact id) names a stored record is compared with it: --dry-run
    lists the fields that would change, --update applies them (audited as updates).

    The export is plaintext: --shred-source overwrites and deletes it once the import
    has taken every row (a refused row keeps it, to be fixed or downloaded again).

    Example: dvault import kobo.xlsx --preset kobo --dry-run
    """
    from . import import_report as R

    if shred_source and dry_run:
        raise click.UsageError("--shred-source deletes the file after an import: not with --dry-run")
    from .shred import shreddable

    source = shreddable(csv_file) if shred_source else csv_file  # checked before anything is written
    data = source.read_bytes()
    with unlock(kw) as v:
        set_reason(v, kw["reason"])
        v.require_writable("import")  # a refusal before any report on the file
        m, notes = R.choose_mapping(data, mapping, preset, encoding, date_formats, v.schema)
        plan, unchecked = R.plan(v, data, m, encoding, include_unapproved)
        report = R.Report(csv_file.name, plan, dry_run=dry_run, apply_updates=apply_updates,
                          skip_bad=skip_bad, notes=notes, unchecked=unchecked)
        if not (dry_run or (plan.errors and not skip_bad) or report.nothing_to_do()):
            rows = [values for _line, values in plan.rows]
            updates = [(u.record_id, dict(u.values)) for u in plan.updates] if apply_updates else []
            ids = with_progress("importing", len(rows),
                                lambda step: v.import_rows(rows, progress=step, updates=updates),
                                show=not as_json) if rows else v.import_rows([], updates=updates)
            report.done(ids, [u.line for u in plan.updates] if apply_updates else [])
        report.finish(as_json)
    if shred_source:
        _shred_source(csv_file, source, plan, apply_updates)


def _shred_source(path: Path, real: Path, plan: Any, applied: bool) -> None:
    """Overwrite and delete the imported file (``real``: the file ``path`` names, a link
    resolved; the link goes too), unless a row of it is not in the vault (refused as bad,
    or a change not applied): that row's only copy may be this file. The rows are
    committed by now: a shred that fails is a warning and exit 0, not an error, whose
    exit code would say that nothing was written."""
    left = len([e for e in plan.errors if e.kind != "in_vault"]) + (0 if applied else len(plan.updates))
    if left:
        warn(f"dvault: note: kept {path}: {left} row(s) of it are not in the vault; fix them (or download "
             "again, or give --update), then import with --shred-source, or delete it yourself")
        return
    from .shred import shred_file

    link = path.is_symlink()
    try:
        shred_file(real)
        if link:
            path.unlink()
    except OSError as e:
        warn(f"dvault: warning: the import is done, but {path} could not be shredded: "
             f"{e.strerror or type(e).__name__}; delete it yourself (it is plaintext)")
        return
    what = f"{real}, the file {path} linked to (the link removed too)" if link else str(path)
    note(f"shredded {what} (overwritten, then deleted; see docs/guide.md on what disks may keep)")


_WITHOUT_CONSENT = click.option(
    "--without-consent", type=click.Choice(["mark", "omit"]), default="mark", show_default=True,
    help="People whose consent field for the purpose (the schema's [consent], e.g. photo_consent for badge) is "
         "not yes: mark them (a consent column; on badges a NO PHOTOS band) or leave them out (a photo list).")


def _check_out(out: Path | None) -> None:
    """Refuse an output file that exists, or a folder that cannot take it, before the work
    (write_private refuses it too, but late: after decrypting and auditing everything)."""
    if out is not None and (out.exists() or out.is_symlink()):
        raise vault.VaultExists(f"refusing to overwrite {out}")
    if out is not None and not os.access(out.parent, os.W_OK | os.X_OK):
        raise click.UsageError(f"cannot write to {out}: no such folder, or not writable")


@click.group(invoke_without_command=True)
@click.option("--fields", help="Comma-separated fields (only classes your role holds). Required.")
@click.option("--purpose", help="Add this purpose's pseudonym to each row (badge, travel, ...).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this new file (mode 0600, never overwritten) instead of stdout.")
@click.option("--to", "recipient", help="Seal the export to this public identity (dvault1...), signed by yours.")
@click.option("--yes", is_flag=True, help="With --to: do not ask whether the recipient's fingerprint is right "
                                          "(only in scripts).")
@_WITHOUT_CONSENT
@vault_options
@reason_option
@click.pass_context
def export(ctx: click.Context, /, fields: str | None, purpose: str | None, fmt: str, out: Path | None,
           recipient: str | None, yes: bool, without_consent: str, **kw: Any) -> None:
    """Export some fields of every participant, for a badge printer or a travel agent
    (or a printable badge sheet: dvault export badges).

    With --to the export is signed by your identity and sealed to the recipient, with the
    vault, time, purpose, fields and recipient inside the seal; you are shown the
    recipient's fingerprint (and enrolled name) and asked before anything is exported.
    Under a purpose whose consent field the schema names (badge: photo_consent), people
    without consent are marked or left out (--without-consent).

    Example: dvault export --fields badge_name,pronouns --purpose badge --out badges.csv
    """
    if ctx.invoked_subcommand is not None:
        given = [o for o, val in (("--fields", fields), ("--purpose", purpose), ("--out", out), ("--to", recipient))
                 if val is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)} go after the subcommand: dvault export "
                                   f"{ctx.invoked_subcommand} ...")
        return
    if fields is None:
        raise click.UsageError("missing option --fields (or a subcommand: dvault export badges)")
    _export_rows(fields, purpose, fmt, out, recipient, yes, without_consent, kw)


def _export_rows(fields: str, purpose: str | None, fmt: str, out: Path | None, recipient: str | None, yes: bool,
                 without_consent: str, kw: dict[str, Any]) -> None:
    from vault.identity import PublicIdentity

    from vault import consent
    from vault import exporter as X

    from .common import fields_arg

    names = fields_arg(fields)
    assert names is not None
    to = PublicIdentity.from_line(recipient) if recipient else None
    _check_out(out)
    if out is None:
        need_stdout("the export (or give --out FILE)")
    v, me = open_vault_as(kw.pop("vault_url"), kw.pop("identity"), kw.pop("passphrase_file"), kw.pop("recovery"))
    with v:
        fields_arg(fields, v.schema)
        if to is not None:
            confirm_recipient(v, me, to, yes)
        set_reason(v, kw["reason"])
        got = with_progress("exporting", v.count(), lambda step: consent.export(
            v, names, purpose, without_consent=without_consent, progress=step))
        vault_id = v.id
    _consent_note(got)
    rows, columns = got.rows, got.columns
    data = (X.to_csv(rows, columns) if fmt == "csv" else X.to_json(rows)).encode("utf-8")
    if to is not None:
        assert me is not None
        data = X.seal(data, to, me, vault_id=vault_id, purpose=purpose, fields=columns, fmt=fmt, rows=len(rows))
    if out is not None:
        X.write_private(out, data)
        remember_written(out, "export")
        note(f"wrote {len(rows)} row(s) to {out}{' (signed, sealed)' if to else ''}")
    else:
        _to_stdout(data, sealed=to is not None)


def _consent_note(got: Any) -> None:
    """Say what consent did (counts only), even under --quiet: the sheet differs from the
    list of every participant."""
    if got.consent_field is None or not got.without:
        return
    how = "left out" if got.mode == "omit" else "marked"
    warn(f"dvault: note: {got.without} participant(s) without {got.consent_field} {how}")


@export.command("badges")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="New file (0600, never overwritten): .html (one A4 sheet per printed page) or .svg.")
@_WITHOUT_CONSENT
@vault_options
@reason_option
def export_badges(out: Path, without_consent: str, **kw: Any) -> None:
    """Write a printable badge sheet: 8 badges per A4 page, each with the badge name,
    pronouns, and a QR code of the badge pseudonym (what dvault checkin reads from a
    desk scanner). People without photo consent get a NO PHOTOS band (--without-consent
    mark, the default) or no badge on this sheet (omit). No other field is printed.

    Example: dvault export badges --out badges.html --identity badges.dvid --reason "badge printing"
    """
    from vault import badges as B
    from vault import consent
    from vault import exporter as X

    if out.suffix.lower() not in (".html", ".htm", ".svg"):
        raise click.UsageError("--out must end in .html (printable, one sheet per page) or .svg")
    _check_out(out)
    with unlock(kw) as v:
        if "badge" not in v.purposes or "badge_name" not in v.schema.fields:
            raise click.UsageError("this vault's schema has no badge purpose or no badge_name field")
        wanted = ["badge_name"] + [n for n in ("pronouns",) if n in v.readable_fields]
        set_reason(v, kw["reason"])
        got = with_progress("exporting", v.count(), lambda step: consent.export(
            v, wanted, "badge", without_consent=without_consent, progress=step))
    if got.consent_field is None:
        warn("dvault: warning: this vault's schema names no consent field for badges ([consent] badge = ...): "
             "no badge is marked")
    _consent_note(got)
    sheet = [B.Badge(name=r.get("badge_name") or "", pseudonym=r["pseudonym"], pronouns=r.get("pronouns") or "",
                     photo_consent=r.get(got.consent_field, True) if got.consent_field else True)
             for r in got.rows]
    text = B.to_svg(sheet) if out.suffix.lower() == ".svg" else B.to_html(sheet)
    X.write_private(out, text.encode("utf-8"))
    remember_written(out, "export")
    pages = -(-len(sheet) // B.PER_PAGE)
    note(f"wrote {len(sheet)} badge(s) on {pages} page(s) to {out}")


def confirm_recipient(v: vault.Vault, me: Identity | None, to: PublicIdentity, yes: bool) -> None:
    """Who the export is about to be sealed to, by fingerprint and by the name the vault's
    signed user table gives (or that it has none), before anything is decrypted; printed
    under --quiet too (a trust decision), asked unless --yes. A sealed export is signed by
    its sender, so ``me`` (the opener's identity) must be there."""
    from vault.users import REVOKED

    if me is None:
        raise click.UsageError("a sealed export is signed by its sender: open the vault with your identity "
                               "(--identity), not the recovery passphrase")

    u = next((u for u in v.users(include_revoked=True) if u.public.raw == to.raw), None)
    if u is not None and u.role == REVOKED:  # a lost laptop's or a departed user's key: maybe in other hands
        raise click.UsageError(f"refusing to seal to {printable(u.name)} ({to.user_id}): revoked in this vault")
    who = "NOT enrolled in this vault" if u is None else f"{printable(u.name)} ({u.role}) in this vault"
    warn(f"sealing to user {to.user_id}, fingerprint {to.fingerprint()}: {who}")
    if not yes:
        confirm("Is this the fingerprint the recipient read to you?")


@click.command(name="open-export")
@click.argument("sealed_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--identity", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="New file (0600) instead of stdout.")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Identity passphrase from this file (else DVAULT_IDENTITY_PASSPHRASE or "
                   "DVAULT_PASSPHRASE, else a prompt).")
@click.option("--trust-sender", "trusted", multiple=True, metavar="FINGERPRINT",
              help="Trust a sender with this fingerprint, as they read it to you, or this public line "
                   "(dvault1..., checked with them; repeatable).")
@click.option("--vault", "vault_url", metavar="URL",
              help="Trust a sender enrolled in this vault: it must be the export's vault, pinned for your "
                   "identity (dvault pin add), and you enrolled in it.")
@click.option("--allow-unsigned", is_flag=True,
              help="Open an unsigned export (earlier releases): anyone who knows your public line can make one.")
def open_export(sealed_file: Path, identity: Path, out: Path | None, passphrase_file: Path | None,
                trusted: tuple[str, ...], vault_url: str | None, allow_unsigned: bool) -> None:
    """Open an export sealed to your identity: check its signature, say who sent what, from
    which vault and when, and refuse a sender nothing you trust vouches for.

    A sender is trusted if you give their fingerprint (--trust-sender, after checking it
    with them by voice) or if they are enrolled in the vault the export names and you give
    that vault (--vault, pinned for your identity). CSV is formula-guarded again.

    Example: dvault open-export travel.sealed --identity ~/me.dvid --trust-sender "1a2b 3c4d 5e6f 7a8b 9c0d"
    """
    if out is not None and (out.exists() or out.is_symlink()):
        raise vault.VaultExists(f"refusing to overwrite {out}")
    if out is None:
        need_stdout("the opened export (or give --out FILE)")
    from vault.identity import Identity

    from vault import exporter as X

    ident = Identity.load(identity, read_passphrase(passphrase_file, "Identity passphrase", env=IDENTITY_ENV))
    opened = X.open_sealed(sealed_file.read_bytes(), ident, allow_unsigned=allow_unsigned)
    if opened.sender is None:
        warn("dvault: warning: this export is NOT signed: anyone who knows your public line could have made it, "
             "and nothing says who sent it, from which vault or when")
    else:
        how = _trust(opened, trusted, vault_url, identity, ident)
        warn(f"from user {opened.sender.user_id}, fingerprint {opened.sender.fingerprint()}: {how}")
        warn(f"vault {opened.vault_id}, purpose {printable(opened.purpose or '(none)')}, {opened.rows} row(s) of "
             f"{printable(','.join(opened.fields))} ({opened.format}), sealed {opened.created_text}")
    if out is not None:
        X.write_private(out, opened.data)
        remember_written(out, "export")
    else:
        _to_stdout(opened.data, sealed=False)


def _trust(opened: Opened, trusted: tuple[str, ...], vault_url: str | None, ident_path: Path,
           ident: Identity) -> str:
    """How the sender is trusted (exporter.check_sender), opening --vault only if pinned."""
    from vault.pins import known as known_vaults

    from vault import exporter as X

    if vault_url is None or X.fingerprint_given(opened, trusted):  # no need to open a vault
        return X.check_sender(opened, fingerprints=trusted)
    pins_file = pins_path(ident_path)
    if opened.vault_id not in known_vaults(pins_file):
        raise vault.IntegrityError(f"vault {opened.vault_id}, which this export names, is not pinned for your "
                                   "identity: record the lead's pin line first (dvault pin add), or check the "
                                   "sender's fingerprint with them and give --trust-sender")
    with vault.open(vault_url, identity=ident, pins=pins_file) as v:
        return X.check_sender(opened, fingerprints=trusted, vault=v)


def _to_stdout(data: bytes, *, sealed: bool) -> None:
    """Exported data on stdout. On a terminal, the characters a screen would act on
    (escapes, C1, bidi overrides) are shown escaped, as list and show do: a pipe or a file
    gets the exact bytes."""
    if not sealed and sys.stdout.isatty():
        text = data.decode("utf-8", "replace")
        data = printable(text, lines=True).encode("utf-8")
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


COMMANDS = [import_, export, open_export]
