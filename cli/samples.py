"""`dvault sample-csv`: synthetic registration exports (invented people) to try import on."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import click

from .common import note

KOBO_HEADER = ["personal/full_name", "personal/badge_name", "personal/pronouns", "personal/date_of_birth",
               "personal/nationality", "personal/residence", "personal/passport_no", "contact/email",
               "contact/phone", "contact/signal", "contact/emergency_contact", "work/organisation", "work/field",
               "travel/arrival", "travel/departure", "travel/hotel_needed", "needs/dietary", "needs/accessibility",
               "consent/photo", "_id"]
CIVICRM_HEADER = ["Contact ID", "Contact Type", "First Name", "Last Name", "Nick Name", "Birth Date", "Email",
                  "Phone", "Current Employer", "Country"]
#: CiviCRM's people are other people than the Kobo sample's (another seed), so that both
#: files go into one vault; its birth dates are written day first, as a European site does.
CIVICRM_SEED = 1789


def _kobo(rows: int) -> str:
    from .synth import participants

    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";", lineterminator="\r\n")
    w.writerow(KOBO_HEADER)
    for i, p in enumerate(participants(rows)):
        w.writerow([p["legal_name"], p["badge_name"], p["pronouns"], p["date_of_birth"].isoformat(),
                    p["nationality"], p["country_of_residence"], p["passport_number"], p["email"], p["phone"],
                    "no", "Next of kin, +41 00 000 0000", p["organisation"], p["field_of_work"],
                    p["arrival"].isoformat(), p["departure"].isoformat(), "yes", " ".join(p["dietary"]), "",
                    "yes" if p["photo_consent"] else "no", str(410000000 + i)])
    return "\ufeff" + buf.getvalue()


def _civicrm_row(i: int, p: dict[str, Any]) -> list[str]:
    given = p["badge_name"]
    family = p["legal_name"][len(given) + 1:]
    return [str(9000 + i), "Individual", given, family, given, p["date_of_birth"].strftime("%d/%m/%Y"),
            p["email"], p["phone"], p["organisation"], p["country_of_residence"]]


def _civicrm(rows: int) -> str:
    from .synth import participants

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CIVICRM_HEADER)
    for i, p in enumerate(participants(rows, seed=CIVICRM_SEED)):
        w.writerow(_civicrm_row(i, p))
    return buf.getvalue()


@click.command(name="sample-csv")
@click.option("--rows", type=click.IntRange(1, 100_000), default=150, show_default=True)
@click.option("--style", type=click.Choice(["kobo", "civicrm"]), default="kobo", show_default=True,
              help="KoboToolbox (XML names, groups in headers, ';') or a CiviCRM contact export (First Name and "
                   "Last Name columns, birth dates as DD/MM/YYYY).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="New file (0600) for the synthetic export.")
def sample_csv(rows: int, style: str, out: Path) -> None:
    """Write a synthetic registration export (invented people) for trying import:
    --preset kobo reads the Kobo style, --preset civicrm --date-format %d/%m/%Y the
    CiviCRM one.

    Example: dvault sample-csv --rows 150 --out registrations.csv
    """
    from vault._files import write_private

    from .travel import remember_written

    text = _kobo(rows) if style == "kobo" else _civicrm(rows)
    write_private(out, text.encode("utf-8"))
    remember_written(out, "export")  # plaintext of (invented) people: travel and panic remove it
    note(f"wrote {rows} synthetic {style} registrations to {out}")


COMMANDS = [sample_csv]
