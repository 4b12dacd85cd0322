"""Blind indexes and per-purpose pseudonyms: finding people without plaintext columns.

Blind index (CipherSweet's design): ``HMAC-SHA256(k_field, normalise(value))``
truncated to ``b`` bits, where ``k_field`` is derived from the field's *class key*
(so only holders of that class can search it) and ``b`` is planned from the vault's
expected population so that each index value is shared by at least ``k`` records.
Matches are candidates: they are decrypted and compared exactly, so a truncated
index never returns a wrong person, it only costs a few extra decryptions.

Pseudonym: ``HMAC-SHA256(k_purpose_prf, record_id)`` truncated to 50 bits, spelled by
:mod:`vault.pseudonym`. The vault stores only pseudonyms that were issued, as
``(purpose, HMAC(k_tag, value), AEAD(k_ref, record_id))``: enough to resolve one,
nothing that links a record's badge pseudonym to its travel pseudonym.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Mapping

from . import _crypto as C
from . import _format as F
from .envelope import _lp8
from .normalize import normalize, normalizer, tokens
from .schema import Field, Schema


def plan_bits(population: int, k: int) -> int:
    """Largest b with 2^b * k <= population (0: the index would not narrow anything)."""
    if population < 1 or k < 1:
        raise ValueError("population and k must be positive")
    b = 0
    while b < F.INDEX_MAX_BITS and (2 ** (b + 1)) * k <= population:
        b += 1
    return b


def expected_false_positives(population: int, bits: int) -> float:
    """Other records expected to share a unique value's index bucket: (N - 1) / 2^b."""
    return (population - 1) / (2**bits)


@dataclass(frozen=True)
class Plan:
    """The stored, authenticated index plan. ``gen`` numbers index generations so a
    re-index can build the next one beside the live one and switch atomically."""

    gen: int
    bits: int
    population: int
    k: int
    class_versions: dict[str, int]

    def to_text(self) -> str:
        return json.dumps({"gen": self.gen, "bits": self.bits, "population": self.population, "k": self.k,
                           "class_versions": self.class_versions}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str) -> "Plan":
        d = json.loads(text)
        return cls(int(d["gen"]), int(d["bits"]), int(d["population"]), int(d["k"]),
                   {str(k): int(v) for k, v in d["class_versions"].items()})


def index_names(f: Field) -> list[str]:
    """Index names a field contributes to (its exact index, and its token index)."""
    if f.search != "exact":
        return []
    return [f.name] + ([f"{f.name}#tokens"] if f.tokens else [])


class Indexer:
    """Computes index terms for one plan generation, with keys derived per field."""

    def __init__(self, schema: Schema, class_keys: dict[str, bytes], bits: int) -> None:
        self.bits = bits
        self.fields = [f for f in schema.fields.values() if f.search == "exact"]
        self._prf: dict[str, C.Prf] = {}
        for f in self.fields:
            key = class_keys.get(f.cls)
            if key is None:
                continue  # the caller's role lacks this class: it cannot search the field
            self._prf[f.name] = C.Prf(derive_index_key(key, f.name, "exact"))
            if f.tokens:
                self._prf[f"{f.name}#tokens"] = C.Prf(derive_index_key(key, f.name, "token"))
        # terms()'s loop, resolved once: (field, its normaliser, exact PRF, token index name
        # and PRF or None, whether the exact form is already the "name" form tokens need, and
        # for a typed field its encoder instead of a normaliser)
        self._plan = [(f.name, normalizer(f.normalize), self._prf[f.name],
                       f"{f.name}#tokens" if f.tokens else None, self._prf.get(f"{f.name}#tokens"),
                       f.normalize == "name", None if f.type == "text" else f.encode)
                      for f in self.fields if f.name in self._prf]

    def __repr__(self) -> str:
        return f"<Indexer bits={self.bits} indexes={sorted(self._prf)}>"

    def can_search(self, name: str) -> bool:
        return name in self._prf

    def _value(self, name: str, normalised: bytes) -> int:
        if self.bits == 0:
            return 0
        digest = self._prf[name](normalised)
        return int.from_bytes(digest[:4], "big") >> (32 - self.bits)

    def exact_term(self, f: Field, value: Any, *, normal: bytes | None = None) -> tuple[str, int]:
        """``normal``: the value's normal_form, when the caller has it already."""
        return f.name, self._value(f.name, normal_form(f, value) if normal is None else normal)

    def token_terms(self, f: Field, value: str, named: str | None = None) -> list[tuple[str, int]]:
        """Terms of the value's name tokens (``named``: the value already "name"-normalised)."""
        name = f"{f.name}#tokens"
        return [(name, self._value(name, t.encode("utf-8")))
                for t in tokens(normalize("name", value) if named is None else named)]

    def terms(self, values: Mapping[str, Any]) -> list[tuple[str, int]]:
        """All index terms of one record's (plaintext) values, for the fields we hold (the
        write hot path: the same terms as exact_term and token_terms, without their lookups)."""
        out: list[tuple[str, int]] = []
        shift = 32 - self.bits
        zero = self.bits == 0
        for name, norm_fn, prf, tok_name, tok_prf, named, enc in self._plan:
            v = values.get(name)
            if v is None:
                continue
            if enc is not None:  # a typed field: its canonical encoding, no tokens
                out.append((name, 0 if zero else int.from_bytes(prf(enc(v))[:4], "big") >> shift))
                continue
            if not isinstance(v, str):
                raise TypeError("a text field's value must be str")
            norm = norm_fn(v)
            out.append((name, 0 if zero else int.from_bytes(prf(norm.encode("utf-8"))[:4], "big") >> shift))
            if tok_prf is not None:
                for t in tokens(norm if named else normalize("name", v)):  # tokens() drops repeats
                    out.append((tok_name, 0 if zero else int.from_bytes(tok_prf(t.encode("utf-8"))[:4], "big") >> shift))
        return out


