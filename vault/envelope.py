"""Envelope encryption of one record: per-class DEKs and per-field ciphertexts.

Layouts are specified byte by byte in docs/format.md; this module and
:mod:`vault.keys` are the only writers and readers of those bytes.

Per record and class there is one *envelope*: a wrapped DEK plus a *cell
container* of field ciphertexts. The DEK wrap's associated data covers the sorted
list of field names present, so dropping or adding a cell is detected, and every
update draws a fresh DEK, so replaying an older *cell* of the same record fails.
Replaying a whole older *envelope* (DEK and cells together) of the same record and
class is not detected by a read: nothing in the row remembers its version, and a role
holding one class cannot rewrap the others. The audit log's record states (over the
row's DEK ids, :func:`dek_ids`) let the lead's record check find it (docs/threat-model.md).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import _crypto as C
from . import _format as F

_V = bytes([F.FORMAT_VERSION])
FIELD_HEADER_LEN = 2 + F.KID_LEN  # version, kind, dek id
DEK_HEADER_LEN = 2 + 2 * F.KID_LEN  # version, kind, class key id, dek id
DEK_BLOB_LEN = DEK_HEADER_LEN + F.NONCE_LEN + F.KEY_LEN + F.TAG_LEN


class Malformed(Exception):
    """A blob cannot be parsed (wrong size, version or kind). Carries no data."""


def _lp8(b: bytes) -> bytes:
    if len(b) > 255:
        raise ValueError("name too long")
    return bytes([len(b)]) + b


# -- padding (ISO/IEC 7816-4) -----------------------------------------------------------
def pad(data: bytes, block: int = F.PAD_BLOCK) -> bytes:
    """Append 0x80 then zeros up to a multiple of ``block`` (always at least one byte)."""
    n = len(data) + 1
    return data + b"\x80" + b"\x00" * (-n % block)


def unpad(data: bytes, block: int = F.PAD_BLOCK) -> bytes:
    if not data or len(data) % block:
        raise Malformed()
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80:
        raise Malformed()
    return stripped[:-1]


# -- field ciphertexts ------------------------------------------------------------------
def field_aad(header: bytes, vault_id: bytes, record_id: bytes, field: str) -> bytes:
    return header + vault_id + record_id + _lp8(field.encode("ascii"))


def seal_field(dek: C.Aead, dek_id: bytes, vault_id: bytes, record_id: bytes, field: str,
               plaintext: bytes, nonce: bytes | None = None) -> bytes:
    header = _V + F.KIND_FIELD + dek_id
    nonce = C.random_bytes(F.NONCE_LEN) if nonce is None else nonce
    ct = dek.seal(nonce, pad(plaintext), field_aad(header, vault_id, record_id, field))
    return header + nonce + ct


def field_dek_id(blob: bytes) -> bytes:
    if len(blob) < FIELD_HEADER_LEN + F.NONCE_LEN + F.TAG_LEN + F.PAD_BLOCK:
        raise Malformed()
    if blob[0] != F.FORMAT_VERSION or blob[1:2] != F.KIND_FIELD:
        raise Malformed()
    return blob[2:FIELD_HEADER_LEN]


def open_field(dek: C.Aead, vault_id: bytes, record_id: bytes, field: str, blob: bytes) -> bytes:
    """Decrypt one cell. Raises Malformed or C.AuthFailure."""
    field_dek_id(blob)
    header = blob[:FIELD_HEADER_LEN]
    nonce = blob[FIELD_HEADER_LEN:FIELD_HEADER_LEN + F.NONCE_LEN]
    pt = dek.open(nonce, blob[FIELD_HEADER_LEN + F.NONCE_LEN:], field_aad(header, vault_id, record_id, field))
    return unpad(pt)


# -- wrapped DEKs -----------------------------------------------------------------------
def manifest(field_names: list[str] | tuple[str, ...]) -> bytes:
    """Canonical encoding of the set of fields present in an envelope."""
    names = sorted(field_names)
    return struct.pack(">H", len(names)) + b"".join(_lp8(n.encode("ascii")) for n in names)


def dek_aad(header: bytes, vault_id: bytes, record_id: bytes, cls: str, class_version: int,
            fields_present: list[str] | tuple[str, ...]) -> bytes:
    return (header + vault_id + record_id + _lp8(cls.encode("ascii"))
            + struct.pack(">I", class_version) + manifest(fields_present))


def wrap_dek(class_key: C.Aead, class_kid: bytes, class_version: int, dek_id: bytes, dek: bytes,
             vault_id: bytes, record_id: bytes, cls: str, fields_present: list[str] | tuple[str, ...],
             nonce: bytes | None = None) -> bytes:
    header = _V + F.KIND_DEK + class_kid + dek_id
    nonce = C.random_bytes(F.NONCE_LEN) if nonce is None else nonce
    aad = dek_aad(header, vault_id, record_id, cls, class_version, fields_present)
    return header + nonce + class_key.seal(nonce, dek, aad)


@dataclass(frozen=True)
class DekHeader:
    class_kid: bytes
    dek_id: bytes
    sealed: bool = False  # kind E or W: sealed to the class's public key by a writer without the class key
    writer: bytes = b""  # kind W: the 8-byte user id whose Ed25519 key signed it (b"" for D and E)
    derived: bool = False  # format 2 kind H: no wrap, the DEK is derived from the class key (§6b)


SEALED_DEK_LEN = DEK_HEADER_LEN + C.SEALED_OVERHEAD + F.KEY_LEN + 32  # kind E (unsigned, legacy)
SIGNED_HEADER_LEN = DEK_HEADER_LEN + F.KID_LEN  # version, kind, class key id, dek id, writer id
SIGNED_DEK_LEN = SIGNED_HEADER_LEN + C.SEALED_OVERHEAD + F.KEY_LEN + 32 + C.ED25519_SIG_LEN  # kind W
DEK_LENS = (DEK_BLOB_LEN, SEALED_DEK_LEN, SIGNED_DEK_LEN)

# (writer id, class) -> the Ed25519 verify key of an enrolled, unrevoked user whose role may
# fill in that class, or None: how a reader decides whose kind-W signature counts.
WriterKeys = Callable[[bytes, str], "bytes | None"]


def parse_dek_header(blob: bytes) -> DekHeader:
    if len(blob) == DEK_REF_LEN and blob[:2] == _REF_PREFIX:
        return DekHeader(blob[2:2 + F.KID_LEN], blob[2 + F.KID_LEN:DEK_REF_LEN], derived=True)
    if len(blob) == DEK_BLOB_LEN and blob[:2] == _DEK_PREFIX:
        return DekHeader(blob[2:2 + F.KID_LEN], blob[2 + F.KID_LEN:DEK_HEADER_LEN])
    if len(blob) == SIGNED_DEK_LEN and blob[:2] == _SIGNED_PREFIX:
        return DekHeader(blob[2:2 + F.KID_LEN], blob[2 + F.KID_LEN:DEK_HEADER_LEN], True,
                         blob[DEK_HEADER_LEN:SIGNED_HEADER_LEN])
    if len(blob) == SEALED_DEK_LEN and blob[:2] == _SEALED_PREFIX:
        return DekHeader(blob[2:2 + F.KID_LEN], blob[2 + F.KID_LEN:DEK_HEADER_LEN], True)
    raise Malformed()


def class_box_secret(class_key: bytes) -> bytes:
    """The class's X25519 secret, derived from its key: holders of the class can open DEKs that
    writers *without* the class sealed to its public key."""
    return C.hkdf_sha256(class_key, F.LABEL_CLASS_BOX)


def sealed_sig_message(header: bytes, box: bytes, context: bytes) -> bytes:
    """What a kind-W writer signs: the blob's header and box, and the hashed context that binds
    them to vault, record, class, key version and field set (so a signed blob cannot move)."""
    return F.LABEL_SEALED_SIG + header + box + context


def seal_dek_to_class(class_public: bytes, class_kid: bytes, class_version: int, dek_id: bytes, dek: bytes,
                      vault_id: bytes, record_id: bytes, cls: str, fields_present: list[str] | tuple[str, ...],
                      writer: bytes, sign: Callable[[bytes], bytes]) -> bytes:
    """Kind W. A sealed box has no associated data, so the context is hashed into the plaintext;
    and anyone holding the public key can make one, so the writer signs it: a reader accepts
    it only from a user the signed user table allows to fill in the class."""
    if len(writer) != F.KID_LEN:
        raise ValueError("writer id must be 8 bytes")
    header = _SIGNED_PREFIX + class_kid + dek_id + writer
    context = C.sha256(dek_aad(header, vault_id, record_id, cls, class_version, fields_present))
    box = C.seal_to(class_public, dek + context)
    return header + box + sign(sealed_sig_message(header, box, context))


def unseal_dek(box_secret: bytes, class_version: int, vault_id: bytes, record_id: bytes, cls: str,
               fields_present: list[str] | tuple[str, ...], blob: bytes,
               writers: WriterKeys | None = None, *, legacy: bool = False) -> bytes:
    """Open a sealed DEK. Kind W: the writer's signature is checked (``writers``) before the box
    is opened. Kind E carries no signature and is refused unless ``legacy`` (only the upgrade
    to database schema v5 passes it, to adopt what older releases wrote)."""
    hdr = parse_dek_header(blob)
    if not hdr.sealed:
        raise Malformed()
    if hdr.writer:
        cut = -C.ED25519_SIG_LEN
        header, box, sig = blob[:SIGNED_HEADER_LEN], blob[SIGNED_HEADER_LEN:cut], blob[cut:]
    elif legacy:
        header, box, sig = blob[:DEK_HEADER_LEN], blob[DEK_HEADER_LEN:], b""
    else:
        raise C.AuthFailure()
    context = C.sha256(dek_aad(header, vault_id, record_id, cls, class_version, fields_present))
    if hdr.writer:
        vk = writers(hdr.writer, cls) if writers is not None else None
        if vk is None:
            raise C.AuthFailure()
        C.ed25519_verify(vk, sealed_sig_message(header, box, context), sig)
    plain = C.unseal(box_secret, box)
    if len(plain) != F.KEY_LEN + 32 or not C.mac_equal(plain[F.KEY_LEN:], context):
        raise C.AuthFailure()
    return plain[:F.KEY_LEN]


def unwrap_dek(class_key: C.Aead, class_version: int, vault_id: bytes, record_id: bytes, cls: str,
               fields_present: list[str] | tuple[str, ...], blob: bytes) -> bytes:
    if parse_dek_header(blob).sealed:
        raise Malformed()
    header = blob[:DEK_HEADER_LEN]
    nonce = blob[DEK_HEADER_LEN:DEK_HEADER_LEN + F.NONCE_LEN]
    aad = dek_aad(header, vault_id, record_id, cls, class_version, fields_present)
    return class_key.open(nonce, blob[DEK_HEADER_LEN + F.NONCE_LEN:], aad)


# -- cell containers --------------------------------------------------------------------
def pack_cells(cells: dict[str, bytes]) -> bytes:
    """Field name -> field blob, sorted by name: u16 count, then (u8 len, name, u32 len, blob)*."""
    out = [struct.pack(">H", len(cells))]
    for name in sorted(cells):
        blob = cells[name]
        out.append(_lp8(name.encode("ascii")))
        out.append(struct.pack(">I", len(blob)))
        out.append(blob)
    return b"".join(out)


def unpack_cells(data: bytes) -> dict[str, bytes]:
    try:
        (count,) = struct.unpack_from(">H", data, 0)
        pos = 2
        cells: dict[str, bytes] = {}
        prev = ""
        for _ in range(count):
            n = data[pos]
            name = data[pos + 1:pos + 1 + n].decode("ascii")
            pos += 1 + n
            (size,) = struct.unpack_from(">I", data, pos)
            pos += 4
            blob = data[pos:pos + size]
            if len(blob) != size or (cells and name <= prev) or not name:
                raise Malformed()
            pos += size
            cells[name] = blob
            prev = name
    except (struct.error, IndexError, UnicodeDecodeError):
        raise Malformed() from None
    if pos != len(data):
        raise Malformed()
    return cells


# -- record rows: every class envelope of one record, framed -----------------------------
def pack_record(envs: list[tuple[str, bytes, bytes]]) -> bytes:
    """u8 count, then per class: u8 len, class, u16 len, wrapped DEK, u32 len, cells."""
    out = [bytes([len(envs)])]
    for cls, dek, cells in envs:
        if len(dek) not in DEK_LENS:
            raise ValueError("bad DEK blob length")
        out.append(_lp8(cls.encode("ascii")))
        out.append(struct.pack(">H", len(dek)))
        out.append(dek)
        out.append(struct.pack(">I", len(cells)))
        out.append(cells)
    return b"".join(out)


def unpack_record(data: bytes) -> dict[str, tuple[bytes, bytes]]:
    try:
        count = data[0]
        pos = 1
        envs: dict[str, tuple[bytes, bytes]] = {}
        for _ in range(count):
            n = data[pos]
            cls = data[pos + 1:pos + 1 + n].decode("ascii")
            pos += 1 + n
            (dl,) = struct.unpack_from(">H", data, pos)
            dek = data[pos + 2:pos + 2 + dl]
            pos += 2 + dl
            (size,) = struct.unpack_from(">I", data, pos)
            pos += 4
            cells = data[pos:pos + size]
            if len(cells) != size or len(dek) != dl or dl not in DEK_LENS or cls in envs:
                raise Malformed()
            pos += size
            envs[cls] = (dek, cells)
    except (struct.error, IndexError, UnicodeDecodeError):
        raise Malformed() from None
    if pos != len(data):
        raise Malformed()
    return envs


def dek_ids(data: bytes) -> bytes:
    """The DEK ids of a row's envelopes, in row order: what a record's logged state names.
    A rewrap keeps them (same DEK); an update or re-encryption draws new ones. Framing only,
    nothing is decrypted; rows of both formats (§6, §6b). Raises Malformed."""
    if data[:2] in ROW_V23:
        return b"".join(parse_dek_header(dek).dek_id for dek, _ in split_v2(data))
    return b"".join(parse_dek_header(dek).dek_id for dek, _ in unpack_record(data).values())


# -- record rows of format 2 (docs/format.md 6b): framing only ---------------------------
DEK_REF_LEN = 2 + 2 * F.KID_LEN  # 0x02 "H" class key id, DEK id
CHECK_LEN = F.TAG_LEN
ROW_V23 = (F.ROW_V2_PREFIX, F.ROW_V3_PREFIX)


def _key_len(data: bytes, pos: int) -> int:
    kind = data[pos:pos + 2]
    if kind == _REF_PREFIX:
        return DEK_REF_LEN
    if kind == _DEK_PREFIX:
        return DEK_BLOB_LEN
    if kind == _SIGNED_PREFIX:
        return SIGNED_DEK_LEN
    if kind == _SEALED_PREFIX:  # never written in format 2; framed so that a reader refuses the envelope
        return SEALED_DEK_LEN
    raise Malformed()


def parse_cells_v2(data: bytes, pos: int, joint: bool = False) -> tuple[list[tuple[int, bytes]], bytes, int]:
    """The cells of a format-2 envelope starting at ``pos`` (their count byte first): the
    (field number, ciphertext) pairs, the check tag (b"" unless there are no cells) and where
    they end. The one parser of cells every reader uses: numbers strictly ascending, the long
    size form only from 256 blocks on, nothing past the end. ``joint`` (format 3, §6c): a
    cell holds its 32·b ciphertext bytes only, and the envelope's one tag follows the cells,
    returned as the check. Raises Malformed/IndexError/struct.error."""
    n = data[pos]
    tag = 0 if joint else F.TAG_LEN
    pos += 1
    cells = []
    prev = 0
    for _ in range(n):
        fno, b = data[pos], data[pos + 1]
        pos += 2
        if b == 0:
            (b,) = _unpack_u32(data, pos)
            pos += 4
            if b < 256:
                raise Malformed()
        if fno <= prev:
            raise Malformed()
        prev = fno
        end = pos + F.PAD_BLOCK * b + tag
        cells.append((fno, data[pos:end]))
        pos = end
    check = b""
    if joint or not n:
        check = data[pos:pos + CHECK_LEN]
        pos += CHECK_LEN
    if pos > len(data):
        raise Malformed()
    return cells, check, pos


def cells_end(data: bytes, pos: int, joint: bool = False) -> int:
    """Where the cells of a format-2 (or, ``joint``, 3) envelope starting at ``pos`` end (parse_cells_v2)."""
    return parse_cells_v2(data, pos, joint)[2]


def split_v2(data: bytes) -> list[tuple[bytes, bytes]]:
    """A format-2 or format-3 row's envelopes in row order: (DEK blob or reference, cells
    bytes). The count of envelopes is the schema's (checked by the readers, which know it).
    Raises Malformed."""
    if data[:2] not in ROW_V23:
        raise Malformed()
    joint = data[:2] == F.ROW_V3_PREFIX
    out = []
    pos = 2
    try:
        while pos < len(data):
            kl = _key_len(data, pos)
            key = data[pos:pos + kl]
            pos += kl
            end = cells_end(data, pos, joint)
            out.append((key, data[pos:end]))
            pos = end
    except (IndexError, struct.error):
        raise Malformed() from None
    return out


def row_envelopes(data: bytes, classes: tuple[str, ...] | list[str]) -> dict[str, tuple[bytes, bytes]]:
    """Class -> (DEK blob or reference, cells) of a row of either format (framing only);
    ``classes``: the schema's, in order (a format-2 or 3 row names none). Raises Malformed."""
    if data[:2] not in ROW_V23:
        return unpack_record(data)
    envs = split_v2(data)
    if len(envs) != len(classes):
        raise Malformed()
    return dict(zip(classes, envs, strict=True))


