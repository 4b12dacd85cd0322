"""Blind indexes and per-purpose pseudonyms: finding people without plaintext columns.

Blind index (CipherSweet's design): ``HMAC-SHA256(k_field, normalise(value))``
truncated to ``b`` bits, where ``k_field`` is derived from the field's *class key*
(so only holders of that class can search it). The bits are planned from the vault's
expected population ``N`` and ``k``, *jointly* by default: the bits of every index
together (token indexes included) stay within ``log2(N / k)``, so the tuple of a
record's buckets across all its indexed fields, not only each field alone, is expected
to be shared by about ``k`` records (see :func:`joint_bits`). Matches are candidates:
they are decrypted and compared exactly, so a truncated index never returns a wrong
person, it only costs extra decryptions.

Pseudonym: ``HMAC-SHA256(k_purpose_prf, record_id)`` truncated to 50 bits, spelled by
:mod:`vault.pseudonym`. The vault stores only pseudonyms that were issued, as
``(purpose, HMAC(k_tag, value), AEAD(k_ref, record_id))``: enough to resolve one,
nothing that links a record's badge pseudonym to its travel pseudonym.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import _crypto as C
from . import _format as F
from .envelope import _lp8
from .errors import ValidationError
from .normalize import normalizer, tokens
from .schema import Field, Schema

#: How a plan spends its bits: ``joint`` (the default: all indexes share one budget) or
#: ``precise`` (an explicit opt-in for large vaults: each index gets the whole budget).
#: Plans written by releases before plan version 2 read as ``uniform`` (each index the
#: whole budget, as ``precise``, but never chosen).
MODES = ("joint", "precise")


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
    return float((population - 1) / (2**bits))


def index_names(f: Field) -> list[str]:
    """Index names a field contributes to (its exact index, and its token index)."""
    if f.search != "exact":
        return []
    return [f.name] + ([f"{f.name}#tokens"] if f.tokens else [])


def all_index_names(schema: Schema) -> list[str]:
    """Every index of a schema: the exact indexes in schema order, then the token indexes."""
    exact = [f.name for f in schema.fields.values() if f.search == "exact"]
    return exact + [f"{f.name}#tokens" for f in schema.fields.values() if f.search == "exact" and f.tokens]


def joint_bits(schema: Schema, population: int, k: int) -> dict[str, int]:
    """Per-index bits whose joint cost stays within ``plan_bits(population, k)``.

    Why jointly: each index planned alone for ``k`` records per bucket still gives most
    records a *tuple* of buckets (email, phone, name, passport, ...) that no other record
    has, which singles them out and proves two registrations of one person from the
    database alone. Here the bits of all indexes together stay within log2(N / k), so
    there are at most N / k bucket tuples and each is expected to hold about k records.
    A token index's bit costs ``F.TOKEN_BIT_COST``: a name has two or more tokens, each
    its own term, so one token bit tells about log2(3) > 1 bits of a record. Bits are
    handed out one at a time, in turn, exact indexes first (schema order), then token
    indexes, while the budget lasts, so searches on any field cost about the same."""
    budget = plan_bits(population, k)
    order = [(n, F.TOKEN_BIT_COST if n.endswith("#tokens") else 1) for n in all_index_names(schema)]
    bits = {n: 0 for n, _ in order}
    while True:
        spent = False
        for name, cost in order:
            if cost <= budget and bits[name] < F.INDEX_MAX_BITS:
                bits[name] += 1
                budget -= cost
                spent = True
        if not spent:
            return bits


@dataclass(frozen=True)
class Plan:
    """The stored, authenticated index plan. ``gen`` numbers index generations so a
    re-index can build the next one beside the live one and switch atomically.

    ``bits`` is the plan's budget, ``plan_bits(population, k)``: shared by all indexes
    (``joint``) or given to each (``precise``, and ``uniform``: a plan of an older
    release, version 1). ``per_index`` (version 2 and 3 plans) holds each index's bits.
    ``id_bytes``: how many leading bytes of a record id this generation's dv_index rows
    store (version 3: F.INDEX_ID_BYTES; versions 1 and 2: the whole id)."""

    gen: int
    bits: int
    population: int
    k: int
    class_versions: dict[str, int]
    mode: str = "uniform"
    per_index: dict[str, int] | None = None
    id_bytes: int = F.ID_LEN

    def bits_for(self, name: str) -> int:
        """An index's bits (0, one bucket, for an index the plan does not name)."""
        return self.bits if self.per_index is None else self.per_index.get(name, 0)

    def to_text(self) -> str:
        d: dict[str, Any] = {"gen": self.gen, "bits": self.bits, "population": self.population, "k": self.k,
                             "class_versions": self.class_versions}
        if self.per_index is not None:
            d.update(v=2, bits=self.per_index, mode=self.mode)
        if self.id_bytes != F.ID_LEN:  # version 3 (a version 1 or 2 plan is only ever read back)
            assert self.per_index is not None and self.id_bytes == F.INDEX_ID_BYTES
            d.update(v=F.PLAN_VERSION, id_bytes=self.id_bytes)
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str) -> Plan:
        """Raises ValueError, KeyError or TypeError on a text that is no plan."""
        d = json.loads(text)
        pop, k = int(d["population"]), int(d["k"])
        versions = {str(c): int(v) for c, v in d["class_versions"].items()}
        if "v" not in d:  # version 1: one "bits" for every index
            bits = int(d["bits"])
            _check_bits(bits)
            return cls(int(d["gen"]), bits, pop, k, versions)
        if d["v"] not in (2, F.PLAN_VERSION) or type(d["v"]) is not int or d["mode"] not in MODES \
                or not isinstance(d["bits"], dict):
            raise ValueError("unknown plan version or mode")
        id_bytes = F.ID_LEN
        if d["v"] == F.PLAN_VERSION:  # the only width a version 3 plan may declare
            id_bytes = d["id_bytes"]
            if type(id_bytes) is not int or id_bytes != F.INDEX_ID_BYTES:
                raise ValueError("unsupported index id width")
        elif "id_bytes" in d:
            raise ValueError("a version 2 plan declares no id width")
        per = {str(n): int(b) for n, b in d["bits"].items()}
        for b in per.values():
            _check_bits(b)
        return cls(int(d["gen"]), plan_bits(pop, k), pop, k, versions, str(d["mode"]), per, id_bytes)


