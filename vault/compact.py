"""Record rows of format 2 (docs/format.md 6b): the compact layout writers use now.

Format 1 (:mod:`vault.envelope`, §4-6) stored per cell a 10-byte header, a 12-byte nonce,
the field's name and a u32 length, and per class a 78-byte wrapped DEK and the class's
name: ~2.2 KB a record for ~0.4 KB of plaintext. Format 2 keeps every binding and stores
only what a reader cannot recompute:

* A class DEK is derived, not wrapped: ``HKDF-Expand(class key, info)`` where ``info``
  names the vault, record, class, key version, a fresh random DEK id and the set of cells
  present. What is stored is the 18-byte reference (``0x02 "H"``, class key id, DEK id).
  A new DEK id is drawn at every seal, so every update still gets a fresh DEK, and a
  dropped or added cell changes the DEK so every other cell fails (a reader always opens
  the first cell; an envelope with no cells carries a check tag instead).
* Each cell is still its own AES-GCM ciphertext, bound to vault, record, DEK id, field
  number and field name; its nonce is the field number, unique because a DEK encrypts
  one record-class's cells once (docs/threat-model.md, "Derived nonces").
* Field numbers (1-based schema order, authenticated with the schema) replace names;
  the schema's class order replaces class names; a cell's length is its block count.

Writers without a class (kind W, §5a) and rotations without re-encryption (kind D, §5)
keep their blobs inside this frame. Rows of format 1 are read as before: an update keeps a
row's format (its untouched envelopes cannot be re-sealed by a role without them), and a
re-encryption or a move rewrites it in format 2.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from . import _crypto as C
from . import _format as F
from . import envelope as E

_V2 = bytes([F.RECORD_FORMAT])
_REF = _V2 + F.KIND_DEK_DERIVED
_FIELD = _V2 + F.KIND_FIELD_V2
_CHECK = _V2 + F.KIND_EMPTY_CHECK
_JOINT = bytes([3]) + F.KIND_JOINT
JOINT_NONCE = bytes(F.NONCE_LEN)  # format 3: a DEK encrypts one plaintext, its envelope's cells
_LABELS = {2: F.LABEL_RECORD_DEK, 3: F.LABEL_RECORD_DEK_V3}
_V1_DEK, _V1_SIGNED, _V1_SEALED = b"\x01" + F.KIND_DEK, b"\x01" + F.KIND_DEK_SIGNED, b"\x01" + F.KIND_DEK_SEALED
CHECK_NONCE = b"\xff" * F.NONCE_LEN  # never a cell's nonce (those are 0x00 * 11 || u8 field number)
_NONCES = [bytes(11) + bytes([i]) for i in range(256)]
_PAD = [b"\x80" + b"\x00" * i for i in range(32)]
_pack_u32 = struct.Struct(">I").pack
_unpack_u32 = struct.Struct(">I").unpack_from
_BYTE = [bytes([i]) for i in range(256)]
_U32 = [struct.pack(">I", i) for i in range(256)]  # a cell's block count in the format-3 AAD
_SIZE = [[bytes([f, b]) for b in range(256)] for f in range(256)]  # a cell's u8 number || u8 blocks
_KEY_LENS = {_REF: 18, _V1_DEK: 78, _V1_SIGNED: 202, _V1_SEALED: 130}
# The randomness one class envelope takes, in order: DEK(32, used only when sealed to a
# class's public key, kind W) || DEK id(8).
CLASS_RANDOMNESS = F.KEY_LEN + F.KID_LEN
# Codec.batch_sealer's per set of cells present in a class: DEK-info tail (class, version,
# manifest) and per cell (number, name, AAD tail).
_Shape = tuple[bytes, list[tuple[int, str, bytes]]]


def field_nonce(fno: int) -> bytes:
    return _NONCES[fno]


def field_aad(dek_id: bytes, vault_id: bytes, record_id: bytes, fno: int, name: str) -> bytes:
    return _FIELD + dek_id + vault_id + record_id + bytes([fno]) + E._lp8(name.encode("ascii"))


def check_aad(dek_id: bytes, vault_id: bytes, record_id: bytes) -> bytes:
    return _CHECK + dek_id + vault_id + record_id


def dek_info(ref: bytes, vault_id: bytes, record_id: bytes, cls: str, class_version: int,
             names: list[str] | tuple[str, ...], fmt: int = 2) -> bytes:
    """HKDF-Expand info of a derived DEK: the label (one per record format), the stored
    reference (class key id and DEK id), vault, record, class, key version and the manifest
    of the cells present (§5)."""
    return (_LABELS[fmt] + ref + vault_id + record_id + E._lp8(cls.encode("ascii"))
            + _pack_u32(class_version) + E.manifest(names))


def joint_aad(dek_id: bytes, vault_id: bytes, record_id: bytes, cells: list[tuple[int, str, int]]) -> bytes:
    """Associated data of a format-3 envelope's one ciphertext (§6c): the DEK id, vault and
    record, then the framing it is cut by, each cell's field number, name and size in blocks,
    so that no cell can be moved, renamed, resized or dropped without the tag failing.
    The read and write hot paths (Codec._open_joint, _joint_cells) build the same bytes inline,
    from each field's precomputed AAD tail, in the pass they make over the cells anyway (a
    shared builder measured 13% slower on a full read); record_v3.json pins all three."""
    return (_JOINT + dek_id + vault_id + record_id + _BYTE[len(cells)]
            + b"".join(bytes([fno]) + E._lp8(name.encode("ascii")) + _pack_u32(b) for fno, name, b in cells))


def _joint_cells(enc: Callable[[bytes, bytes, bytes], bytes], head: bytes,
                 cells: list[tuple[int, str, bytes]], values: Mapping[str, bytes], out: list[bytes]) -> None:
    """Append one format-3 envelope's cells (after its key) to ``out``: ``head`` is the AAD's
    start (0x03 "J", DEK id, vault, record); ``cells``: (number, name, AAD tail u8(number) ||
    lp8(name)), by number; ``values``: name -> plaintext. One AEAD call seals every cell of
    the class."""
    padded, frame = [], []
    aad = [head, _BYTE[len(cells)]]
    for fno, name, suffix in cells:
        pt = values[name]
        p = pt + _PAD[(-len(pt) - 1) % 32]
        b = len(p) >> 5
        padded.append(p)
        if b < 256:
            aad += (suffix, _U32[b])
            frame.append(_SIZE[fno][b])
        else:
            aad += (suffix, _pack_u32(b))
            frame.append(bytes([fno, 0]) + _pack_u32(b))
    ct = enc(JOINT_NONCE, b"".join(padded), b"".join(aad))
    out.append(_BYTE[len(cells)])
    off = 0
    for size, p in zip(frame, padded, strict=True):
        end = off + len(p)
        out += (size, ct[off:end])
        off = end
    out.append(ct[off:])


def record_prk(class_key: bytes) -> bytes:
    """The key that derives a class's record DEKs, HKDF'd from the class key: the class key
    itself stays an AES-GCM key only (format 1's wraps), never also an HMAC key."""
    return C.hkdf_sha256(class_key, F.LABEL_RECORD_PRK)


def derive_dek(class_key: bytes, info: bytes) -> bytes:
    return C.hkdf_expand32(record_prk(class_key))(info)


class Codec(E.Codec):
    """:class:`vault.envelope.Codec` that writes format 2 and reads both formats.

    ``fields``: the schema's field names in schema order (field number = position + 1).
    A schema of more than FIELD_NUMBER_MAX fields keeps writing format 1."""

    def __init__(self, vault_id: bytes, classes: tuple[str, ...], fields: tuple[str, ...] = ()) -> None:
        super().__init__(vault_id, classes)
        self.numbers = {n: i + 1 for i, n in enumerate(fields)} if len(fields) <= F.FIELD_NUMBER_MAX else {}
        self.names = {i: n for n, i in self.numbers.items()}
        # per field, computed once: (number, name, the cell AAD's tail u8(number) || lp8(name))
        self._cell_enc = {n: (i, n, bytes([i]) + E._lp8(n.encode("ascii"))) for n, i in self.numbers.items()}
        self._cell_dec: dict[int, tuple[str, str, bytes]] = {}
        self._dec_for: dict[str, str] | None = None
        self.order = tuple(classes)
        self._prf: dict[bytes, Callable[[bytes], bytes]] = {}  # class key id -> HKDF-Expand under it
        self.legacy = not self.numbers  # write format 1 (tests and the byte benchmark set it)
        self.newest = 3  # the format new rows are written in (tests and the byte benchmark set 2)

    def key_entry(self, cls: str, version: int, aead: Any, box_secret: bytes = b"",
                  secret: bytes = b"", kid: bytes = b"") -> tuple[Any, ...]:
        """As :meth:`vault.envelope.Codec.key_entry`; ``secret`` and ``kid`` also register the
        class key for deriving format-2 DEKs (writers and readers)."""
        if secret and kid:
            self._prf[kid] = C.hkdf_expand32(record_prk(secret))
        return super().key_entry(cls, version, aead, box_secret)

    def clear_keys(self) -> None:
        """Forget every registered class key (a new keyring replaces them all: destroyed
        versions must not live on here)."""
        self._prf.clear()

    def writes(self, data: bytes | None = None) -> int:
        """The format a seal writes: 3 (§6c), unless the codec is legacy (1) or ``data`` (the
        row being updated) is of format 1 or 2, which keeps its format (its other envelopes
        stay as they are: a role without their classes could not re-seal them)."""
        if self.legacy:
            return 1
        if data is None:
            return self.newest
        if data[:2] == F.ROW_V3_PREFIX:
            return 3
        return 2 if data[:2] == F.ROW_V2_PREFIX else 1

    def seal_record(self, record_id: bytes,
                    envs: list[tuple[str, bytes, int, Any, list[tuple[str, bytes]]]],
                    rnd: bytes, writer: tuple[bytes, Callable[[bytes], bytes]] | None = None,
                    version: int = 2) -> bytes:
        """Seal every class envelope of one record in format ``version`` (3: §6c; 2: §6b; 1: §6,
        with class_randomness(n) bytes of ``rnd`` per class). Formats 2 and 3 take
        CLASS_RANDOMNESS bytes of ``rnd`` per class; ``envs`` as for format 1 (fields sorted by
        name or not)."""
        if version == 1:
            return super().seal_record(record_id, envs, rnd, writer)
        cell_of = self._cell_enc
        vid = self.vid
        tail = vid + record_id
        label_tail = _LABELS[version]
        encryptor = C.aead_encryptor
        out = [F.ROW_V3_PREFIX if version == 3 else F.ROW_V2_PREFIX]
        pos = 0
        for cls, class_kid, class_version, class_key, items in envs:
            dek_id = rnd[pos + 32:pos + 40]
            cells = sorted([cell_of[name] + (pt,) for name, pt in items])
            if isinstance(class_key, bytes):  # the writer lacks this class: seal to its public key
                if writer is None:
                    raise ValueError("sealing to a class's public key needs the writer's signing key")
                dek = rnd[pos:pos + 32]
                key = E.seal_dek_to_class(class_key, class_kid, class_version, dek_id, dek, vid, record_id,
                                          cls, [c[1] for c in cells], *writer)
            else:
                key = _REF + class_kid + dek_id
                names = tuple(sorted(c[1] for c in cells))
                m = self._manifests.get(names) or self._manifest(names)
                clp = self._lp.get(cls) or self._name(cls)
                dek = self._prf[class_kid](label_tail + key + tail + clp + _pack_u32(class_version) + m)
            pos += CLASS_RANDOMNESS
            enc = encryptor(dek)
            if version == 3:
                out.append(key)
                _joint_cells(enc, _JOINT + dek_id + tail, [c[:3] for c in cells], dict(items), out)
                continue
            out += (key, _BYTE[len(cells)])
            prefix = _FIELD + dek_id + tail
            for fno, _name, suffix, pt in cells:
                ct = enc(_NONCES[fno], pt + _PAD[(-len(pt) - 1) % 32], prefix + suffix)
                b = (len(ct) - 16) >> 5
                out += (_SIZE[fno][b] if b < 256 else bytes([fno, 0]) + _pack_u32(b), ct)
            if not cells:  # nothing else would show that this DEK (and so "no cells") is authentic
                out.append(enc(CHECK_NONCE, b"", _CHECK + dek_id + tail))
        if pos != len(rnd):
            raise ValueError("randomness length does not match the envelopes")
        return b"".join(out)

    def batch_sealer(self, envs: list[tuple[str, bytes, int, Any]]
                     ) -> Callable[[bytes, dict[str, dict[str, bytes]], bytes, list[bytes] | None], bytes] | None:
        """:meth:`seal_record` (format 3) for many records under the same class keys
        ``envs`` (class, key id, key version, key object; every class, in schema order):
        ``seal(record id, class -> field -> plaintext, rnd, bodies)``, the same bytes for the
        same ``rnd`` (tests/test_bulk_seal.py compares them); a list ``bodies`` gets each
        envelope's DEK id and the bytes after its key (what its record state hashes,
        vault.record_states), so the writer need not parse the row again.

        Why: a bulk insert seals every record with the same keys, so what does not depend
        on the record (each cell's AAD tail, the DEK-info tail of each set of cells present)
        is computed once per set of cells, not once per record (the per-record work left is
        the crypto itself). None when this codec does not write format 3 or a class is sealed
        to its public key (the caller seals one by one)."""
        if self.legacy or self.newest != 3 or any(isinstance(key, bytes) or kid not in self._prf
                                                  for _, kid, _, key in envs):
            return None
        label, vid, cell_of = F.LABEL_RECORD_DEK_V3, self.vid, self._cell_enc
        plans: list[tuple[str, bytes, bytes, Callable[[bytes], bytes], dict[tuple[str, ...], _Shape]]] = [
            (cls, _REF + kid, (self._lp.get(cls) or self._name(cls)) + _pack_u32(version), self._prf[kid], {})
            for cls, kid, version, _key in envs]
        need = CLASS_RANDOMNESS * len(plans)
        encryptor = C.aead_encryptor

        def shape(cache: dict[tuple[str, ...], _Shape], names: tuple[str, ...], class_tail: bytes) -> _Shape:
            got = (class_tail + self._manifest(names), sorted(cell_of[n] for n in names))  # by field number
            if len(cache) < 256:  # one entry per set of fields present (in the order given)
                cache[names] = got
            return got

        def seal(record_id: bytes, by_class: dict[str, dict[str, bytes]], rnd: bytes,
                 bodies: list[bytes] | None = None) -> bytes:
            if len(rnd) != need:
                raise ValueError("randomness length does not match the envelopes")
            tail = vid + record_id
            out = [F.ROW_V3_PREFIX]
            pos = 32
            for cls, ref, class_tail, prf, cache in plans:
                values = by_class.get(cls) or {}
                names = tuple(values)
                info_tail, cells = cache.get(names) or shape(cache, names, class_tail)
                dek_id = rnd[pos:pos + 8]
                pos += CLASS_RANDOMNESS
                key = ref + dek_id
                out.append(key)
                mark = len(out)
                _joint_cells(encryptor(prf(label + key + tail + info_tail)), _JOINT + dek_id + tail, cells, values, out)
                if bodies is not None:
                    bodies.append(b"".join([dek_id, *out[mark:]]))
            return b"".join(out)
        return seal

    def unpack(self, data: bytes) -> dict[str, tuple[bytes, bytes]]:
        """Class -> (DEK blob or reference, cells bytes) of a row of either format, framing
        only. A format-2 row must hold exactly the schema's classes. Raises Malformed."""
        return E.row_envelopes(data, self.order)

    def unpack_some(self, data: bytes, only: set[str] | frozenset[str]) -> dict[str, tuple[bytes, bytes]]:
        """As :meth:`unpack`, for a row sealed with only the classes ``only`` (in schema order)."""
        if data[:2] not in E.ROW_V23:
            return E.unpack_record(data)
        return dict(zip([c for c in self.order if c in only], E.split_v2(data), strict=True))

    def pack(self, fmt: int, envs: dict[str, tuple[bytes, bytes]]) -> bytes:
        """The row of format ``fmt`` holding ``envs`` (every schema class) in schema order."""
        if fmt == 1:
            return E.pack_record([(c, envs[c][0], envs[c][1]) for c in self.order])
        return E.pack_v2([envs[c] for c in self.order], fmt)

    def cell_names(self, data: bytes, cells: bytes) -> tuple[str, ...]:
        """The field names of one envelope's cells (``data``: the row, for its format)."""
        if data[:2] not in E.ROW_V23:
            return tuple(E.unpack_cells(cells))
        try:
            return tuple(self.names[fno] for fno, _ in E.unpack_cells_v2(cells, data[:2] == F.ROW_V3_PREFIX)[0])
        except KeyError:
            raise E.Malformed() from None

    def derived_dek(self, entry: tuple[Any, ...], ref: bytes, record_id: bytes, cls: str,
                    names: tuple[str, ...], fmt: int = 2) -> bytes:
        """The DEK a kind-H reference names in a row of format ``fmt``, from ``entry``
        (key_entry) of its class key."""
        prf = self._prf.get(ref[2:10])
        if prf is None:
            raise E.EnvelopeFailure(cls)
        return prf(dek_info(ref, self.vid, record_id, cls, entry[1], names, fmt))

    def authenticate_derived(self, dek: bytes, ref: bytes, record_id: bytes, cells: bytes, fmt: int = 2) -> None:
        """Check that a derived DEK is the one the envelope was sealed with: open its first cell
        (or its check tag; format 3: its one ciphertext). Raises C.AuthFailure / Malformed.
        Rotation calls this before it wraps such a DEK under a new key version, so a tampered
        envelope is not laundered."""
        parsed, check = E.unpack_cells_v2(cells, fmt == 3)
        dek_id, tail = ref[10:18], self.vid + record_id
        aead = C.Aead(dek)
        if fmt == 3:
            named = [(fno, self.names.get(fno), len(ct) >> 5) for fno, ct in parsed]
            if any(n is None for _, n, _ in named):
                raise E.Malformed()
            aead.open(JOINT_NONCE, b"".join(ct for _, ct in parsed) + check,
                      joint_aad(dek_id, self.vid, record_id, named))  # type: ignore[arg-type]
            return
        if not parsed:
            aead.open(CHECK_NONCE, check, _CHECK + dek_id + tail)
            return
        fno, ct = parsed[0]
        name = self.names.get(fno)
        if name is None or check:
            raise E.Malformed()
        aead.open(_NONCES[fno], ct, field_aad(dek_id, self.vid, record_id, fno, name))

    def open_record(self, data: bytes, record_id: bytes, keys: dict[bytes, tuple[Any, ...]],
                    classes: dict[str, list[str] | None], field_class: dict[str, str],
                    decoders: dict[str, Callable[[bytes], Any]] | None = None,
                    writers: E.WriterKeys | None = None) -> dict[str, Any]:
        """As :meth:`vault.envelope.Codec.open_record`, for rows of any format. One pass over a
        format-2 or 3 row: every envelope's framing is checked, wanted classes decrypted."""
        joint = data[:2] == F.ROW_V3_PREFIX
        if not joint and data[:2] != F.ROW_V2_PREFIX:
            return super().open_record(data, record_id, keys, classes, field_class, decoders, writers)
        out: dict[str, Any] = {}
        if self._dec_for is not field_class:  # field number -> (name, class, AAD tail), per schema view
            self._cell_dec = {self.numbers[n]: (n, c, self._cell_enc[n][2])
                              for n, c in field_class.items() if n in self.numbers}
            self._dec_for = field_class
        cell_dec = self._cell_dec
        pos = 2
        try:
            for cls in self.order:
                kind = data[pos:pos + 2]
                kl = _KEY_LENS.get(kind)
                if kl is None:
                    raise E.Malformed()
                key = data[pos:pos + kl]
                pos += kl
                cells, check, pos = E.parse_cells_v2(data, pos, joint)
                if cls not in classes:
                    continue
                if joint:
                    self._open_joint(cls, key, cells, check, record_id, keys, classes[cls], cell_dec,
                                     decoders, writers, out)
                else:
                    self._open_class(cls, key, cells, check, record_id, keys, classes[cls], cell_dec,
                                     decoders, writers, out)
        except (IndexError, struct.error):
            raise E.Malformed() from None
        if pos != len(data):
            raise E.Malformed()
        return out

    def _open_class(self, cls: str, key: bytes, cells: list[tuple[int, bytes]], check: bytes, record_id: bytes,
                    keys: dict[bytes, tuple[Any, ...]], want: list[str] | None,
                    cell_dec: dict[int, tuple[str, str, bytes]],
                    decoders: dict[str, Callable[[bytes], Any]] | None, writers: E.WriterKeys | None,
                    out: dict[str, Any]) -> None:
        """Open one envelope of a format-2 row (open_record's inner part)."""
        present = self._present(cls, cells, cell_dec)
        tail = self.vid + record_id
        dek_id = key[10:18]
        derived = len(key) == E.DEK_REF_LEN
        dec = C.aead_decryptor(self._class_dek(cls, key, present, record_id, keys, writers, 2))
        if not cells:
            try:
                dec(CHECK_NONCE, check, _CHECK + dek_id + tail)
            except C.AEAD_FAILURES:
                raise E.EnvelopeFailure(cls) from None
            return
        prefix = _FIELD + dek_id + tail
        first = derived  # the first cell authenticates a derived DEK (the set of cells): always opened
        for (fno, ct), (name, _, suffix) in zip(cells, present, strict=True):
            wanted = want is None or name in want
            if not (wanted or first):
                continue
            first = False
            try:
                pt = dec(_NONCES[fno], ct, prefix + suffix)
                stripped = pt.rstrip(b"\x00")
                if not stripped or stripped[-1] != 0x80:
                    raise E.Malformed()
            except (E.Malformed,) + C.AEAD_FAILURES:
                raise E.FieldFailure(name) from None
            if wanted:
                out[name] = E.decode_value(name, stripped[:-1], decoders)

    @staticmethod
    def _present(cls: str, cells: list[tuple[int, bytes]],
                 cell_dec: dict[int, tuple[str, str, bytes]]) -> list[tuple[str, str, bytes]]:
        """(name, class, AAD tail) of each cell of one envelope; a field the schema does not
        number, or of another class, fails the envelope."""
        present = []
        for fno, _ in cells:
            cell = cell_dec.get(fno)
            if cell is None or cell[1] != cls:
                raise E.EnvelopeFailure(cls)
            present.append(cell)
        return present

    def _class_dek(self, cls: str, key: bytes, present: list[tuple[str, str, bytes]], record_id: bytes,
                   keys: dict[bytes, tuple[Any, ...]], writers: E.WriterKeys | None, fmt: int) -> bytes:
        """The DEK of one envelope of a format-2 or 3 row: derived (kind H, under the label of
        ``fmt``), unwrapped (D) or unsealed from its writer (W). Raises EnvelopeFailure."""
        entry = keys.get(key[2:10])
        if entry is None or entry[0] != cls:
            raise E.EnvelopeFailure(cls)
        names = tuple(sorted(c[0] for c in present))
        try:
            if len(key) == E.DEK_REF_LEN:
                prf = self._prf.get(key[2:10])
                if prf is None:
                    raise E.Malformed()
                return prf(_LABELS[fmt] + key + self.vid + record_id + entry[4]
                           + (self._manifests.get(names) or self._manifest(names)))
            if len(key) == E.DEK_BLOB_LEN:
                return E.unwrap_dek(entry[2], entry[1], self.vid, record_id, cls, names, key)
            return E.unseal_dek(entry[3], entry[1], self.vid, record_id, cls, names, key, writers)
        except (C.AuthFailure, E.Malformed):
            raise E.EnvelopeFailure(cls) from None

    def _open_joint(self, cls: str, key: bytes, cells: list[tuple[int, bytes]], tag: bytes, record_id: bytes,
                    keys: dict[bytes, tuple[Any, ...]], want: list[str] | None,
                    cell_dec: dict[int, tuple[str, str, bytes]],
                    decoders: dict[str, Callable[[bytes], Any]] | None, writers: E.WriterKeys | None,
                    out: dict[str, Any]) -> None:
        """Open one envelope of a format-3 row: its one ciphertext, whole (its tag covers every
        cell and the framing), then the wanted cells cut out of the plaintext."""
        aad = [_JOINT, key[10:18], self.vid, record_id, _BYTE[len(cells)]]
        cts, present = [], []
        for fno, ct in cells:  # _present's checks, and the associated data, in one pass
            cell = cell_dec.get(fno)
            if cell is None or cell[1] != cls:
                raise E.EnvelopeFailure(cls)
            present.append(cell)
            aad += (cell[2], _U32[len(ct) >> 5] if len(ct) < 8192 else _pack_u32(len(ct) >> 5))
            cts.append(ct)
        cts.append(tag)
        dek = self._class_dek(cls, key, present, record_id, keys, writers, 3)
        try:
            pt = C.aead_decryptor(dek)(JOINT_NONCE, b"".join(cts), b"".join(aad))
        except C.AEAD_FAILURES:
            raise E.EnvelopeFailure(cls) from None
        off = 0
        for (name, _, _), ct in zip(present, cts, strict=False):
            end = off + len(ct)
            if want is not None and name not in want:
                off = end
                continue
            stripped = pt[off:end].rstrip(b"\x00")
            off = end
            if not stripped or stripped[-1] != 0x80:
                raise E.FieldFailure(name)
            out[name] = E.decode_value(name, stripped[:-1], decoders)


def class_randomness(n_fields: int, fmt: int) -> int:
    """CSPRNG bytes one class envelope of ``n_fields`` cells takes in format ``fmt``."""
    return CLASS_RANDOMNESS if fmt != 1 else E.class_randomness(n_fields)
