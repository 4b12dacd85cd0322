"""`dvault import` hardening (from a review of the import path): files and mappings a
careful user hits in practice, each refused or read with one clear line, and no cell
value in any message, hint or note."""

from __future__ import annotations

import json

import pytest

from conftest import run_dvault  # noqa: F401 - used through the cli fixture's module
from test_import_cli import cli, records  # noqa: F401 - the fixture, and a reader of the vault
from vault import schema as S
from vault.importer import load_mapping, plan_import

SCHEMA = S.load()
MAPPING = '[columns]\n"Name" = "legal_name"\n"Born" = "date_of_birth"\n"Email" = "email"\n'


def plan(data: bytes, mapping: str = MAPPING, **kw):  # type: ignore[no-untyped-def]
    return plan_import(data, load_mapping(mapping, SCHEMA), SCHEMA, **kw)


# -- a header line that swallowed the first row --------------------------------------------


def test_a_header_joined_to_its_first_row_does_not_name_that_rows_cells(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    """A header file saved without a final line break, then concatenated with an export's
    rows (``cat header.csv rows.csv``): the header line holds the first person's cells.
    The unused-columns note (stderr and --json) quoted them: a name, a risk note."""
    url, tmp, run = cli
    (tmp / "map.toml").write_text(MAPPING)
    (tmp / "in.csv").write_bytes(b"Name,Born,Email,Note" + b"Amira Haddad,1990-01-02,amira@x.org,Fled Syria\r\n"
                                 b"Omar Farouk,1991-01-02,omar@x.org,none\r\n")
    for extra in (("--dry-run",), ("--dry-run", "--json"), ()):
        code, out, err = run("import", "in.csv", "--mapping", "map.toml", *extra, capsys=capsys)
        assert code == 1, err
        assert "Amira" not in out + err and "Fled Syria" not in out + err, out + err
        if "--json" not in extra:
            assert "more cells than any row" in err, err
    assert records(url) == []


def test_a_header_as_wide_as_its_rows_is_still_named() -> None:
    p = plan(b"Name,Born,Email,Note\nAmira Haddad,1990-01-02,amira@x.org,x\n")
    assert p.ok and p.unmapped == ["Note"] and p.hints == []


# -- encodings ------------------------------------------------------------------------------

ROWS = "Name,Born,Email\r\nAmira Haddad,1990-01-02,amira@x.org\r\n"


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_byte_order_mark_gets_the_utf16_hint(encoding: str) -> None:
    """UTF-16 of ASCII text without a BOM is valid UTF-8 (a NUL after every letter): it
    was read as such, and refused with "missing column" and a hint that the file has no
    header line, instead of the hint naming --encoding."""
    p = plan(ROWS.encode(encoding))
    assert [str(e) for e in p.errors] == ["line 1: file is not UTF-8 text (it looks like UTF-16)"]
    assert p.hints == [f"it looks like UTF-16 without a byte-order mark: try --encoding {encoding}"]
    assert plan(ROWS.encode(encoding), encoding=encoding).ok


def test_utf32_is_not_hinted_as_utf16() -> None:
    p = plan(ROWS.encode("utf-32"))
    assert p.hints == ["it looks like UTF-32: try --encoding utf-32"], p.hints
    assert plan(ROWS.encode("utf-32"), encoding="utf-32").ok


@pytest.mark.parametrize(("data", "encoding"), [
    (b"\xef\xbb\xbf" + ("\ufeff" + ROWS).encode("utf-8"), None),  # a BOM added to a file that had one
    (("\ufeff" + ROWS).encode("utf-16-le"), "utf-16-le"),  # the -le/-be codecs keep the mark as text
    (("\ufeff" + ROWS).encode("utf-16-be"), "utf-16-be"),
    (("\ufeff" + ROWS).encode("utf-32-le"), "utf-32-le"),
    (("\ufeff" + ROWS).encode("utf-8"), "utf-8-sig"),
])
def test_a_byte_order_mark_is_never_part_of_the_first_column_name(data: bytes, encoding: str | None) -> None:
    """A mark left in the text made the first header '\\ufeffName': "missing column
    'Name'" next to a header that reads 'Name'."""
    p = plan(data, encoding=encoding)
    assert p.ok and [v["legal_name"] for _, v in p.rows] == ["Amira Haddad"], [str(e) for e in p.errors]


# -- mapping files --------------------------------------------------------------------------


def test_a_mapping_saved_with_a_byte_order_mark_loads(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    """Notepad on Windows (before 2019) saved UTF-8 with a BOM: the mapping was refused as
    "not valid TOML: Invalid statement (at line 1, column 1)", which points nowhere."""
    url, tmp, run = cli
    (tmp / "map.toml").write_bytes(b"\xef\xbb\xbf" + MAPPING.replace("\n", "\r\n").encode("utf-8"))
    (tmp / "in.csv").write_text(ROWS, "utf-8")
    code, out, err = run("import", "in.csv", "--mapping", "map.toml", capsys=capsys)
    assert code == 0 and "imported 1" in out, err
    assert [r["legal_name"] for r in records(url)] == ["Amira Haddad"]


def test_a_column_named_twice_in_one_join_is_refused() -> None:
    """["First", "First"] joined the cell with itself: "Amira Amira" stored, silently."""
    from vault.importer import MappingError

    with pytest.raises(MappingError, match=r"\[join\] legal_name names column 'First' twice"):
        load_mapping('[join]\nlegal_name = ["First", "Last", "First"]\n', SCHEMA)

    with pytest.raises(MappingError, match=r"\[select_many.dietary\] names column 'Diet' twice"):
        load_mapping('[columns]\n"Name" = "legal_name"\n[select_many.dietary]\ncolumn = "Diet"\nother = "Diet"\n', SCHEMA)


# -- what the last line says ----------------------------------------------------------------


@pytest.mark.parametrize(("data", "why"), [
    (b"", "file is empty"),
    (b"Name,Born,Email\r\nAm\xe9lie Dubois,1990-01-02,a@x.org\r\n", "not UTF-8"),
    (b"Name,Born\r\nAmira Haddad,1990-01-02\r\n", "missing column"),
    (b'Name,Born,Email\r\n"Amira Haddad,1990-01-02,a@x.org\r\n', "malformed CSV"),
])
def test_a_problem_with_the_whole_file_does_not_suggest_skip_bad(cli, capsys, data: bytes, why: str) -> None:  # type: ignore[no-untyped-def]
    """--skip-bad skips bad rows; a file that cannot be read has none to skip, and with
    --skip-bad the last line said only "no rows to import"."""
    url, tmp, run = cli
    (tmp / "map.toml").write_text(MAPPING)
    (tmp / "in.csv").write_bytes(data)
    for extra in ((), ("--skip-bad",), ("--json",)):
        code, out, err = run("import", "in.csv", "--mapping", "map.toml", *extra, capsys=capsys)
        last = err.strip().splitlines()[-1]
        assert code == 1 and why in out + err, err
        assert last == "dvault: error: nothing imported: the file itself must be fixed (--skip-bad skips bad " \
                       "rows, not a file that cannot be read)", err
        if "--json" in extra:
            assert json.loads(out)["rows"][0]["status"] == "refused"
    assert records(url) == []


def test_bad_rows_still_suggest_skip_bad(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    url, tmp, run = cli
    (tmp / "map.toml").write_text(MAPPING)
    (tmp / "in.csv").write_text(ROWS + "Omar Farouk,1991-02-30,o@x.org\r\n", "utf-8")
    code, out, err = run("import", "in.csv", "--mapping", "map.toml", capsys=capsys)
    assert code == 1 and err.strip().endswith("nothing imported: fix the rows above or use --skip-bad"), err



# -- codecs that fail in their own way ------------------------------------------------------


@pytest.mark.parametrize("encoding", ["punycode", "idna"])
def test_a_codec_that_raises_unicode_error_is_a_file_error(encoding: str) -> None:
    """punycode and idna raise UnicodeError, not UnicodeDecodeError: it escaped the
    reader, and the CLI said "an argument, variable or file is not valid UTF-8 text"."""
    data = b"Name,Born,Email\r\nAmira Haddad,1990-01-02,a@x.xn--zz\r\n"  # idna: a label "xn--" starts is punycode
    p = plan(data, encoding=encoding)
    assert [str(e) for e in p.errors] == [f"line 1: file is not {encoding} text (bad encoding)"], p.errors


def test_the_undefined_codec_is_a_file_error_too(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    url, tmp, run = cli
    (tmp / "map.toml").write_text(MAPPING)
    (tmp / "in.csv").write_text(ROWS, "utf-8")
    code, out, err = run("import", "in.csv", "--mapping", "map.toml", "--encoding", "undefined", capsys=capsys)
    assert code == 1 and "line 1: file is not undefined text (bad encoding)" in err, err
    assert "not valid UTF-8" not in err and "Amira" not in err