def unpack_cells_v2(cells: bytes, joint: bool = False) -> tuple[list[tuple[int, bytes]], bytes]:
    """(field number, ciphertext) pairs and the check tag (b"" if none) of format-2 cells
    (one envelope's, nothing after them); ``joint``: of format 3, the tag. Raises Malformed."""
    try:
        parsed, check, end = parse_cells_v2(cells, 0, joint)
    except (IndexError, struct.error):
        raise Malformed() from None
    if end != len(cells):
        raise Malformed()
    return parsed, check


def pack_cells_v2(cells: list[tuple[int, bytes]], check: bytes = b"", joint: bool = False) -> bytes:
    """Format-2 cells: u8 count, then per cell u8 field number, its size in 32-byte blocks
    (u8, or 0x00 then u32 from 256 blocks on) and the ciphertext; then the check tag, if any.
    ``joint`` (format 3): the cells hold no tags; ``check`` is the envelope's tag."""
    out = [bytes([len(cells)])]
    for fno, ct in cells:
        b = (len(ct) - (0 if joint else F.TAG_LEN)) // F.PAD_BLOCK
        out.append(bytes([fno, b]) if b < 256 else bytes([fno, 0]) + _pack_u32(b))
        out.append(ct)
    out.append(check)
    return b"".join(out)