def _check_bits(b: int) -> None:
    if not 0 <= b <= F.INDEX_MAX_BITS:
        raise ValueError("index bits out of range")


def make_plan(gen: int, schema: Schema, population: int, k: int, class_versions: dict[str, int],
              precise: bool = False) -> Plan:
    """A version 3 plan (``id_bytes`` F.INDEX_ID_BYTES): ``joint`` unless ``precise`` (each
    index gets the whole budget)."""
    budget = plan_bits(population, k)
    per = {n: budget for n in all_index_names(schema)} if precise else joint_bits(schema, population, k)
    return Plan(gen, budget, population, k, class_versions, "precise" if precise else "joint", per,
                F.INDEX_ID_BYTES)


def plan_status(plan: Plan, records: int) -> dict[str, Any]:
    """What ``status()`` shows of a plan: its mode and budget, each index's bits and the
    records a search on it is expected to decrypt besides the match ((N - 1) / 2^b)."""
    per = plan.per_index if plan.per_index is not None else {}
    return {"plan": plan.mode, "bits": plan.bits, "population": plan.population, "k": plan.k,
            "per_index": dict(per) if per else "all " + str(plan.bits),
            "expected_false_positives": {n: round(expected_false_positives(max(records, 1), b), 2)
                                         for n, b in per.items()} if per else
            round(expected_false_positives(max(records, 1), plan.bits), 2)}


def plan_warnings(plan: Plan, records: int) -> list[str]:
    """The plan's standing risk (a per-field plan) and, when the live record count is far
    from the planned population, the advice to re-plan (threat model 7.2)."""
    out = []
    if plan.mode != "joint":
        which = "precise (chosen for speed)" if plan.mode == "precise" else "per field (an older release's plan)"
        out.append(f"the blind-index plan is {which}: each index alone has about k records per bucket, but the "
                   "tuple of a record's buckets across its indexed fields singles most records out and shows two "
                   "registrations of one person from the database alone (threat model 7.2)"
                   + ("; re-plan jointly with: dvault reindex --joint" if plan.mode == "uniform" else ""))
    return out + drift_warnings(plan, records)


