"""Fuzzing every parser of bytes a database writer (or a file on disk) controls.

Whatever the bytes, each parser either returns or raises its one documented error, never
IndexError, struct.error, UnicodeDecodeError, ValueError or anything else that would
surface as a traceback (or as a message quoting the input). Inputs are random bytes and,
more usefully, valid blobs cut, extended or with a random span overwritten.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vault
from conftest import FAST_KDF, PASSPHRASE
from vault import _crypto as C
from vault import _format as F
from vault import audit as A
from vault import breakglass as B
from vault import keys as K
from vault import notes as N
from vault import pseudonym as P
from vault.identity import Identity, IdentityError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def mutated(valid: bytes) -> st.SearchStrategy[bytes]:
    """The valid blob cut short, extended, or with a span overwritten by random bytes."""
    n = len(valid)
    cut = st.integers(0, n).map(lambda i: valid[:i])
    grown = st.binary(min_size=1, max_size=64).map(lambda b: valid + b)
    spliced = st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=16)).map(
        lambda t: valid[:t[0]] + t[1] + valid[t[0] + len(t[1]):])
    return st.one_of(cut, grown, spliced, st.binary(max_size=2 * n + 8))


@pytest.fixture(scope="module")
def opened(tmp_path_factory):  # type: ignore[no-untyped-def]
    mp = pytest.MonkeyPatch()
    mp.setattr(F, "KDF_FLOOR", FAST_KDF)
    mp.setattr(F, "KDF_DEFAULT", FAST_KDF)
    path = tmp_path_factory.mktemp("fuzz") / "f.vault"
    v = vault.create(path, PASSPHRASE)
    rid = v.add({"legal_name": "Amira Haddad", "email": "amira@example.org", "arrival": "2026-11-08",
                 "photo_consent": True, "risk_level": "high", "risk_notes": "n" * 300})
    with v._ses.store().tx() as conn:
        row = v._ses.store().get_record(conn, bytes.fromhex(rid))
    yield v, bytes.fromhex(rid), row
    v.close()
    mp.undo()


def test_record_row_parser(opened) -> None:  # type: ignore[no-untyped-def]
    v, rid, row = opened
    every_class = v._records.classes_for(None)
    assert v._records.decode_row(rid, row, every_class)["legal_name"] == "Amira Haddad"

    @FUZZ
    @given(data=mutated(row))
    def check(data: bytes) -> None:
        try:
            v._records.decode_row(rid, data, every_class)
        except vault.IntegrityError as e:
            assert "Amira" not in str(e)
    check()


def test_grant_and_note_parsers() -> None:
    lead, requester = Identity.generate(), Identity.generate()
    note = N.seal_note(F.KIND_REASON, lead.public.x25519, N.recipient_id(lead.public.raw), b"a reason")
    head = N.header(F.KIND_GRANT, bytes.fromhex(requester.public.user_id))
    grant = head + (2**40).to_bytes(8, "big") + bytes(64) + C.seal_to(requester.public.x25519, head + b"x" * 40)

    @FUZZ
    @given(blob=mutated(note))
    def notes(blob: bytes) -> None:
        try:
            N.open_note(F.KIND_REASON, blob, lead.unseal)
        except C.AuthFailure:
            pass

    @FUZZ
    @given(blob=mutated(grant))
    def grants(blob: bytes) -> None:
        try:
            B._parse_grant(blob)
        except vault.IntegrityError:
            pass
    notes()
    grants()


def test_slot_keyring_and_identity_parsers() -> None:
    vid, secret, kid = b"v" * 16, b"s" * 32, b"k" * 8
    slot = K.seal_passphrase_slot(PASSPHRASE, secret, kid, vid, FAST_KDF)
    ident = Identity.generate()
    id_blob = base64.b64decode(ident.to_file_bytes(PASSPHRASE, FAST_KDF).splitlines()[-1])

    @FUZZ
    @given(blob=mutated(slot))
    def slots(blob: bytes) -> None:
        try:
            K.open_passphrase_slot(blob, PASSPHRASE, vid)
        except (vault.IntegrityError, vault.WrongPassphrase, vault.KdfTooWeak):
            pass

    @FUZZ
    @given(blob=mutated(id_blob))
    def identities(blob: bytes) -> None:
        try:
            Identity.from_file_bytes(base64.b64encode(blob), PASSPHRASE)
        except (IdentityError, vault.IntegrityError, vault.WrongPassphrase, vault.KdfTooWeak):
            pass
    slots()
    identities()


def test_text_parsers() -> None:
    """Checkpoints and pseudonyms arrive typed or pasted by people."""
    @FUZZ
    @given(text=st.one_of(st.text(max_size=200), st.just("dvcp1:12:").map(lambda p: p + "a" * 32)))
    def checkpoints(text: str) -> None:
        try:
            A.Checkpoint.parse(text)
        except vault.VaultError:
            pass

    @FUZZ
    @given(text=st.text(max_size=40))
    def pseudonyms(text: str) -> None:
        try:
            P.parse(text, "BA")
        except vault.VaultError:
            pass
    checkpoints()
    pseudonyms()


def test_keyring_and_user_slot_parsers() -> None:
    """The keyring plaintext parser runs only on authentic bytes, but a key holder's bug
    or a hostile client could still write odd ones; user slots are public bytes."""
    from vault import users as U
    from vault.envelope import Malformed
    ring = K.Keyring.generate(("public", "identity"), ("badge", "audit"))
    plain = ring.to_bytes()
    vid = b"v" * 16
    me = Identity.generate()
    slot = U.seal_user_slot(me.public, b"s" * 32, b"k" * 8, vid)

    @FUZZ
    @given(blob=mutated(plain))
    def rings(blob: bytes) -> None:
        try:
            K.Keyring.from_bytes(blob)
        except Malformed:
            pass

    @FUZZ
    @given(blob=mutated(slot))
    def user_slots(blob: bytes) -> None:
        try:
            U.open_user_slot(blob, me, vid)
        except (vault.IntegrityError, vault.AccessDenied):
            pass
    rings()
    user_slots()


def test_schema_and_mapping_parsers() -> None:
    """A custom schema or an import mapping is TOML a person wrote: any text gets a
    SchemaError or a mapping error, never a parser's traceback."""
    from vault import importer as IM
    from vault import schema as S
    schema_text = S.default_schema_text()
    mapping_text = '[columns]\n"name" = "legal_name"\n"dob" = "date_of_birth"\n[values.risk_level]\n"H" = "high"\n'
    default = S.load()

    def edits(text: str) -> st.SearchStrategy[str]:
        n = len(text)
        return st.one_of(st.integers(0, n).map(lambda i: text[:i]),
                         st.tuples(st.integers(0, n), st.text(max_size=12)).map(
                             lambda t: text[:t[0]] + t[1] + text[t[0] + len(t[1]):]),
                         st.text(max_size=200))

    @FUZZ
    @given(text=edits(schema_text))
    def schemas(text: str) -> None:
        try:
            S.load(text)
        except vault.SchemaError:
            pass

    @FUZZ
    @given(text=edits(mapping_text))
    def mappings(text: str) -> None:
        try:
            IM.load_mapping(text, default)
        except vault.ValidationError:
            pass
    schemas()
    mappings()