def pack_v2(envs: list[tuple[bytes, bytes]], fmt: int = 2) -> bytes:
    return (F.ROW_V3_PREFIX if fmt == 3 else F.ROW_V2_PREFIX) + b"".join(k + c for k, c in envs)


def class_randomness(n_fields: int) -> int:
    """Bytes of CSPRNG output one class envelope consumes: DEK, DEK id, wrap nonce, field nonces."""
    return F.KEY_LEN + F.KID_LEN + F.NONCE_LEN + F.NONCE_LEN * n_fields


class Codec:
    """The hot path: seal/open a class envelope with per-vault precomputed encodings.

    Produces exactly the bytes of :func:`seal_field` / :func:`wrap_dek` (the vectors
    check both). ``rnd`` is the CSPRNG output to use, injectable for known-answer tests.
    """

    def __init__(self, vault_id: bytes, classes: tuple[str, ...]) -> None:
        self.vid = vault_id
        self.classes = frozenset(classes)
        self._class_names = {c.encode("ascii"): c for c in classes}
        self._lp: dict[str, bytes] = {}
        self._manifests: dict[tuple[str, ...], bytes] = {}
        self._cells: dict[bytes, tuple[str, str, bytes]] = {}
        self._cells_for: dict[str, str] | None = None

    def _name(self, name: str) -> bytes:
        lp = self._lp.get(name)
        if lp is None:
            lp = self._lp[name] = _lp8(name.encode("ascii"))
        return lp

    def _manifest(self, names: tuple[str, ...]) -> bytes:
        m = self._manifests.get(names)
        if m is None:
            m = manifest(names)
            if len(self._manifests) < 4096:
                self._manifests[names] = m
        return m

    def seal_record(self, record_id: bytes,
                    envs: list[tuple[str, bytes, int, Any, list[tuple[str, bytes]]]],
                    rnd: bytes, writer: tuple[bytes, Callable[[bytes], bytes]] | None = None) -> bytes:
        """Seal every class envelope of one record and frame them into a row (write hot path).

        envs: (class, class key id, class version, class key, [(field, plaintext)] sorted by
        field name). ``rnd`` holds class_randomness(n) bytes per class, in order; it is
        injectable so that known-answer vectors pin every byte. ``writer``: (user id, sign) of a
        writer without some class, whose DEKs are then sealed to that class and signed (kind W).
        """
        lps = self._lp
        manifests = self._manifests
        tail = self.vid + record_id
        encryptor = C.aead_encryptor
        out = [bytes([len(envs)])]  # parts of the row, joined once at the end
        pos = 0
        for cls, class_kid, class_version, class_key, items in envs:
            dek = rnd[pos:pos + 32]
            dek_id = rnd[pos + 32:pos + 40]
            wrap_nonce = rnd[pos + 40:pos + 52]
            pos += 52
            enc = encryptor(dek)
            fhead = _FIELD_PREFIX + dek_id
            prefix = fhead + tail
            cells = [_U16[len(items)] if len(items) < 256 else struct.pack(">H", len(items))]
            size = 2
            names = []
            for name, pt in items:
                lp = lps.get(name) or self._name(name)
                nonce = rnd[pos:pos + 12]
                pos += 12
                ct = enc(nonce, pt + _PAD[(-len(pt) - 1) % 32], prefix + lp)
                cells += (lp, _pack_u32(22 + len(ct)), fhead, nonce, ct)
                size += len(lp) + 26 + len(ct)
                names.append(name)
            clp = lps.get(cls) or self._name(cls)
            if isinstance(class_key, bytes):  # the writer lacks this class: seal to its public key
                if writer is None:
                    raise ValueError("sealing to a class's public key needs the writer's signing key")
                wrapped = seal_dek_to_class(class_key, class_kid, class_version, dek_id, dek, self.vid,
                                            record_id, cls, names, *writer)
            else:
                key_names = tuple(names)
                dhead = _DEK_PREFIX + class_kid + dek_id
                aad = (dhead + tail + clp + _pack_u32(class_version)
                       + (manifests.get(key_names) or self._manifest(key_names)))
                wrapped = dhead + wrap_nonce + class_key.encrypt(wrap_nonce, dek, aad)
            out += (clp, _U16[len(wrapped)], wrapped, _pack_u32(size))
            out += cells
        if pos != len(rnd):
            raise ValueError("randomness length does not match the envelopes")
        return b"".join(out)

    def rewrap(self, old: C.Aead, old_version: int, new: C.Aead, new_kid: bytes, new_version: int,
               record_id: bytes, cls: str, names: tuple[str, ...], blob: bytes) -> bytes:
        """Move a kind-D DEK blob to another class key version (same DEK and DEK id), in one
        unwrap and one wrap with the cached encodings. Raises C.AuthFailure / Malformed."""
        if len(blob) != DEK_BLOB_LEN or blob[:2] != _DEK_PREFIX:
            raise Malformed()
        tail = self.vid + record_id
        clp = self._lp.get(cls) or self._name(cls)
        m = self._manifest(names)
        try:
            dek = old.decrypt(blob[18:30], blob[30:], blob[:18] + tail + clp + _pack_u32(old_version) + m)
        except C.AEAD_FAILURES:
            raise C.AuthFailure() from None
        head = _DEK_PREFIX + new_kid + blob[10:18]
        nonce = C.random_bytes(F.NONCE_LEN)
        return head + nonce + new.encrypt(nonce, dek, head + tail + clp + _pack_u32(new_version) + m)

    def key_entry(self, cls: str, version: int, aead: Any, box_secret: bytes = b"") -> tuple[Any, ...]:
        """What :meth:`open_record`'s ``keys`` maps a class key id to: (class, version, Aead,
        box secret, the DEK AAD's class-and-version bytes, computed once here)."""
        return (cls, version, aead, box_secret, self._name(cls) + _pack_u32(version))

    def _cell_table(self, field_class: dict[str, str]) -> dict[bytes, tuple[str, str, bytes]]:
        """Raw cell-name bytes -> (field, class, length-prefixed name), for the read hot path:
        one dict lookup both decodes a cell's name and rejects one the schema does not know."""
        if self._cells_for is not field_class:
            self._cells = {n.encode("ascii"): (n, c, self._name(n)) for n, c in field_class.items()}
            self._cells_for = field_class
        return self._cells

    def open_record(self, data: bytes, record_id: bytes, keys: dict[bytes, tuple[Any, ...]],
                    classes: dict[str, list[str] | None], field_class: dict[str, str],
                    decoders: dict[str, Callable[[bytes], Any]] | None = None,
                    writers: WriterKeys | None = None) -> dict[str, Any]:
        """Parse a record row and decrypt the wanted cells in one pass (the read hot path).
        ``keys``: class key id -> :meth:`key_entry`; ``classes``: class -> wanted fields (None =
        all); ``field_class``: field -> class; ``decoders``: field -> bytes-to-value (None: the
        encoded bytes); ``writers``: whose signature a sealed (kind W) DEK may carry. Every
        envelope's framing is checked, only wanted classes are decrypted. Raises Malformed,
        EnvelopeFailure(cls), FieldFailure(name) or FieldEncoding(name)."""
        known = self._cell_table(field_class)
        class_names = self._class_names
        tail = self.vid + record_id
        unpack = _unpack_u32
        decryptor = C.aead_decryptor
        out: dict[str, bytes] = {}
        seen = set()
        try:
            count = data[0]
            pos = 1
            for _ in range(count):
                n = data[pos]
                raw = data[pos + 1:pos + 1 + n]
                cls = class_names.get(raw) or raw.decode("ascii")
                pos += 1 + n
                (dl,) = _unpack_u16(data, pos)
                dek_blob = data[pos + 2:pos + 2 + dl]
                pos += 2 + dl
                (size,) = unpack(data, pos)
                pos += 4
                end = pos + size
                if end > len(data) or cls in seen or len(dek_blob) != dl:
                    raise Malformed()
                seen.add(cls)
                if cls not in classes:
                    pos = end
                    continue
                # cells: u16 count, then (u8 len, name, u32 len, blob)*, names strictly ascending
                (ncells,) = _unpack_u16(data, pos)
                pos += 2
                cells, present = [], []
                prev = b""
                for _ in range(ncells):
                    ln = data[pos]
                    raw = data[pos + 1:pos + 1 + ln]
                    cell = known.get(raw)
                    if cell is None or cell[1] != cls or raw <= prev:
                        raise EnvelopeFailure(cls)
                    (bl,) = unpack(data, pos + 1 + ln)
                    pos += 5 + ln
                    cells.append((cell, data[pos:pos + bl]))
                    present.append(cell[0])
                    pos += bl
                    prev = raw
                if pos != end:
                    raise Malformed()
                dek = self._open_dek_v1(cls, dek_blob, keys, record_id, tuple(present), writers)
                _open_cells(decryptor(dek), _FIELD_PREFIX + dek_blob[10:18], tail, cells, classes[cls], decoders, out)
            if pos != len(data):
                raise Malformed()
        except (IndexError, struct.error, UnicodeDecodeError):
            raise Malformed() from None
        if seen != self.classes:  # a row must hold exactly the schema's class envelopes
            odd = sorted(self.classes.symmetric_difference(seen))
            raise EnvelopeFailure(odd[0])
        return out


    def _open_dek_v1(self, cls: str, dek_blob: bytes, keys: dict[bytes, tuple[Any, ...]], record_id: bytes,
                     names: tuple[str, ...], writers: WriterKeys | None) -> bytes:
        """The DEK of one format-1 envelope: a wrapped one (kind D) under the class key its
        key id names, or a sealed one (kind W) from a write-only writer. Raises EnvelopeFailure."""
        entry = keys.get(dek_blob[2:10])
        if entry is None or entry[0] != cls:
            raise EnvelopeFailure(cls)
        if dek_blob[:2] == _DEK_PREFIX and len(dek_blob) == DEK_BLOB_LEN:
            manifest = self._manifests.get(names) or self._manifest(names)
            aad = dek_blob[:18] + self.vid + record_id + entry[4] + manifest
            try:
                return bytes(entry[2].decrypt(dek_blob[18:30], dek_blob[30:], aad))
            except C.AEAD_FAILURES:
                raise EnvelopeFailure(cls) from None
        if dek_blob[:2] == _SIGNED_PREFIX and len(dek_blob) == SIGNED_DEK_LEN:
            try:
                return unseal_dek(entry[3], entry[1], self.vid, record_id, cls, names, dek_blob, writers)
            except (C.AuthFailure, Malformed):
                raise EnvelopeFailure(cls) from None
        raise EnvelopeFailure(cls)