def drift_warnings(plan: Plan, records: int) -> list[str]:
    """Advice when the live record count is far from the plan's population: below half of
    it, a joint plan's bucket tuples hold fewer than k records each (it singles people out;
    not said of a vault of a handful of records, which is still being filled in); above four
    times it, searches decrypt four times the candidates planned."""
    if records >= 2 * plan.k and 2 * records < plan.population and plan.bits > 0:
        return [f"the vault holds {records} records but its blind indexes are planned for {plan.population}: "
                f"until it holds about that many, its index buckets hold fewer than {plan.k} records each and can "
                f"single people out; if it will stay this size, re-plan: dvault reindex --population {records}"]
    if records > 4 * plan.population and plan_bits(records, plan.k) > plan.bits:
        return [f"the vault holds {records} records but its blind indexes are planned for {plan.population}: "
                f"searches decrypt more candidates than planned; re-plan: dvault reindex --population {records}"]
    return []


# -- what is normalised and indexed ----------------------------------------------------------
def _too_long(name: str) -> ValidationError:
    return ValidationError(f"field {name!r} is too long to index (a searchable value holds at most "
                           f"{F.MAX_INDEXED_BYTES} bytes once normalised)", field=name)


def capped_normalize(name: str, kind: str, value: str) -> str:
    """``normalize(kind, value)`` for a value that may be indexed or searched, or
    ValidationError naming the field. The input's length is checked before any work:
    NFKC expands one code point into at most 18 (U+FDFA), so a value of at most
    MAX_INDEXED_BYTES code points bounds the normaliser's work (a 1 MiB value would take
    seconds); the normal form is then held to MAX_INDEXED_BYTES bytes of UTF-8."""
    return _capped(name, normalizer(kind), value)


def _capped(name: str, fn: Callable[[str], str], value: str) -> str:
    """:func:`capped_normalize` with the normaliser looked up (the write hot path)."""
    if len(value) > F.MAX_INDEXED_BYTES:
        raise _too_long(name)
    out = fn(value)
    # UTF-8 takes at most 4 bytes a code point: only a long normal form needs encoding to tell
    if 4 * len(out) > F.MAX_INDEXED_BYTES and (len(out) > F.MAX_INDEXED_BYTES
                                               or len(out.encode("utf-8", "surrogatepass")) > F.MAX_INDEXED_BYTES):
        raise _too_long(name)
    return out


def normal_form(f: Field, value: Any) -> bytes:
    """What the exact index hashes: a text field's normalised UTF-8 (ValidationError if it
    is over the cap), a typed field's value encoding (an integer, date, enum or bool has
    one spelling already)."""
    if f.type != "text":
        return f.encode(value)
    if not isinstance(value, str):
        raise TypeError("a text field's value must be str")
    return capped_normalize(f.name, f.normalize, value).encode("utf-8")


def stored_normal_form(f: Field, value: Any) -> bytes | None:
    """:func:`normal_form` of a decrypted value, None if it is over the cap (a value an
    older release or a modified client stored: no capped query can equal it, and
    normalising it could take seconds)."""
    try:
        return normal_form(f, value)
    except ValidationError:
        return None


def stored_tokens(f: Field, value: Any) -> set[str]:
    """The name tokens of a decrypted value (none if it is over the cap, as above)."""
    try:
        return set(tokens(capped_normalize(f.name, "name", value)))
    except ValidationError:
        return set()