def normal_form(f: Field, value: Any) -> bytes:
    """What the exact index hashes: a text field's normalised UTF-8, a typed field's value
    encoding (an integer, date, enum or bool has one spelling already)."""
    if f.type != "text":
        return f.encode(value)
    if not isinstance(value, str):
        raise TypeError("a text field's value must be str")
    return normalize(f.normalize, value).encode("utf-8")


def derive_index_key(class_key: bytes, field: str, kind: str) -> bytes:
    return C.hkdf_sha256(class_key, F.LABEL_BLIND_INDEX + _lp8(field.encode("ascii")) + _lp8(kind.encode("ascii")))


# -- pseudonyms ------------------------------------------------------------------------------
class PurposeKeys:
    """The three keys derived from one purpose key: PRF, lookup tag, record-id encryption."""

    def __init__(self, purpose: str, kid: bytes, key: bytes) -> None:
        self.purpose = purpose
        self.kid = kid
        self._prf = C.Prf(C.hkdf_sha256(key, F.LABEL_PSEUDONYM))
        self._tag = C.Prf(C.hkdf_sha256(key, F.LABEL_PSEUDONYM_TAG))
        self._ref = C.Aead(C.hkdf_sha256(key, F.LABEL_PSEUDONYM_REF))

    def __repr__(self) -> str:
        return f"<PurposeKeys {self.purpose}>"

    def value(self, record_id: bytes) -> int:
        return int.from_bytes(self._prf(record_id)[:8], "big") >> (64 - F.PSEUDONYM_BITS)

    def tag(self, value: int) -> bytes:
        return self._tag(struct.pack(">Q", value))[: F.PSEUDONYM_TAG_LEN]

    def seal_ref(self, tag: bytes, record_id: bytes, nonce: bytes | None = None) -> bytes:
        header = bytes([F.FORMAT_VERSION]) + F.KIND_PSEUDONYM_REF + self.kid
        nonce = C.random_bytes(F.NONCE_LEN) if nonce is None else nonce
        aad = header + _lp8(self.purpose.encode("ascii")) + tag
        return header + nonce + self._ref.seal(nonce, record_id, aad)

    def open_ref(self, tag: bytes, blob: bytes) -> bytes:
        """Raises C.AuthFailure on any mismatch (wrong purpose, tag, key or edited row)."""
        hl = 2 + F.KID_LEN
        if len(blob) != hl + F.NONCE_LEN + F.ID_LEN + F.TAG_LEN or blob[:2] != bytes([F.FORMAT_VERSION]) + F.KIND_PSEUDONYM_REF:
            raise C.AuthFailure()
        aad = blob[:hl] + _lp8(self.purpose.encode("ascii")) + tag
        return self._ref.open(blob[hl:hl + F.NONCE_LEN], blob[hl + F.NONCE_LEN:], aad)
