"""A printable badge sheet: badge name, pronouns, and a QR code of the badge pseudonym.

What a badge carries is what a stranger in the corridor may read: the name the person
chose for their badge and the badge pseudonym, which opens nothing without the vault's
keys (a desk scanner turns it back into the record through ``dvault checkin``). No
legal name, no organisation, no country. People without photo consent get a "NO PHOTOS"
band (``vault.consent``'s ``mark``), so that photographers can tell at a glance.

The sheet is SVG: names in any script render with the viewer's fonts (a PDF's built-in
fonts cover Latin only), and it needs no library beyond the QR encoder (segno, pure
Python). Each page is one A4 SVG drawing of 2 x 4 badges (90 x 62 mm, cut marks at the
corners). ``to_html`` puts every page in one HTML file that a browser prints one sheet
per page; ``to_svg`` stacks the pages in one drawing (one page: a plain A4 SVG).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

PAGE_W, PAGE_H = 210.0, 297.0  # A4, mm
BADGE_W, BADGE_H = 90.0, 62.0
COLS, ROWS = 2, 4
PER_PAGE = COLS * ROWS
_MARGIN_X = (PAGE_W - COLS * BADGE_W) / 2
_MARGIN_Y = (PAGE_H - ROWS * BADGE_H) / 2
_QR_SIZE = 30.0  # mm: a desk scanner reads it from arm's length


@dataclass(frozen=True)
class Badge:
    name: str
    pseudonym: str
    pronouns: str = ""
    photo_consent: bool = True


def _text(value: str) -> str:
    """Text for an SVG text node: XML-escaped, and without the characters a form may carry
    that have no place on a badge (controls, bidi overrides: shown as nothing)."""
    cleaned = "".join(ch for ch in value if ch.isprintable() and not 0x202A <= ord(ch) <= 0x202E
                      and not 0x2066 <= ord(ch) <= 0x2069)
    return escape(cleaned)


def _qr_path(data: str, size: float) -> tuple[str, float]:
    """An SVG path of the QR code's dark modules, and the module size in mm."""
    import segno

    qr = segno.make_qr(data, error="m")
    matrix = [list(row) for row in qr.matrix]
    quiet = 4  # modules of white border the QR standard asks for
    modules = len(matrix) + 2 * quiet
    unit = size / modules
    parts = []
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                parts.append(f"M{(x + quiet) * unit:.3f} {(y + quiet) * unit:.3f}h{unit:.3f}v{unit:.3f}h{-unit:.3f}z")
    return "".join(parts), unit


_NAME_W = BADGE_W - _QR_SIZE - 11  # mm left of the QR code for the name
_EM = 0.62  # a bold sans-serif letter's width, in em, on average (a safe side estimate)


def _name_lines(name: str) -> tuple[list[str], float]:
    """The badge name in one line, or two when one would be too small to read across a
    room, and its font size (mm)."""
    size = min(11.0, _NAME_W / max(1, len(name)) / _EM)
    words = name.split()
    if size >= 6.5 or len(words) < 2:
        return [name], max(4.0, size)
    cut = min(range(1, len(words)), key=lambda i: abs(len(" ".join(words[:i])) - len(" ".join(words[i:]))))
    lines = [" ".join(words[:cut]), " ".join(words[cut:])]
    return lines, max(4.0, min(9.0, _NAME_W / max(len(s) for s in lines) / _EM))


def _name(name: str) -> str:
    """The name's text elements. A line too long even at the smallest size is cut with an
    ellipsis rather than run under the QR code (which a scanner must read whole)."""
    lines, size = _name_lines(name)
    room = max(1, int(_NAME_W / (size * _EM)))
    top = 18 - (size * 0.6 if len(lines) == 2 else 0)
    return "".join(f'<text x="5" y="{top + i * size * 1.15:.2f}" font-family="sans-serif" font-weight="bold" '
                   f'font-size="{size:.2f}">{_text(line if len(line) <= room else line[:room - 1] + "…")}</text>'
                   for i, line in enumerate(lines))


def _badge(b: Badge, x: float, y: float) -> str:
    qr, _unit = _qr_path(b.pseudonym, _QR_SIZE)
    out = [f'<g transform="translate({x:.2f},{y:.2f})">',
           f'<rect width="{BADGE_W}" height="{BADGE_H}" fill="none" stroke="#bbb" stroke-width="0.2"/>',
           _name(b.name)]
    if b.pronouns:
        out.append(f'<text x="5" y="33" font-family="sans-serif" font-size="4.5">{_text(b.pronouns)}</text>')
    qx, qy = BADGE_W - _QR_SIZE - 3, 6.0
    out.append(f'<g transform="translate({qx:.2f},{qy:.2f})"><rect width="{_QR_SIZE}" height="{_QR_SIZE}" '
               f'fill="#fff"/><path d="{qr}" fill="#000"/></g>')
    out.append(f'<text x="{qx + _QR_SIZE / 2:.2f}" y="{qy + _QR_SIZE + 4:.2f}" text-anchor="middle" '
               f'font-family="monospace" font-size="3">{_text(b.pseudonym)}</text>')
    if not b.photo_consent:
        out.append(f'<rect x="0" y="{BADGE_H - 12}" width="{BADGE_W}" height="12" fill="#c00"/>'
                   f'<text x="{BADGE_W / 2}" y="{BADGE_H - 4}" text-anchor="middle" font-family="sans-serif" '
                   'font-weight="bold" font-size="7" fill="#fff" class="no-photos">NO PHOTOS</text>')
    out.append("</g>")
    return "".join(out)


def _page_body(badges: Sequence[Badge]) -> str:
    return "".join(_badge(b, _MARGIN_X + (i % COLS) * BADGE_W, _MARGIN_Y + (i // COLS) * BADGE_H)
                   for i, b in enumerate(badges))


def _chunks(badges: Sequence[Badge]) -> list[Sequence[Badge]]:
    return [badges[i:i + PER_PAGE] for i in range(0, len(badges), PER_PAGE)] or [badges]


def pages(badges: Sequence[Badge]) -> list[str]:
    """Each page as one A4 ``<svg>`` element (user units are mm)."""
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{PAGE_W:g}mm" height="{PAGE_H:g}mm" '
            f'viewBox="0 0 {PAGE_W:g} {PAGE_H:g}">{_page_body(chunk)}</svg>' for chunk in _chunks(badges)]


def to_svg(badges: Sequence[Badge]) -> str:
    """One SVG document: one A4 page, or the pages stacked top to bottom (for a viewer;
    a printer wants :func:`to_html`)."""
    chunks = _chunks(badges)
    height = PAGE_H * len(chunks)
    body = "".join(f'<g transform="translate(0,{i * PAGE_H:g})">{_page_body(c)}</g>' for i, c in enumerate(chunks))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
            f'width="{PAGE_W:g}mm" height="{height:g}mm" viewBox="0 0 {PAGE_W:g} {height:g}">{body}</svg>\n')


def to_html(badges: Sequence[Badge]) -> str:
    """Every page in one HTML file; a browser prints it one A4 sheet per page."""
    body = "\n".join(f'<div class="page">{p}</div>' for p in pages(badges))
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>badges</title><style>"
            "@page{size:A4;margin:0}body{margin:0}.page{width:210mm;height:297mm;break-after:page}"
            "</style></head><body>\n" + body + "\n</body></html>\n")
