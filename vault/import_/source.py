"""Read an export into a header and rows: CSV in any text encoding, or an XLSX workbook.

Survey tools hand out both: KoboToolbox's default download is XLSX, its CSV is UTF-8,
and a CSV re-saved by Excel on Windows is Windows-1252. A file that is not what it is
read as gets one file-level error and, where the bytes say what it probably is, a hint
naming the option that reads it. No message quotes the file's bytes.
"""

from __future__ import annotations

import codecs
import csv
import datetime as _dt
import io
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["Cell", "Table", "SourceError", "read_table", "XLSX_MAGIC"]

#: What a cell holds: text (CSV, and XLSX text), or a date an XLSX cell stored as a date.
Cell = str | _dt.date

#: An XLSX workbook is a ZIP archive.
XLSX_MAGIC = b"PK\x03\x04"
#: Delimiters tried when the mapping does not name one.
SNIFF_DELIMITERS: tuple[str, ...] = (";", ",")


class SourceError(Exception):
    """A file-level problem: ``line`` where it was found, ``message`` (no file content),
    ``hint`` an option that would probably read the file, or None."""

    def __init__(self, line: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.line, self.message, self.hint = line, message, hint


@dataclass
class Table:
    """The header (stripped names, at ``header_line``) and the data rows as (line, cells):
    ``line`` is the physical line (CSV, counting line breaks inside quoted cells) or the
    sheet row (XLSX) where the row starts; blank rows are left out."""

    header: list[str]
    header_line: int
    rows: list[tuple[int, list[Cell]]] = field(default_factory=list)
    kind: str = "csv"


def read_table(data: bytes, *, encoding: str | None = None, delimiter: str | None = None,
               wanted: tuple[str, ...] = ()) -> Table:
    """Parse ``data``. ``wanted`` (column names the mapping knows) helps pick ';' or ','
    when ``delimiter`` is None. Raises SourceError."""
    if data.startswith(XLSX_MAGIC):
        return _read_xlsx(data)
    # A byte-order mark is never data: one left by a codec that keeps it (utf-16-le, -be,
    # utf-32-le...) or a second one (a file with a BOM saved again) would begin the
    # first column's name, which then matched nothing while reading as that name.
    text = _decode(data, encoding).lstrip("\ufeff")
    d = delimiter or _sniff(text, wanted)
    records = _records(text, d)
    try:
        first = next(records, None)
        if first is None:
            raise SourceError(1, "file is empty (no header line)")
        header_line, header = first
        rows: list[tuple[int, list[Cell]]] = [(line, list(cells)) for line, cells in records]
    except _Malformed as e:
        raise SourceError(e.line, e.message) from None
    return Table([h.strip() for h in header], header_line, rows)


# -- text ----------------------------------------------------------------------------------


def _decode(data: bytes, encoding: str | None) -> str:
    """The file's text; a SourceError (line, no bytes) with a hint when it is not in
    ``encoding`` (default UTF-8): a wrong guess must fail here, once, not as one
    "missing column" per mapped column."""
    if encoding is None:
        if data.startswith(codecs.BOM_UTF8):
            data = data[3:]
        try:
            text = data.decode("utf-8")  # strict: latin-1, UTF-16 with a BOM and lone surrogates fail
        except UnicodeDecodeError as e:
            line = data[: e.start].count(b"\n") + 1  # raised below: the decoder's error holds the file
        else:
            # UTF-16 or UTF-32 of ASCII text without a BOM is valid UTF-8 (NULs are): read
            # as such, its header matched nothing and the hint said it had no header line.
            wide = _wide_order(data) if "\x00" in text else None
            if wide is None:
                return text
            raise SourceError(1, f"file is not UTF-8 text (it looks like {wide[0]})", _guess(data))
        raise SourceError(line, "file is not UTF-8 text (bad encoding)", _guess(data))
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise SourceError(1, "unknown --encoding (try utf-8, cp1252, latin-1 or utf-16)") from None
    if not getattr(info, "_is_text_encoding", True):
        raise SourceError(1, "--encoding must name a text encoding (try utf-8, cp1252, latin-1 or utf-16)")
    if info.name == "utf-8" and data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    try:
        return data.decode(info.name)
    except UnicodeError as e:  # punycode, idna and "undefined" raise UnicodeError itself (no position),
        # whose message can quote the file: raised below, outside this handler
        line = data[: e.start].count(b"\n") + 1 if isinstance(e, UnicodeDecodeError) else 1
    raise SourceError(line, f"file is not {info.name} text (bad encoding)", _guess(data))


def _guess(data: bytes) -> str | None:
    """Which encoding the bytes probably are, as the option to try (None: no good guess).

    UTF-16 announces itself with a byte-order mark, or with a NUL after every ASCII
    letter. Otherwise, text that is not UTF-8 but decodes as Windows-1252 with its
    non-ASCII bytes mostly letters is what Excel on Windows writes for Western European
    languages (the Latin-1 superset); a file in another code page also decodes, so the
    hint says "probably"."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE 00 00 starts with FF FE
        return "it looks like UTF-32: try --encoding utf-32"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "it looks like UTF-16: try --encoding utf-16"
    if (wide := _wide_order(data)) is not None:  # no BOM: "utf-16" would guess the byte order
        return f"it looks like {wide[0]} without a byte-order mark: try --encoding {wide[1]}"
    if data[1:200:2].count(0) > 40:
        return "it looks like UTF-16: try --encoding utf-16"
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    high = [c for c in text if ord(c) > 127]
    if high and sum(c.isalpha() for c in high) >= 0.6 * len(high):
        return "it is probably Windows-1252 (a CSV saved by Excel on Windows): try --encoding cp1252"
    return None


def _wide_order(data: bytes) -> tuple[str, str] | None:
    """("UTF-16", codec) or ("UTF-32", codec) when the first bytes read as that encoding of
    mostly ASCII text with no BOM, i.e. NUL in the high byte(s) of nearly every character;
    else None. Why: no CSV export is text with a NUL in every other byte, so this is
    never a UTF-8 file."""
    head = data[:400]
    if len(head) < 8:
        return None

    def nul(offsets: tuple[int, ...], step: int) -> bool:  # NUL in the high bytes, text in the low one
        return all((head[o::step].count(0) >= 0.9 * len(head[o::step])) == (o in offsets) for o in range(step))

    for name, codec, offsets, step in (("UTF-32", "utf-32-le", (1, 2, 3), 4), ("UTF-32", "utf-32-be", (0, 1, 2), 4),
                                       ("UTF-16", "utf-16-le", (1,), 2), ("UTF-16", "utf-16-be", (0,), 2)):
        if nul(offsets, step):
            return name, codec
    return None


class _Malformed(Exception):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message


def _records(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(start line, cells) for each CSV record; blank lines are skipped.

    The line is the physical line where the record starts, counting line breaks
    inside quoted cells, so it matches what an editor shows.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    prev = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            # csv's messages carry no cell text, but we keep to fixed wording anyway.
            if "field larger than field limit" in str(e):
                msg = f"malformed CSV: a cell is longer than {csv.field_size_limit()} characters"
            else:
                msg = "malformed CSV: a quote is not closed, or text follows a closing quote"
            raise _Malformed(prev + 1, msg) from None
        start = prev + 1
        prev = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        yield start, cells


def _sniff(text: str, wanted: tuple[str, ...]) -> str:
    """Pick ';' or ',': the one whose header finds more wanted columns, then more cells."""
    best, best_score = SNIFF_DELIMITERS[-1], (-1, -1)
    for d in SNIFF_DELIMITERS:
        try:
            header = next(_records(text, d), (1, []))[1]
        except _Malformed:
            continue
        names = {h.strip() for h in header}
        score = (sum(1 for c in wanted if c in names or any(n.endswith("/" + c) for n in names)), len(header))
        if score > best_score:
            best, best_score = d, score
    return best


# -- XLSX ----------------------------------------------------------------------------------


def _read_xlsx(data: bytes) -> Table:
    """The first sheet of a workbook (Kobo's download has one). Date cells become dates;
    whole numbers their digits; a formula is read as its last computed value, never run."""
    import zipfile

    try:
        import openpyxl  # type: ignore[import-untyped]  # no stubs are published for it
    except ImportError:  # a dependency; only a broken install lacks it
        raise SourceError(1, "reading XLSX needs the openpyxl package") from None
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, TypeError):
        raise SourceError(1, "not a readable XLSX workbook") from None
    except Exception:
        raise SourceError(1, "not a readable XLSX workbook") from None
    try:
        if not book.worksheets:
            raise SourceError(1, "the workbook has no sheet")
        rows = []
        for n, raw in enumerate(book.worksheets[0].iter_rows(values_only=True), 1):
            cells = [_xlsx_cell(c) for c in raw]
            if any(isinstance(c, _dt.date) or c.strip() for c in cells):
                rows.append((n, cells))
    except SourceError:
        raise
    except Exception:
        raise SourceError(1, "not a readable XLSX workbook") from None
    finally:
        book.close()
    if not rows:
        raise SourceError(1, "file is empty (no header line)")
    (line, header), body = rows[0], rows[1:]
    width = len(header)
    while width and not (isinstance(header[width - 1], _dt.date) or str(header[width - 1]).strip()):
        width -= 1  # a sheet's rows run as wide as its widest: trailing empty header cells are not columns
    body = [(n, _trim(cells, width)) for n, cells in body]
    return Table([str(h).strip() for h in header[:width]], line, body, kind="xlsx")


def _trim(cells: list[Cell], width: int) -> list[Cell]:
    """Pad a short sheet row, and drop empty cells past the header (not cells with text)."""
    if len(cells) < width:
        return cells + [""] * (width - len(cells))
    extra = cells[width:]
    if all(not isinstance(c, _dt.date) and not c.strip() for c in extra):
        return cells[:width]
    return cells


def _xlsx_cell(c: object) -> Cell:
    if c is None:
        return ""
    if isinstance(c, _dt.datetime):  # as for an ISO datetime in a CSV, a date field takes its day
        return c.date()
    if isinstance(c, _dt.date):
        return c
    if isinstance(c, bool):
        return "true" if c else "false"
    if isinstance(c, float) and c.is_integer():
        return str(int(c))
    return str(c)
