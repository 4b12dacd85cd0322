"""`dvault verify`: is everything intact? One pass over records, index, pseudonyms, slots,
roster, audit log and canaries (vault.verify); exit 5 if anything is wrong."""

from __future__ import annotations

from typing import Any

import click

import vault

from .common import json_line, note, progress_bar, unlock, vault_options


@click.command("verify")
@vault_options
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout (the exit code is the same).")
@click.option("--repair-index", is_flag=True,
              help="Lead: rebuild the blind-index terms and pseudonym rows the records prove (audited).")
def verify(as_json: bool, repair_index: bool, **kw: Any) -> None:
    """Check everything your keys allow: every record decrypts and authenticates; every
    blind-index entry and issued pseudonym is recomputed from the records and compared;
    every key slot, the signed key statement and the user roster; the audit chain with
    the record states; the canaries. Problems name records by audit pseudonym and fields
    by name, never a value. Staff get the checks their keys allow; the report names the
    ones skipped. The run is audited.

    Exit codes: 0 intact, 5 something is wrong (each problem is listed), others as for
    every command (dvault --help).

    Example: dvault verify --vault dd2026.vault --identity lead.dvid
    """
    with unlock(kw, advice=False) as v:
        with progress_bar("Verifying", v.count(), show=not as_json) as step:
            report = v.verify(progress=step, repair_index=repair_index)
    if as_json:
        click.echo(json_line(report.to_dict(), sort_keys=True))
    else:
        click.echo(str(report))
    if not report.ok:
        raise vault.IntegrityError(f"verify found {len(report.remaining())} problem(s)")
    if report.skipped:
        note(f"dvault: note: {len(report.skipped)} check(s) skipped for your role (listed above)")


COMMANDS = [verify]
