"""`dvault import` on real-world exports, driven through the real command: encodings,
presets (KoboToolbox's header settings, CiviCRM), joins and date formats, XLSX, the
source-status filter, select-many lists, unused columns, value rules, re-import as an
update, and the --json row report. No cell value ever reaches stderr."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import unicodedata
from pathlib import Path

import pytest

import vault
from vault.identity import Identity
from conftest import run_dvault

DATA = Path(__file__).resolve().parent / "data"
KOBO_DEFAULT = DATA / "kobo-export-default-small.csv"  # rows of a genuine Kobo export (synthetic people)
KOBO_GROUPS = DATA / "registrations-kobo-style-small.csv"  # hand-made: BOM, group/field headers
RECOVERY = "recovery pass words"


@pytest.fixture
def cli(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A vault (default schema) and a function running ``dvault import ...`` on it as the lead."""
    vault.create(url, RECOVERY).close()
    for k in [k for k in os.environ if k.startswith("DVAULT_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("DVAULT_RECOVERY_PASSPHRASE", RECOVERY)
    monkeypatch.chdir(tmp_path)

    def run(*args: str, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
        monkeypatch.setenv("DVAULT_RECOVERY_PASSPHRASE", RECOVERY)  # dvault removes it once read
        return run_dvault(monkeypatch, capsys, *args, "--vault", url, "--recovery", "--reason", "registration import")

    return url, tmp_path, run


def records(url: str) -> list[dict]:
    with vault.open(url, RECOVERY) as v:
        return [dict(r) for r in v.records()]


def write_csv(path: Path, rows: list[list[str]], *, delimiter: str = ",", encoding: str = "utf-8") -> Path:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


NAME_MAPPING = '[columns]\n"Name" = "legal_name"\n'
PLAIN_MAPPING = '[columns]\n"Name" = "legal_name"\n"Badge" = "badge_name"\n"Born" = "date_of_birth"\n' \
                '"Notes" = "risk_notes"\n'


# -- 1. encodings ---------------------------------------------------------------------------


def test_a_windows_1252_file_gets_a_hint_and_reads_with_encoding(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    url, tmp, run = cli
    (tmp / "map.toml").write_text(NAME_MAPPING)
    write_csv(tmp / "excel.csv", [["Name", "Badge"], ["Zoë Müller", "Zoë"], ["François Ngô", "François"]],
              encoding="cp1252")
    code, out, err = run("import", "excel.csv", "--mapping", "map.toml", capsys=capsys)
    assert code == 1 and "not UTF-8 text" in err and "try --encoding cp1252" in err, err
    assert "Zo" not in err and records(url) == []
    code, out, err = run("import", "excel.csv", "--mapping", "map.toml", "--encoding", "cp1252", capsys=capsys)
    assert code == 0 and "imported 2" in out, err
    assert sorted(r["legal_name"] for r in records(url)) == ["François Ngô", "Zoë Müller"]


def test_utf16_gets_its_hint_and_a_bom_is_still_fine(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    url, tmp, run = cli
    (tmp / "map.toml").write_text(NAME_MAPPING)
    write_csv(tmp / "u16.csv", [["Name"], ["Amira Haddad"]], encoding="utf-16")
    code, out, err = run("import", "u16.csv", "--mapping", "map.toml", "--dry-run", capsys=capsys)
    assert code == 1 and "try --encoding utf-16" in err, err
    code, out, err = run("import", "u16.csv", "--mapping", "map.toml", "--encoding", "utf-16", capsys=capsys)
    assert code == 0 and "imported 1" in out, err
    write_csv(tmp / "bom.csv", [["\ufeffName"], ["Kofi Mensah"]])
    code, out, err = run("import", "bom.csv", "--mapping", "map.toml", capsys=capsys)
    assert code == 0 and "imported 1" in out, err
    code, out, err = run("import", "bom.csv", "--mapping", "map.toml", "--encoding", "rot13", capsys=capsys)
    assert code == 1 and "text encoding" in err, err


# -- 2. presets -----------------------------------------------------------------------------


def test_a_genuine_kobo_export_with_default_headers_imports_with_the_preset(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    url, tmp, run = cli
    data = KOBO_DEFAULT.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf") and data.startswith(b'"start";"end"') and b"\r\n" in data
    (tmp / "kobo.csv").write_bytes(data)
    code, out, err = run("import", "kobo.csv", capsys=capsys)  # no mapping: a hint, nothing imported
    assert code == 1 and "looks like a KoboToolbox export: add --preset kobo" in err, err
    code, out, err = run("import", "kobo.csv", "--preset", "kobo", capsys=capsys)
    assert code == 0 and "imported 9" in out, err
    # every unused column is named, never dropped silently
    assert "column(s) not imported" in err and "'_submission_time'" in err and "'start'" in err
    recs = {r["passport_number"]: r for r in records(url)}
    assert recs["N012345678"]["legal_name"] == "ليلى حداد" and recs["N012345678"]["dietary"] == ["halal"]
    assert recs["N11223344"]["dietary"] == ["halal", "gluten_free"]  # codes, from the 0/1 columns
    assert recs["N012345678"]["source_id"] == "kobo:de2ba9c8-cf2e-41df-8b64-441c516b64ae"
    other = [r for r in recs.values() if "Sin mariscos (alergia)" in r.get("dietary", [])]
    assert len(other) == 1 and "other" not in other[0]["dietary"]  # the typed text replaces the "other" tick


def test_kobo_groups_in_headers_and_kobo_labels_use_the_same_preset(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    url, tmp, run = cli
    (tmp / "groups.csv").write_bytes(KOBO_GROUPS.read_bytes())
    code, out, err = run("import", "groups.csv", "--preset", "kobo", capsys=capsys)
    assert code == 0 and "imported 5" in out, err
    assert "'contact/signal'" in err  # a yes/no question, deliberately unused: still named
    header = ["Legal name", "Name on badge", "Dietary needs", "Dietary needs/Halal", "Dietary needs/Nut allergy",
              "Dietary needs/Vegan", "Other dietary need", "_uuid", "_validation_status"]
    write_csv(tmp / "labels.csv", [header,
                                   ["Li Wei", "Li", "Halal Nut allergy", "1", "1", "0", "", "u-1", "Approved"],
                                   ["Ana Silva", "Ana", "Nut allergy", "", "", "", "", "u-2", ""]])
    code, out, err = run("import", "labels.csv", "--preset", "kobo", capsys=capsys)
    assert code == 0 and "using preset kobo-labels" in err and "imported 2" in out, err
    got = {r["badge_name"]: r for r in records(url)}
    assert got["Li"]["dietary"] == ["halal", "nut_allergy"]  # labels back to codes, from the 0/1 columns
    assert got["Ana"]["dietary"] == ["nut_allergy"]  # no 0/1 columns: the labels, grouped


def test_civicrm_preset_joins_names_and_takes_a_date_format(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    url, tmp, run = cli
    header = ["Contact ID", "Contact Type", "First Name", "Middle Name", "Last Name", "Birth Date", "Email", "Note"]
    write_csv(tmp / "civi.csv", [header,
                                 ["101", "Individual", "Amira", "", "Haddad", "15/03/1991", "amira@example.org", ""],
                                 ["102", "Individual", "Kofi", "Atta", "Mensah", "03/04/1990", "kofi@example.org", ""]])
    code, out, err = run("import", "civi.csv", capsys=capsys)
    assert code == 1 and "add --preset civicrm" in err, err
    code, out, err = run("import", "civi.csv", "--preset", "civicrm", capsys=capsys)
    assert code == 1 and records(url) == []
    assert "line 3, column 'Birth Date': expects a date (YYYY-MM-DD); day and month could be either way round" in err
    assert "--date-format" in err and "Amira" not in err and "15/03" not in err
    code, out, err = run("import", "civi.csv", "--preset", "civicrm", "--date-format", "%d/%m/%Y", capsys=capsys)
    assert code == 0 and "imported 2" in out and "'Note'" in err and "'Contact Type'" in err, err
    got = {r["legal_name"]: r for r in records(url)}
    assert set(got) == {"Amira Haddad", "Kofi Atta Mensah"}  # one space, the empty middle name skipped
    assert got["Amira Haddad"]["date_of_birth"] == dt.date(1991, 3, 15)
    assert got["Kofi Atta Mensah"]["date_of_birth"] == dt.date(1990, 4, 3)
    assert got["Amira Haddad"]["source_id"] == "civicrm:101"


# -- 3. joins and dates in a mapping --------------------------------------------------------


def test_a_mapping_joins_columns_and_tells_date_faults_apart(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    url, tmp, run = cli
    (tmp / "map.toml").write_text('[options]\ndate_formats = ["%d/%m/%Y"]\n'
                                  '[columns]\n"Born" = "date_of_birth"\n'
                                  '[join]\nlegal_name = ["First Name", "Last Name"]\n')
    write_csv(tmp / "in.csv", [["First Name", "Last Name", "Born"],
                               ["Amira", "Haddad", "15/03/1991"],
                               ["Kofi", "", "1987-02-30"],
                               ["", "Solo", "31/02/1990"],
                               ["Lina", "Other", "March 3rd"]])
    code, out, err = run("import", "in.csv", "--mapping", "map.toml", "--dry-run", capsys=capsys)
    assert code == 1
    assert "line 3, column 'Born': is not a real date (no such day in that month)" in err
    assert "line 4, column 'Born': is not a real date (no such day in that month)" in err
    assert "line 5, column 'Born': expects a date (YYYY-MM-DD or DD/MM/YYYY)" in err
    code, out, err = run("import", "in.csv", "--mapping", "map.toml", "--skip-bad", capsys=capsys)
    assert code == 0 and "imported 1" in out
    assert records(url) == [{"legal_name": "Amira Haddad", "date_of_birth": dt.date(1991, 3, 15)}]
    (tmp / "twice.toml").write_text('[columns]\n"First Name" = "legal_name"\n"Last Name" = "legal_name"\n')
    code, out, err = run("import", "in.csv", "--mapping", "twice.toml", capsys=capsys)
    assert code == 1 and "mapped twice" in err and "[join]" in err


# -- 4. XLSX --------------------------------------------------------------------------------


def test_kobo_xlsx_download_first_sheet_with_real_dates(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    openpyxl = pytest.importorskip("openpyxl")
    url, tmp, run = cli
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["start", "legal_name", "date_of_birth", "arrival", "dietary", "_uuid", "_id"])
    sheet.append([dt.datetime(2026, 9, 3, 7, 8), "Layla Haddad", dt.datetime(1986, 3, 14), dt.date(2026, 11, 8),
                  "halal", "uuid-1", 418230001])
    sheet.append([dt.datetime(2026, 9, 4, 7, 8), "Nour Ben Ali", "1994-12-30", None, None, "uuid-2", 418230002])
    book.create_sheet("codes").append(["not", "read"])
    book.save(tmp / "kobo.xlsx")
    code, out, err = run("import", "kobo.xlsx", "--preset", "kobo", capsys=capsys)
    assert code == 0 and "imported 2" in out, err
    got = {r["legal_name"]: r for r in records(url)}
    assert got["Layla Haddad"]["date_of_birth"] == dt.date(1986, 3, 14)
    assert got["Layla Haddad"]["arrival"] == dt.date(2026, 11, 8) and got["Layla Haddad"]["dietary"] == ["halal"]
    assert got["Nour Ben Ali"]["date_of_birth"] == dt.date(1994, 12, 30) and "arrival" not in got["Nour Ben Ali"]
    (tmp / "broken.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    code, out, err = run("import", "broken.xlsx", "--preset", "kobo", capsys=capsys)
    assert code == 1 and "not a readable XLSX workbook" in err and "Traceback" not in err, err


# -- 5. source status -----------------------------------------------------------------------


def test_rows_kobo_marks_not_approved_are_skipped_and_counted(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    url, tmp, run = cli
    text = KOBO_DEFAULT.read_text("utf-8")
    text = text.replace('"validation_status_approved"', '"validation_status_not_approved"', 1)
    (tmp / "kobo.csv").write_text(text, newline="")
    code, out, err = run("import", "kobo.csv", "--preset", "kobo", capsys=capsys)
    assert code == 0 and "imported 8" in out, err
    assert "1 row(s) skipped, the source marks them not approved (lines 3)" in err
    assert "A23456789" not in {r.get("passport_number") for r in records(url)}
    code, out, err = run("import", "kobo.csv", "--preset", "kobo", "--include-unapproved", "--skip-bad",
                         capsys=capsys)
    assert code == 0 and "imported 1" in out, err
    assert "A23456789" in {r.get("passport_number") for r in records(url)}


# -- 6. select-many lists, through export ---------------------------------------------------


def test_a_list_field_exports_as_lines_in_csv_and_an_array_in_json(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    url, tmp, run = cli
    (tmp / "kobo.csv").write_bytes(KOBO_DEFAULT.read_bytes())
    code, out, err = run("import", "kobo.csv", "--preset", "kobo", capsys=capsys)
    assert code == 0, err
    code, out, err = run("export", "--fields", "passport_number,dietary", "--format", "json", capsys=capsys)
    assert code == 0, err
    rows = {r["passport_number"]: r for r in map(json.loads, out.splitlines())}
    assert rows["N11223344"]["dietary"] == ["halal", "gluten_free"]
    code, out, err = run("export", "--fields", "passport_number,dietary", capsys=capsys)
    got = {r[0]: r[1] for r in csv.reader(io.StringIO(out))}
    assert got["N11223344"] == "halal\ngluten_free" and got["N012345678"] == "halal"


# -- 7. unmapped columns and missing columns ------------------------------------------------


def test_unused_columns_named_in_dry_run_and_real_run_and_missing_ones_list_the_header(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    url, tmp, run = cli
    (tmp / "map.toml").write_text(PLAIN_MAPPING)
    write_csv(tmp / "in.csv", [["Name", "Badge", "Secret column", "Born"], ["Amira Haddad", "Amira", "x", ""]])
    for extra in (("--dry-run",), ()):
        code, out, err = run("import", "in.csv", "--mapping", "map.toml", *extra, capsys=capsys)
        assert code == 1 and "missing column" in err and "'Notes'" in err
        assert "the file's header has: 'Name', 'Badge', 'Secret column', 'Born'" in err, err
    (tmp / "map.toml").write_text(PLAIN_MAPPING.replace('"Notes" = "risk_notes"\n', ""))
    for extra in (("--dry-run",), ()):
        code, out, err = run("import", "in.csv", "--mapping", "map.toml", *extra, capsys=capsys)
        assert code == 0 and "column(s) not imported (no mapping rule uses them): 'Secret column'" in err, err


def test_an_export_saved_without_its_header_line_does_not_print_the_first_row(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    """Its first line is a person's data: the hint quoted it as "the file's header has: ...
    'Ольга Ñúñez', ... 'P83526008', ..." and the unused-columns note again (from a CLI hunt)."""
    url, tmp, run = cli
    rows = KOBO_GROUPS.read_text("utf-8-sig").splitlines()[1:4]
    (tmp / "noheader.csv").write_text("\n".join(rows) + "\n", "utf-8")
    first = rows[0].split(";")
    secrets = [first[3], first[9], first[10], first[11], first[13]]  # name, passport, e-mail, phone, contact
    for extra in (("--dry-run",), ("--dry-run", "--json"), ()):
        code, out, err = run("import", "noheader.csv", "--preset", "kobo", *extra, capsys=capsys)
        assert code == 1, err
        assert not [s for s in secrets if s in out + err], err
        if "--json" not in extra:
            assert f"first line does not look like a header: none of its {len(first)} cell(s)" in err, err
    assert records(url) == []


def test_a_header_cell_that_looks_like_a_value_is_named_by_position(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    """A genuine header keeps its helpful hint, but a cell that reads as data (an address,
    a number) is named by its position."""
    url, tmp, run = cli
    (tmp / "map.toml").write_text(PLAIN_MAPPING)
    write_csv(tmp / "in.csv", [["Name", "Badge", "amira@example.org", "P83526008", "Born"],
                               ["Amira Haddad", "Amira", "x", "y", ""]])
    code, out, err = run("import", "in.csv", "--mapping", "map.toml", "--dry-run", capsys=capsys)
    assert code == 1 and "the file's header has: 'Name', 'Badge', '(column 3)', '(column 4)', 'Born'" in err, err
    assert "amira@example.org" not in err and "P83526008" not in err


# -- --shred-source (from a CLI hunt) -------------------------------------------------------


def _passport(line: int) -> str:
    return KOBO_GROUPS.read_text("utf-8-sig").splitlines()[line].split(";")[9]


def test_shred_source_through_a_symlink_shreds_the_file_read(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    """today.csv -> downloads/kobo.csv: "shredded today.csv" removed only the link, and the
    file read kept every row in plaintext."""
    url, tmp, run = cli
    (tmp / "downloads").mkdir()
    real = tmp / "downloads" / "kobo.csv"
    real.write_bytes(KOBO_GROUPS.read_bytes())
    (tmp / "today.csv").symlink_to(real)
    code, out, err = run("import", "today.csv", "--preset", "kobo", "--shred-source", capsys=capsys)
    assert code == 0 and "imported 5" in out, err
    assert not real.exists() and not (tmp / "today.csv").is_symlink(), err
    assert f"shredded {real}, the file today.csv linked to (the link removed too)" in err, err


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_source_that_cannot_be_shredded_is_refused_before_the_import(cli, capsys, monkeypatch,
                                                                       what: str) -> None:  # type: ignore[no-untyped-def]
    """A read-only export (or folder): the rows were committed, then "Permission denied",
    exit 6, which says nothing was written. Now refused first. (The tests run as root, for
    whom os.access allows everything: a non-root user's answer is faked.)"""
    url, tmp, run = cli
    (tmp / "kobo.csv").write_bytes(KOBO_GROUPS.read_bytes())
    target = (tmp / "kobo.csv").resolve() if what == "file" else tmp.resolve()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == target else real_access(p, mode))
    code, out, err = run("import", "kobo.csv", "--preset", "kobo", "--shred-source", capsys=capsys)
    assert code == 1 and err.strip().startswith("dvault: error: cannot shred kobo.csv: "), err
    assert len(err.strip().splitlines()) == 1 and _passport(1) not in err
    assert records(url) == [] and (tmp / "kobo.csv").exists()


def test_a_shred_that_fails_after_the_import_is_a_warning_not_a_failed_import(cli, capsys,
                                                                               monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url, tmp, run = cli
    (tmp / "kobo.csv").write_bytes(KOBO_GROUPS.read_bytes())
    import errno

    import vault_cli.shred

    def read_only(path: Path) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    monkeypatch.setattr(vault_cli.shred, "shred_file", read_only)
    code, out, err = run("import", "kobo.csv", "--preset", "kobo", "--shred-source", capsys=capsys)
    assert code == 0 and "imported 5" in out, err
    assert "dvault: warning: the import is done, but kobo.csv could not be shredded: Permission denied; " \
           "delete it yourself" in err, err
    assert len(records(url)) == 5


# -- 8. value rules -------------------------------------------------------------------------


def test_nfc_controls_names_and_lengths(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    url, tmp, run = cli
    (tmp / "map.toml").write_text(PLAIN_MAPPING)
    nfd = unicodedata.normalize("NFD", "Zoë Müller")
    assert nfd != "Zoë Müller"
    write_csv(tmp / "in.csv", [["Name", "Badge", "Born", "Notes"],
                               [nfd, "Zoë", "", "first line\nsecond line"],
                               ["Nul\x00Byte", "N", "", ""],
                               ["", "", "1980-01-01", "no name at all"],
                               ["Long " + "x" * 10_000, "L", "", ""],
                               ["Tab\tName", "T", "", ""]])
    code, out, err = run("import", "in.csv", "--mapping", "map.toml", "--skip-bad", capsys=capsys)
    assert code == 0 and "imported 1" in out, err
    # (the first record's note spans lines 2-3)
    assert "line 4, column 'Name': contains a control character (U+0000) at character 4" in err
    assert "line 5: a record needs at least one of: legal_name, badge_name" in err
    assert "line 6, column 'Name': is longer than 1,000 characters (max_length)" in err
    assert "line 7, column 'Name': contains a line break or tab (U+0009)" in err
    assert "xxxxxxxxxx" not in err and "Byte" not in err
    (rec,) = records(url)
    assert rec["legal_name"] == "Zoë Müller" and rec["legal_name"] == unicodedata.normalize("NFC", nfd)
    assert rec["risk_notes"] == "first line\nsecond line"  # a notes field keeps its line break


def test_the_library_applies_the_same_rules_to_add_and_update(url: str) -> None:
    with vault.create(url, RECOVERY) as v:
        with pytest.raises(vault.ValidationError, match=r"row 1: field 'legal_name' contains a control character"):
            v.add({"legal_name": "A\x00B"})
        with pytest.raises(vault.ValidationError, match="at least one of: legal_name, badge_name"):
            v.add_many([{"legal_name": "Ok Name"}, {"email": "nameless@example.org"}])
        with pytest.raises(vault.ValidationError, match="longer than 1,000 characters"):
            v.add({"badge_name": "x" * 1001})
        rid = v.add({"legal_name": unicodedata.normalize("NFD", "Zoë"), "risk_notes": "y" * 10_000})
        assert v.get(rid)["legal_name"] == "Zoë"
        with pytest.raises(vault.ValidationError, match="field 'risk_notes' is longer than 10,000"):
            v.update(rid, {"risk_notes": "y" * 10_001})
        with pytest.raises(vault.ValidationError, match="at least one of"):
            v.update(rid, {"legal_name": None})
        with pytest.raises(vault.ValidationError, match="field 'phone' contains a control character \\(U\\+001B\\)"):
            v.update(rid, {"phone": "+1\x1b[2J"})
        assert v.count() == 1 and v.get(rid)["legal_name"] == "Zoë"


# -- 9. re-import as an update --------------------------------------------------------------


def test_a_corrected_redownload_updates_the_record_with_update(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    url, tmp, run = cli
    (tmp / "kobo.csv").write_bytes(KOBO_DEFAULT.read_bytes())
    code, out, err = run("import", "kobo.csv", "--preset", "kobo", capsys=capsys)
    assert code == 0 and "imported 9" in out, err
    # unchanged re-download: nothing new, exit 0, with or without --skip-bad
    for extra in ((), ("--skip-bad",)):
        code, out, err = run("import", "kobo.csv", "--preset", "kobo", *extra, capsys=capsys)
        assert code == 0 and "nothing new: 9 row(s) unchanged" in out, (out, err)
    fixed = KOBO_DEFAULT.read_text("utf-8").replace('"N012345678"', '"N012345679"').replace(
        '"+963 944 123 456"', '"+963 944 123 457"')
    (tmp / "kobo2.csv").write_text(fixed, newline="")
    code, out, err = run("import", "kobo2.csv", "--preset", "kobo", "--dry-run", capsys=capsys)
    assert code == 0 and "line 2: would update: passport_number, phone" in err, err
    assert "N01234567" not in err + out and "963" not in err + out  # fields, never values
    code, out, err = run("import", "kobo2.csv", "--preset", "kobo", capsys=capsys)
    assert code == 0 and "not updated (use --update)" in err and "nothing new" in out, err
    assert "N012345678" in {r.get("passport_number") for r in records(url)}
    code, out, err = run("import", "kobo2.csv", "--preset", "kobo", "--update", capsys=capsys)
    assert code == 0 and "updated 1 participant(s)" in out and "line 2: updated: passport_number, phone" in err
    recs = records(url)
    assert len(recs) == 9 and "N012345679" in {r.get("passport_number") for r in recs}
    with vault.open(url, RECOVERY) as v:
        entries = v.audit_entries(action="update")
        assert [e["detail"]["fields"] for e in entries] == [["passport_number", "phone"]]
        assert entries[0]["reason"] == "registration import"


def test_without_source_ids_an_unchanged_redownload_with_skip_bad_is_nothing_new(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    url, tmp, run = cli
    (tmp / "map.toml").write_text('[columns]\n"Name" = "legal_name"\n"Mail" = "email"\n')
    write_csv(tmp / "in.csv", [["Name", "Mail"], ["Amira Haddad", "amira@example.org"],
                               ["Kofi Mensah", "kofi@example.org"]])
    code, out, err = run("import", "in.csv", "--mapping", "map.toml", capsys=capsys)
    assert code == 0 and "imported 2" in out
    code, out, err = run("import", "in.csv", "--mapping", "map.toml", capsys=capsys)
    assert code == 1 and "already in the vault" in err
    code, out, err = run("import", "in.csv", "--mapping", "map.toml", "--skip-bad", capsys=capsys)
    assert code == 0 and "nothing new: 2 row(s) already in the vault" in out, (out, err)
    write_csv(tmp / "bad.csv", [["Name", "Mail"], ["Bad Row", "not\x00mail"]])
    code, out, err = run("import", "bad.csv", "--mapping", "map.toml", "--skip-bad", capsys=capsys)
    assert code == 1 and "no rows to import" in err  # a failure is not "nothing new"


# -- 10. --json -----------------------------------------------------------------------------


def test_json_row_report_names_fields_never_values(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    url, tmp, run = cli
    (tmp / "map.toml").write_text(PLAIN_MAPPING.replace('"Notes" = "risk_notes"\n', ""))
    write_csv(tmp / "in.csv", [["Name", "Badge", "Born"], ["Amira Haddad", "Amira", "1984-03-02"],
                               ["Kofi Mensah", "Kofi", "1987-02-30"], ["Amira Haddad", "Amira", "1984-03-02"]])
    code, out, err = run("import", "in.csv", "--mapping", "map.toml", "--skip-bad", "--json", capsys=capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["dry_run"] is False and doc["summary"] == {"added": 1, "updated": 0, "skipped": 0, "refused": 2}
    assert [(r["line"], r["status"]) for r in doc["rows"]] == [(2, "added"), (3, "refused"), (4, "refused")]
    assert doc["rows"][0]["fields"] == ["badge_name", "date_of_birth", "legal_name"]
    assert doc["rows"][1]["reason"] == "column 'Born': is not a real date (no such day in that month)"
    assert doc["rows"][2]["reason"] == "duplicate of line 2 (identical row)"
    assert "Amira" not in out and "Kofi" not in out and "1984" not in out
    code, out, err = run("import", "in.csv", "--mapping", "map.toml", "--skip-bad", "--json", "--dry-run",
                         capsys=capsys)
    doc = json.loads(out)
    assert doc["dry_run"] is True and [r["status"] for r in doc["rows"]] == ["skipped", "refused", "refused"]
    assert doc["rows"][0]["reason"].startswith("already in the vault")


# -- old vaults -----------------------------------------------------------------------------


def test_a_vault_with_the_previous_default_schema_imports_with_preset_and_mapping(url: str, tmp_path: Path,
                                                                                monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """Its stored schema has dietary as text and no source_id: the preset leaves source_id
    out (said so), joins the dietary choices as text, and the docs' mapping still works."""
    vault.create(url, RECOVERY, schema=(DATA / "participant-schema-v1.toml").read_text("utf-8")).close()
    for k in [k for k in os.environ if k.startswith("DVAULT_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("DVAULT_RECOVERY_PASSPHRASE", RECOVERY)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kobo.csv").write_bytes(KOBO_DEFAULT.read_bytes())
    (tmp_path / "groups.csv").write_bytes(KOBO_GROUPS.read_bytes())
    root = Path(__file__).resolve().parent.parent
    errs = []
    for args in (("kobo.csv", "--preset", "kobo"), ("groups.csv", "--mapping", str(root / "docs" / "kobo-mapping.toml"))):
        monkeypatch.setenv("DVAULT_RECOVERY_PASSPHRASE", RECOVERY)  # dvault removes it once read
        code, _, err = run_dvault(monkeypatch, capsys, "import", *args, "--vault", url, "--recovery", "--reason", "r")
        errs.append(err)
        assert code == 0, errs[-1]
    assert "this vault's schema has no field source_id: preset kobo leaves it out" in errs[0]
    with vault.open(url, RECOVERY) as v:
        recs = {r.get("passport_number"): dict(r) for r in v.records()}
    assert len(recs) == 14 and recs["N11223344"]["dietary"] == "halal, gluten_free"
    assert all("source_id" not in r for r in recs.values())


def test_an_import_and_its_updates_are_all_or_nothing(url: str) -> None:
    """import_rows(updates=...): the new rows and the changes to stored records commit
    together, so an update that fails (a record shredded meanwhile) leaves none of it, as a
    bad row would; with no new rows the updates alone are one transaction too."""
    with vault.create(url, RECOVERY) as v:
        kept = v.add({"legal_name": "Amira Haddad", "email": "amira@example.org"})
        gone = v.add({"legal_name": "Kofi Mensah", "email": "kofi@example.org"})
        v.delete(gone)
        new = {"legal_name": "Lina Saleh", "email": "lina@example.org"}
        for rows in ([new], []):
            with pytest.raises(vault.NotFound):
                v.import_rows(rows, updates=[(kept, {"email": "amira.h@example.org"}), (gone, {"email": "k@example.org"})])
            assert v.count() == 1 and v.get(kept)["email"] == "amira@example.org"
        ids = v.import_rows([new], updates=[(kept, {"email": "amira.h@example.org"})])
        assert v.count() == 2 and v.get(kept)["email"] == "amira.h@example.org" and v.get(ids[0])["legal_name"] == "Lina Saleh"
        assert v.import_rows([], updates=[(kept, {"email": "a@example.org"})]) == []
        assert v.get(kept)["email"] == "a@example.org" and v.check_records().ok
        with pytest.raises(vault.ValidationError):
            v.import_rows([], updates={"x": 1})  # type: ignore[arg-type]
        with pytest.raises(vault.ValidationError, match="pairs"):
            v.import_rows([], updates=[kept])  # type: ignore[list-item]


def test_an_import_update_refused_or_failed_is_logged_after_the_rollback(url: str) -> None:
    """The import's updates run in its transaction; an update refused for the role (denied)
    or failing (an attempt that changed nothing) is logged as update() logs it, not rolled
    back with the import."""
    staff, lead = Identity.generate(), Identity.generate()
    with vault.create(url, RECOVERY, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        kept = v.add({"legal_name": "Amira Haddad", "email": "amira@example.org"})
        gone = v.add({"legal_name": "Kofi Mensah", "email": "kofi@example.org"})
        v.delete(gone)
    with vault.open(url, identity=staff) as s:
        with pytest.raises(vault.AccessDenied):
            s.import_rows([{"legal_name": "Lina Saleh"}], updates=[(kept, {"risk_notes": "x"})])
        with pytest.raises(vault.NotFound):
            s.import_rows([{"legal_name": "Lina Saleh"}], updates=[(kept, {"email": "a@example.org"}),
                                                                   (gone, {"email": "k@example.org"})])
        assert s.count() == 1
    with vault.open(url, identity=lead) as v:
        entries = v.audit_entries()
        assert any(e["action"] == "denied" and e["detail"].get("op") == "update" for e in entries)
        attempts = [e for e in entries if e["action"] == "update" and "state" not in e["detail"]]
        assert [e["detail"]["fields"] for e in attempts] == [["email"]]
        assert v.get(kept)["email"] == "amira@example.org" and v.check_records().ok