@pytest.mark.parametrize("nest", ["[" * 2000 + "]" * 2000, "{x=" * 2000 + "1" + "}" * 2000])
def test_deeply_nested_toml_is_a_schema_or_mapping_error(tmp_path, nest: str) -> None:  # type: ignore[no-untyped-def]
    """tomllib recurses once per nesting level: a schema or mapping nested deeper than the
    interpreter's recursion limit raised RecursionError (a fuzz hunt, 2026-11-27)."""
    from vault import importer as IM
    with pytest.raises(vault.SchemaError, match="nested too deeply"):
        vault.load_schema("[schema]\nname = " + nest + "\n")
    with pytest.raises(vault.SchemaError, match="nested too deeply"):
        vault.create(str(tmp_path / "v.vault"), PASSPHRASE, schema="[schema]\nname = " + nest + "\n")
    assert not (tmp_path / "v.vault").exists()
    with pytest.raises(IM.MappingError, match="nested too deeply"):
        IM.load_mapping("[columns]\na = " + nest + "\n", vault.load_schema())


@pytest.mark.parametrize("width", [16, 8])
def test_index_row_parser(width: int) -> None:
    """dv_index ``ids``: whole ids of the generation's width (16 bytes before plan version 3,
    8 from it) come back as they are, anything else is an IntegrityError; the membership
    test used by deletes only matches aligned ids."""
    from vault import buckets as S

    @FUZZ
    @given(blob=st.binary(max_size=80), rid=st.binary(min_size=width, max_size=width))
    def parse(blob: bytes, rid: bytes) -> None:
        try:
            ids = S.split_ids(blob, width)
        except vault.IntegrityError:
            assert len(blob) % width or not blob
            return
        assert b"".join(ids) == blob and all(len(i) == width for i in ids)
        assert S._holds(blob, rid, width) == (rid in ids)
    parse()
    assert not S._holds(b"\x00" + b"a" * width + b"\x00" * (width - 1), b"a" * width, width)  # unaligned match