class Indexer:
    """Computes index terms for one plan generation, with keys derived per field.

    ``bits``: the plan (each index's bits), or one number for every index."""

    def __init__(self, schema: Schema, class_keys: dict[str, bytes], bits: int | Plan) -> None:
        #: bytes of each record id the generation's dv_index rows store (the plan's id_bytes)
        self.id_bytes = bits.id_bytes if isinstance(bits, Plan) else F.ID_LEN
        self.plan_bits = {n: (bits if isinstance(bits, int) else bits.bits_for(n)) for n in all_index_names(schema)}
        self.fields = [f for f in schema.fields.values() if f.search == "exact"]
        self._prf: dict[str, C.Prf] = {}
        for f in self.fields:
            key = class_keys.get(f.cls)
            if key is None:
                continue  # the caller's role lacks this class: it cannot search the field
            self._prf[f.name] = C.Prf(derive_index_key(key, f.name, "exact"))
            if f.tokens:
                self._prf[f"{f.name}#tokens"] = C.Prf(derive_index_key(key, f.name, "token"))
        # terms()'s loop, resolved once: (field, its normaliser, exact PRF and shift, token
        # index name, PRF and shift or None, whether the exact form is already the "name" form
        # tokens need, and for a typed field its encoder instead of a normaliser)
        self._plan = [(f.name, normalizer(f.normalize), self._prf[f.name], self._shift(f.name),
                       f"{f.name}#tokens" if f.tokens else None, self._prf.get(f"{f.name}#tokens"),
                       self._shift(f"{f.name}#tokens"), f.normalize == "name", None if f.type == "text" else f.encode)
                      for f in self.fields if f.name in self._prf]

    def _shift(self, name: str) -> int | None:
        """32 - bits, or None for a 0-bit index (every value in bucket 0)."""
        b = self.plan_bits.get(name, 0)
        return None if b == 0 else 32 - b

    def __repr__(self) -> str:
        return f"<Indexer bits={self.plan_bits} indexes={sorted(self._prf)}>"

    def can_search(self, name: str) -> bool:
        return name in self._prf

    def _value(self, name: str, normalised: bytes) -> int:
        shift = self._shift(name)
        if shift is None:
            return 0
        return int.from_bytes(self._prf[name](normalised)[:4], "big") >> shift

    def exact_term(self, f: Field, value: Any, *, normal: bytes | None = None) -> tuple[str, int]:
        """``normal``: the value's normal_form, when the caller has it already."""
        return f.name, self._value(f.name, normal_form(f, value) if normal is None else normal)

    def token_terms(self, f: Field, value: str, named: str | None = None) -> list[tuple[str, int]]:
        """Terms of the value's name tokens (``named``: the value already "name"-normalised)."""
        name = f"{f.name}#tokens"
        if named is None:
            named = capped_normalize(f.name, "name", value)
        return [(name, self._value(name, t.encode("utf-8"))) for t in tokens(named)]

    def terms(self, values: Mapping[str, Any], *, oversize: str = "raise") -> list[tuple[str, int]]:
        """All index terms of one record's (plaintext) values, for the fields we hold (the
        write hot path: the same terms as exact_term and token_terms, without their lookups).

        ``oversize``, for a text value over the cap (:func:`capped_normalize`): ``"raise"``
        (a write: ValidationError naming the field), ``"skip"`` (a re-index of stored values:
        it is not indexed) or ``"index"`` (the terms an older release stored for it, to
        remove them: normalised however long it is)."""
        out: list[tuple[str, int]] = []
        name_fn = normalizer("name")
        for name, norm_fn, prf, shift, tok_name, tok_prf, tok_shift, named, enc in self._plan:
            v = values.get(name)
            if v is None:
                continue
            if enc is not None:  # a typed field: its canonical encoding, no tokens
                out.append((name, 0 if shift is None else int.from_bytes(prf(enc(v))[:4], "big") >> shift))
                continue
            if not isinstance(v, str):
                raise TypeError("a text field's value must be str")
            try:
                norm = _capped(name, norm_fn, v)
                tok = norm if named or tok_prf is None else _capped(name, name_fn, v)
            except ValidationError:
                if oversize == "raise":
                    raise
                if oversize == "skip":
                    continue
                norm = norm_fn(v)
                tok = norm if named else name_fn(v)
            out.append((name, 0 if shift is None else int.from_bytes(prf(norm.encode("utf-8"))[:4], "big") >> shift))
            if tok_prf is not None:
                for t in tokens(tok):  # tokens() drops repeats
                    assert tok_name is not None
                    out.append((tok_name, 0 if tok_shift is None
                                else int.from_bytes(tok_prf(t.encode("utf-8"))[:4], "big") >> tok_shift))
        return out


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
        head = bytes([F.FORMAT_VERSION]) + F.KIND_PSEUDONYM_REF
        if len(blob) != hl + F.NONCE_LEN + F.ID_LEN + F.TAG_LEN or blob[:2] != head:
            raise C.AuthFailure()
        aad = blob[:hl] + _lp8(self.purpose.encode("ascii")) + tag
        return self._ref.open(blob[hl:hl + F.NONCE_LEN], blob[hl + F.NONCE_LEN:], aad)