def _open_cells(dec: Callable[[bytes, bytes, bytes], bytes], fhead: bytes, tail: bytes,
                cells: list[tuple[tuple[str, str, bytes], bytes]], want: list[str] | None,
                decoders: dict[str, Callable[[bytes], Any]] | None, out: dict[str, Any]) -> None:
    """Decrypt the wanted cells of one class envelope into ``out`` (open_record's inner loop)."""
    prefix = fhead + tail
    for (name, _, lp), blob in cells:
        if want is not None and name not in want:
            continue
        try:
            if blob[:10] != fhead or len(blob) < 70:
                raise Malformed()
            pt = dec(blob[10:22], blob[22:], prefix + lp)
            stripped = pt.rstrip(b"\x00")
            if not stripped or stripped[-1] != 0x80 or len(pt) % 32:
                raise Malformed()
        except (Malformed,) + C.AEAD_FAILURES:
            raise FieldFailure(name) from None
        out[name] = decode_value(name, stripped[:-1], decoders)


def decode_value(name: str, raw: bytes, decoders: dict[str, Callable[[bytes], Any]] | None) -> Any:
    """A cell's authentic plaintext as its field's value (``decoders`` None: the bytes), or
    FieldEncoding naming the field. The decoder's own error (UnicodeDecodeError included)
    holds the plaintext, so FieldEncoding is raised outside the handler, where that error
    would become its __context__."""
    if decoders is None:
        return raw
    try:
        return decoders[name](raw)
    except ValueError:
        pass
    raise FieldEncoding(name)


