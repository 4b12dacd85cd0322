"""No plaintext survives in an exception object, even where its message is clean: ``raise
X(...) from None`` only hides the caught error from the traceback printer, and
``e.__context__`` still held it, with the decoder's input (a UnicodeDecodeError's
``object``, a JSONDecodeError's ``doc``). The raising sites raise outside their handlers,
and a VaultError never shows a context at all (vault.errors.VaultError)."""

from __future__ import annotations

import traceback

import pytest

import vault
from vault import exporter as X
from vault.identity import Identity

MARKERS = ("ZX9876543Q", "leak.marker@example.org", "Markerina Leakova")


def _everything(e: BaseException) -> str:
    """Every text an error handler, crash reporter or debugger could take from ``e``: its
    message, args, attributes and the whole chain (cause and context, suppressed or not),
    with each link's attributes (a UnicodeDecodeError's ``object``, a JSONDecodeError's ``doc``)."""
    out, seen, stack = [], set(), [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        out += ["".join(traceback.format_exception(x)), repr(x), repr(x.args)]
        out += [repr(getattr(x, a, None)) for a in ("object", "doc", "msg")]
        out += [repr(v) for v in vars(x).values()] if hasattr(x, "__dict__") else []
        stack += [x.__cause__, x.__context__]
    return "\n".join(out)


def _leaked(e: BaseException) -> list[str]:
    text = _everything(e)
    return [m for m in MARKERS if m in text or repr(m.encode())[2:-1] in text]


def _sealed(payload: bytes, fmt: str) -> tuple[bytes, Identity]:
    sender, recipient = Identity.generate(), Identity.generate()
    blob = X.seal(payload, recipient.public, sender, vault_id="00" * 16, purpose=None,
                  fields=["legal_name", "passport_number", "email"], fmt=fmt, rows=1)
    return blob, recipient


def test_a_malformed_sealed_json_export_keeps_no_row_in_the_error() -> None:
    """A signed JSON-lines export whose second line is not JSON: open_sealed refuses it with
    a clean message, but the IntegrityError's __context__ is the JSONDecodeError whose
    ``doc`` is the decrypted line (a person's legal name, passport number and e-mail)."""
    payload = (b'{"legal_name": "Amira Haddad"}\n'
               b'{"legal_name": "Markerina Leakova", "passport_number": "ZX9876543Q", '
               b'"email": "leak.marker@example.org"} trailing\n')
    blob, me = _sealed(payload, "json")
    with pytest.raises(vault.IntegrityError) as info:
        X.open_sealed(blob, me)
    assert "Markerina" not in str(info.value)  # the message itself is clean
    assert _leaked(info.value) == [], "decrypted export rows survive in the exception's __context__"


def test_a_malformed_sealed_csv_export_keeps_no_payload_in_the_error() -> None:
    """A signed CSV export with one byte that is not UTF-8: the IntegrityError's __context__
    is the UnicodeDecodeError whose ``object`` is the whole decrypted payload."""
    payload = ('"legal_name","passport_number","email"\r\n'
               '"Markerina Leakova","ZX9876543Q","leak.marker@example.org"\r\n').encode() + b'"\xff"\r\n'
    blob, me = _sealed(payload, "csv")
    with pytest.raises(vault.IntegrityError) as info:
        X.open_sealed(blob, me)
    assert _leaked(info.value) == [], "the decrypted export survives in the exception's __context__"


def test_read_table_of_a_non_utf8_file_keeps_no_file_in_the_error() -> None:
    """vault.importer.read_table (public) on a cp1252 CSV: SourceError's message names only
    the line, but its __context__ is the UnicodeDecodeError whose ``object`` is the whole
    registration export."""
    from vault.importer import SourceError, read_table

    data = ("Name,Passport,Email\r\nMarkerina Leakova,ZX9876543Q,leak.marker@example.org\r\n"
            "Zo\u00eb M\u00fcller,X1,z@example.org\r\n").encode("cp1252")
    with pytest.raises(SourceError) as info:
        read_table(data)
    assert "Markerina" not in str(info.value)
    assert _leaked(info.value) == [], "the whole CSV survives in the exception's __context__"


@pytest.mark.parametrize("encoding", [None, "utf-8"])
def test_read_table_names_the_line_without_the_file(encoding: str | None) -> None:
    """The encoding error still says where (the line) and what to try, and nothing more."""
    from vault.importer import SourceError, read_table

    data = "Name\r\nMarkerina Leakova\r\nZo\u00eb\r\n".encode("cp1252")
    with pytest.raises(SourceError) as info:
        read_table(data, encoding=encoding)
    assert info.value.line == 3 and _leaked(info.value) == [] and info.value.__context__ is None


def test_a_vault_error_never_shows_the_error_it_was_raised_in() -> None:
    """The net under every raising site: raised while handling an error that quotes a value,
    with or without ``from None``, a VaultError's chain holds nothing of it."""
    for suppress in (True, False):
        try:
            try:
                int("ZX9876543Q")
            except ValueError:
                if suppress:
                    raise vault.ValidationError("not a number") from None
                raise vault.ValidationError("not a number")  # noqa: B904 - the point of the test
        except vault.VaultError as e:
            assert e.__context__ is None and _leaked(e) == []
            e.__context__ = ValueError("ZX9876543Q")  # setting it (as contextlib does) keeps nothing
            assert e.__context__ is None