class FieldEncoding(Exception):
    """An authentic plaintext that is not a valid value of its field's type. Names the field only."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class EnvelopeFailure(Exception):
    """A class envelope failed (unknown key, foreign field, bad DEK tag). Names the class only."""

    def __init__(self, cls: str) -> None:
        super().__init__(cls)
        self.cls = cls


_FIELD_PREFIX = _V + F.KIND_FIELD
_DEK_PREFIX = _V + F.KIND_DEK
_PAD = [b"\x80" + b"\x00" * i for i in range(32)]
_pack_u32 = struct.Struct(">I").pack
_unpack_u32 = struct.Struct(">I").unpack_from
_unpack_u16 = struct.Struct(">H").unpack_from
_U16 = [struct.pack(">H", i) for i in range(256)]
_SEALED_PREFIX = _V + F.KIND_DEK_SEALED
_SIGNED_PREFIX = _V + F.KIND_DEK_SIGNED
_REF_PREFIX = bytes([F.RECORD_FORMAT]) + F.KIND_DEK_DERIVED
assert F.PAD_BLOCK == 32 and F.NONCE_LEN == 12 and F.KID_LEN == 8 and FIELD_HEADER_LEN == 10


class FieldFailure(Exception):
    """One cell failed to decrypt; carries the field name only."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name
