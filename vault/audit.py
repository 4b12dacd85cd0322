"""Tamper-evident, fail-closed audit log that names no one.

Every entry is ``(seq, prev, at, actor, action, target, detail, reason, hash, sig)``:

* ``hash = SHA-256(label || seq || prev || at || actor || action || target || detail || reason)``
  and ``prev`` is the previous entry's hash: a hash chain;
* ``sig`` is the actor's Ed25519 signature over ``"dvault/v1/audit-sig" || hash``: nobody
  can write an entry in someone else's name, and changing any entry breaks every later
  signature (entries of the older form, see :func:`entry_form`, signed the bare hash);
* ``target`` is the record's *audit-purpose pseudonym*, never its id or a name; ``detail``
  holds field names and counts, never values or search terms; ``reason`` (which may
  name people) is sealed to the security lead.

A *checkpoint* is the signed head (seq, hash); kept on paper or on another system it
proves the log up to there, so truncation and rewriting are detected by ``verify``.
The vault writes the entry *before* it returns any data and fails the operation if the
entry cannot be written (fail-closed). An entry that writes record rows commits with
them and carries their keyed states (:func:`record_state`), so that the rows themselves
can be checked against the log (``Vault.check_records``).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Column, LargeBinary, String, Table, Text, func, select

from . import _crypto as C
from . import _format as F
from . import audit_rows as RW
from . import notes as N
from .audit_entry import (
    GENESIS as GENESIS,
)
from .audit_entry import (
    LABEL as LABEL,
)
from .audit_entry import (
    PARALLEL_VERIFY_MIN as PARALLEL_VERIFY_MIN,
)
from .audit_entry import (
    PASSPHRASE_ACTOR as PASSPHRASE_ACTOR,
)
from .audit_entry import (
    UNSIGNED_ACTIONS as UNSIGNED_ACTIONS,
)
from .audit_entry import (
    Entry as Entry,
)
from .audit_entry import (
    actor_id as actor_id,
)
from .audit_entry import (
    entry_form as entry_form,
)
from .audit_entry import (
    entry_hash as entry_hash,
)
from .audit_entry import (
    entry_signed as entry_signed,
)
from .audit_entry import (
    signed_message as signed_message,
)
from .audit_entry import (
    unsigned_shape_ok as unsigned_shape_ok,
)
from .envelope import dek_ids, pad
from .errors import IntegrityError, Unavailable, VaultError
from .record_states import record_of
from .store import VaultBusy, metadata

if TYPE_CHECKING:
    from .audit_replay import Rights
    from .record_states import States

audit = Table("dv_audit", metadata,
              Column("seq", BigInteger, primary_key=True, autoincrement=False),
              Column("prev", LargeBinary(32), nullable=False),
              Column("at", BigInteger, nullable=False),
              Column("actor", LargeBinary(64), nullable=False),
              Column("action", String(40), nullable=False),
              Column("target", String(40), nullable=False),
              Column("detail", Text, nullable=False),
              Column("reason", LargeBinary, nullable=False),
              Column("hash", LargeBinary(32), nullable=False),
              Column("sig", LargeBinary(64), nullable=False))

CHECKPOINT_PREFIX = "dvcp1"


# Canonical JSON of an entry's detail (sorted keys, no spaces): one encoder for every entry.
_DETAIL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode
_INSERT = "INSERT INTO dv_audit (seq, prev, at, actor, action, target, detail, reason, hash, sig) VALUES ({})"
_INSERT_SQLITE = _INSERT.format(", ".join(["?"] * 10))
_INSERT_PG = _INSERT.format(", ".join(["%s"] * 10))


class AuditError(VaultError):
    """The audit entry could not be written, so the operation did not happen."""


class AuditUnavailable(AuditError, Unavailable):
    """The audit entry could not be written because the database cannot be used (full,
    read-only, gone, connection lost)."""


class Auditor:
    """Appends entries for one opener (their public key and signing function)."""

    def __init__(self, actor: bytes, sign: Callable[[bytes], bytes] | None,
                 reason_to: tuple[bytes, bytes] | None) -> None:
        """``reason_to``: (X25519 public key, recipient id) that reasons are sealed to."""
        self.actor = actor
        self._sign = sign
        self._reason_to = reason_to
        self.reason: str | None = None
        self._head: tuple[int, bytes] | None = None  # (seq, hash) of the last entry we know of
        # Whether new entries take the labelled form: once the vault is at database schema
        # version AUDIT_LABELLED_FROM (read with the head; it only ever rises), for good.
        self.labelled = False
        self.disabled_for_benchmark = False  # only bench/ flips this, to measure the cost

    def __repr__(self) -> str:
        return f"<Auditor actor={actor_id(self.actor)}>"

    def append(self, store: Any, action: str, target: str = "", detail: dict[str, Any] | None = None,
               *, unsigned: bool = False) -> None:
        """Write one entry in its own transaction; AuditError if it cannot be written."""
        self.append_after(store, action, None, lambda _: (target, detail), unsigned=unsigned)

    def append_after(self, store: Any, action: str, work: Callable[[], Any] | None,
                     describe: Callable[[Any], tuple[str, dict[str, Any] | None]], *, unsigned: bool = False) -> Any:
        """Run ``work`` and write its entry in one write transaction, and return its result.

        ``describe(result)`` gives the entry's ``(target, detail)``. Why one transaction: an
        audited read then costs one commit instead of two, and the read and its entry stand
        or fall together, so a read whose entry cannot be written returns nothing
        (fail-closed). Exceptions raised by ``work`` or ``describe`` propagate unchanged; a
        failed write (a concurrent appender took our seq) reruns both and the write, up to
        five times. ``describe`` is apart from ``work`` so that the benchmark's stub skips
        every part of the audit (the target pseudonym too), not only the write."""
        if self.disabled_for_benchmark:  # what the read costs without auditing: a read-only transaction
            if work is None:
                return None
            with store.tx(write=False):
                return work()
        reason = b""
        if self.reason and self._reason_to is not None:
            # padded (kind Q), as cells are: the log would otherwise show the reason's exact length
            reason = N.seal_note(F.KIND_REASON_PADDED, self._reason_to[0], self._reason_to[1],
                                 pad(self.reason.encode("utf-8")))
        unavailable = False
        last_error = ""  # its type name only: the exception itself would tie a reference cycle
        insert = _INSERT_SQLITE if store.is_sqlite else _INSERT_PG
        result: Any = None
        for _ in range(5):  # concurrent appenders race for the next seq; the loser retries
            in_work = False
            try:
                with store.tx(write=True) as conn:
                    in_work = True
                    if work is not None:
                        result = work()
                    target, detail = describe(result)
                    in_work = False
                    text = _DETAIL_JSON(detail or {})
                    # SQLite: the head of the chain is cached between appends; if another writer
                    # got there first, our INSERT collides on the primary key (seq), the cache is
                    # dropped and the loop re-reads the head. The chain can never fork.
                    if not store.is_sqlite:
                        # PostgreSQL has no BEGIN IMMEDIATE: appenders queue on a transaction-scoped
                        # advisory lock (no table privilege needed, the wait bounded) and read
                        # the head under it.
                        store.lock_append(conn)
                        self._head = None
                    if self._head is None:
                        self._head = RW.head_row(store, conn)
                        self.labelled = self.labelled or _labelled_version(store, conn) or _head_labelled(store, conn)
                    if self._head[0] >= RW.MAX_SEQ:
                        raise IntegrityError(f"audit log tampered: its last entry is numbered {self._head[0]}, after "
                                             "which no entry can be numbered, so nothing can be logged (and nothing "
                                             "done); tell the lead: the row must be removed by the database's owner")
                    seq, prev = self._head[0] + 1, self._head[1]
                    at = int(time.time() * 1000)
                    h = entry_hash(seq, prev, at, self.actor, action, target, text, reason, labelled=self.labelled)
                    sig = bytes(64) if (unsigned or self._sign is None) \
                        else self._sign(signed_message(h, self.labelled))
                    store.raw(conn, insert, (seq, prev, at, self.actor, action, target, text, reason, h, sig))
                # Known only once committed: inside a caller's transaction, which can still roll
                # back (a later step failing), a cached head would give the next entry a seq
                # and prev that the log never held (SQLite keeps the cache between appends).
                self._head = None if store.in_transaction else (seq, h)
                return result
            except Exception as e:
                if in_work or isinstance(e, IntegrityError):  # (a head no entry can follow: no retry helps)
                    raise
                self._head = None
                if isinstance(e, VaultBusy) and not store.is_sqlite:
                    raise  # PostgreSQL: it waited its whole bound (a lock held on purpose?): say so
                # (SQLite's busy wait is short and comes before anything is done: tried again)
                last_error = str(e) if isinstance(e, Unavailable) else type(e).__name__
                unavailable = isinstance(e, Unavailable)
        if unavailable:  # the disk, the file or the connection: say which, and exit as such (CLI)
            raise AuditUnavailable(f"audit log write failed: {last_error}; operation refused")
        raise AuditError(f"audit log write failed ({last_error}); operation refused")


def _labelled_version(store: Any, conn: Any) -> bool:
    """Whether the vault's database schema version is one whose entries are labelled. Read
    with the head, under the append lock (PostgreSQL) or after a write collision (SQLite), so
    a handle opened before another client's upgrade switches at its next append."""
    ph = "?" if store.is_sqlite else "%s"
    row = store.raw(conn, f"SELECT value FROM dv_meta WHERE name = {ph}", ("db_schema_version",)).fetchone()  # noqa: S608 - only the placeholder style is formatted in
    try:
        return row is not None and int(bytes(row[0]).decode("ascii")) >= F.AUDIT_LABELLED_FROM
    except (ValueError, TypeError, UnicodeDecodeError):
        return False


def _head_labelled(store: Any, conn: Any) -> bool:
    """Whether the last entry has the labelled form: then every later one must have it too
    (:func:`verify`), whatever the stored version says (a version lowered by hand)."""
    row = store.raw(conn, "SELECT seq, prev, at, actor, action, target, detail, reason, hash, sig "
                          "FROM dv_audit ORDER BY seq DESC LIMIT 1").fetchone()
    e = None if row is None else _row_entry(store, row)
    try:
        return e is not None and entry_form(e, first=True) is True
    except UnicodeEncodeError:
        return False


def read_entries(store: Any, after: int = 0, *, damaged: bool = True) -> list[Entry]:
    """The entries after ``after``, in seq order. A row whose columns lack their types and
    sizes (docs/format.md 13a; SQLite keeps any type in any column, so a database writer's
    edit can put text in ``actor``) stands in the list as a stand-in (:func:`_damaged`) that
    fails every check where it stands: readers flag it and go on, verify locates it as the
    first bad entry like any other edit, and the lead can quarantine it by its name
    (vault.audit_rows). ``damaged=False``: an IntegrityError naming its seq instead."""
    ph = "?" if store.is_sqlite else "%s"
    with store.tx(write=False) as conn:
        rows = store.raw(conn, "SELECT seq, prev, at, actor, action, target, detail, reason, hash, sig "  # noqa: S608 - only the placeholder style is formatted in
                               f"FROM dv_audit WHERE seq > {ph} ORDER BY seq", (after,)).fetchall()
    out = []
    for r in rows:
        e = _row_entry(store, r)
        if e is None:
            if not damaged:
                which = f"audit entry {r[0]}" if type(r[0]) is int else "an audit entry"
                raise IntegrityError(f"{which} is malformed (a column was edited); run dvault audit verify")
            e = _damaged(r)
        out.append(e)
    return out


def signed_by(store: Any, conn: Any, action: str, actors: set[bytes]) -> list[Entry]:
    """The entries of one action that one of ``actors`` wrote, each checked on its own (its
    hash, and its signature under the actor's Ed25519 key): a scan of the log, for rare
    checks. A row that fails is skipped; verify reports it where it stands."""
    ph = "?" if store.is_sqlite else "%s"
    rows = store.raw(conn, "SELECT seq, prev, at, actor, action, target, detail, reason, hash, sig "  # noqa: S608 - only the placeholder style is formatted in
                           f"FROM dv_audit WHERE action = {ph}", (action,)).fetchall()
    out = []
    for r in rows:
        e = _row_entry(store, r)
        if e is None or e.actor not in actors:
            continue
        try:
            form = entry_form(e)
        except UnicodeEncodeError:
            continue
        if form is not None and entry_signed(e, form):
            out.append(e)
    return out


_U64 = 2**64


def _row_entry(store: Any, r: Any) -> Entry | None:
    """A fetched row as an Entry (PostgreSQL's driver returns BYTEA as memoryview), or None."""
    return _entry(r if store.is_sqlite else [bytes(x) if isinstance(x, memoryview) else x for x in r])


def _entry(r: Any) -> Entry | None:
    """A row as an Entry if every column has its type (and the hashes, keys and signature
    their sizes), else None. ``type() is``, not isinstance: a million rows per verify."""
    seq, prev, at, actor, action, target, detail, reason, h, sig = r
    if (type(seq) is int and 0 < seq < _U64 and type(at) is int and 0 <= at < _U64
            and type(prev) is bytes and len(prev) == 32 and type(actor) is bytes and len(actor) == 64
            and type(action) is str and type(target) is str and type(detail) is str and type(reason) is bytes
            and type(h) is bytes and len(h) == 32 and type(sig) is bytes and len(sig) == 64):
        return Entry(seq, prev, at, actor, action, target, detail, reason, h, sig)
    return None


def _damaged(r: Any) -> Entry:
    """A malformed row as readers see it: its seq (always an integer: the key), its prev and
    time if those are sound, no actor (audit_rows.is_damaged), no action or detail; as its
    ``hash`` the link the next entry takes (audit_rows.link_of) and as its ``sig`` its name,
    the hash a quarantine decision names it by. No entry's content hashes to that."""
    r = RW.plain(r)
    seq = r[0] if type(r[0]) is int else -1
    prev = r[1] if type(r[1]) is bytes and len(r[1]) == 32 else b""
    at = r[2] if type(r[2]) is int and 0 <= r[2] < _U64 else 0
    return Entry(seq, prev, at, b"", "", "", "", b"", RW.link_of(r), RW.row_name(r))


def head(store: Any) -> tuple[int, bytes]:
    with store.tx(write=False) as conn:
        return RW.head_row(store, conn)


def count(store: Any) -> int:
    with store.tx(write=False) as conn:
        return int(conn.execute(select(func.count()).select_from(audit)).scalar_one())


# -- verification ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    first_bad: int | None = None
    problem: str = ""
    quarantined: tuple[int, ...] = ()  # entries stepped over by the lead's signed decision (audit_trust)

    def __str__(self) -> str:
        entries = "entry" if len(self.quarantined) == 1 else "entries"
        held = (f" ({len(self.quarantined)} quarantined by the lead: {entries} "
                f"{', '.join(map(str, self.quarantined))})" if self.quarantined else "")
        if self.ok:
            return f"audit log verified: {self.entries} entries{held}"
        return f"audit log damaged at entry {self.first_bad}: {self.problem}{held}"


def verify(entries: Iterable[Entry], known_actors: set[bytes], checkpoint: Checkpoint | None = None,
           deciders: set[bytes] = frozenset()) -> Verdict:  # type: ignore[assignment]
    """Walk the chain; report the first entry that is not what its predecessors promise.

    Per entry, in this order: sequence, link to the previous hash, its own hash, a known
    actor, the checkpoint, its form (no older-form entry after a labelled one), its time (not
    further back than the clock tolerance behind an earlier entry); then signatures. A
    signed checkpoint must be signed by a known actor (an enrolled user, revoked ones
    included, or the recovery actor): its signature alone only shows that someone held the
    key it carries. The per-entry work that costs (SHA-256 and
    Ed25519 verification, ~60 us an entry) runs on forked workers for large logs while this
    process walks the links (vault._parallel: the workers inherit the entries), and the
    earliest failure of any kind is reported. An entry that ``deciders`` (the lead, the
    recovery actor) quarantined (vault.audit_trust) keeps its place in the sequence, and the
    next entry links to its stored hash, but its own checks and its link to the entry
    before it are skipped (a decision may also acknowledge the entries missing before it),
    and the verdict names it."""
    from . import _parallel as PAR
    from .audit_trust import standing
    entries = list(entries)
    skip, gaps = standing(entries, set(deciders)) if deciders else (frozenset(), {})
    with PAR.pool(lambda b: _check_range(entries, known_actors, b[0], b[1], skip=skip), len(entries),
                  min_items=PARALLEL_VERIFY_MIN) as pool:
        checks = pool.imap(PAR.ranges(len(entries), -(-len(entries) // (pool.size * 4))))
        structural, cp_seen, expected = _walk(entries, known_actors, checkpoint, skip, gaps)
        bad_hash, bad_sig, downgrade, bad_detail = _first_failures(list(checks))
    held = tuple(sorted(skip))
    if checkpoint is not None and checkpoint.sig and checkpoint.signer not in known_actors:
        return Verdict(False, 0, checkpoint.seq, "checkpoint signed by a key that is neither an enrolled user's nor "
                                                 "the recovery actor's (forged)", held)
    first: Verdict | None = structural[1] if structural else None
    if bad_hash is not None and (structural is None or bad_hash < structural[0]
                                 or (bad_hash == structural[0] and not structural[2])):
        first = Verdict(False, bad_hash + 1, entries[bad_hash].seq,
                        "entry edited (its hash does not match its content)")
    if downgrade is not None and (first is None or entries[downgrade].seq < (first.first_bad or 0)):
        first = Verdict(False, downgrade + 1, entries[downgrade].seq,
                        "entry of the older, unlabelled form after labelled ones (inserted, or downgraded)")
    if bad_detail is not None and (first is None or entries[bad_detail].seq < (first.first_bad or 0)):
        first = Verdict(False, bad_detail + 1, entries[bad_detail].seq, "entry whose detail is not a JSON object "
                                                                        "(written by a modified client)")
    if bad_sig is not None and (first is None or bad_sig <= (first.first_bad or 0)):
        n = first.entries if first is not None else len(entries)
        return Verdict(False, n, bad_sig, "forged or broken signature", held)
    if first is not None:
        return dataclasses.replace(first, quarantined=held)
    if not cp_seen:
        assert checkpoint is not None
        return Verdict(False, len(entries), expected, f"log truncated: checkpoint is at entry {checkpoint.seq} "
                                                      f"but the log ends at {expected - 1}", held)
    return Verdict(True, len(entries), quarantined=held)


def _walk(entries: list[Entry], known_actors: set[bytes], checkpoint: Checkpoint | None,
          skip: frozenset[int] = frozenset(), gaps: dict[int, int] | None = None
          ) -> tuple[tuple[int, Verdict, bool] | None, bool, int]:
    """The cheap checks, in order: (first structural failure as (index, verdict, whether it
    comes before the hash check), checkpoint seen, next expected seq). Entries in ``skip``
    (quarantined) are only numbered, and the next entry linked to them; ``gaps``: a
    quarantined seq -> the seq its decision says precedes it (the entries between missing)."""
    from .audit_trust import clock_problem
    prev, expected = GENESIS, 1
    cp_seen = checkpoint is None
    latest = (0, 0)  # (time, seq) of the latest-dated entry so far
    for i, e in enumerate(entries):
        held = e.seq in skip
        if e.seq != expected and not (held and e.seq > expected and (gaps or {}).get(e.seq) == expected - 1):
            what = "an entry is missing (deleted)" if e.seq > expected else "entries are out of order or duplicated"
            return (i, Verdict(False, i + 1, expected, what), True), cp_seen, expected
        if e.prev != prev and not held:
            return (i, Verdict(False, i + 1, e.seq, "chain broken: an earlier entry was changed, removed or "
                                                    "reordered"), True), cp_seen, expected
        cp_bad = checkpoint is not None and e.seq == checkpoint.seq and not checkpoint.matches(e.hash)
        if held and not cp_bad:
            cp_seen = cp_seen or (checkpoint is not None and e.seq == checkpoint.seq)
            prev, expected = e.hash, e.seq + 1
            continue
        unsigned = e.action in UNSIGNED_ACTIONS and e.sig == bytes(64)
        if unsigned and not unsigned_shape_ok(e):
            return (i, Verdict(False, i + 1, e.seq, "unsigned entry the vault never writes (inserted or edited)"),
                    False), cp_seen, expected
        if not unsigned and e.actor not in known_actors:
            return (i, Verdict(False, i + 1, e.seq, "entry written by an unknown actor (inserted)"), False), \
                cp_seen, expected
        late = clock_problem(e.at, *latest)
        if late is not None:
            return (i, Verdict(False, i + 1, e.seq, f"entry {late}"), False), cp_seen, expected
        if not unsigned:  # anyone can chain an unsigned entry: its time must not set the bar
            latest = max(latest, (e.at, e.seq))
        if checkpoint is not None and e.seq == checkpoint.seq:
            if not checkpoint.matches(e.hash):
                return (i, Verdict(False, i + 1, e.seq, "log differs from the checkpoint (rewritten)"), False), \
                    cp_seen, expected
            cp_seen = True
        prev, expected = e.hash, e.seq + 1
    return None, cp_seen, expected


#: Logs at least this long are checked by forked workers (tests lower it).


def _check_range(entries: list[Entry], known: set[bytes], lo: int, hi: int, skip: frozenset[int] = frozenset()
                 ) -> tuple[int | None, int | None, int | None, int | None, int | None, int | None]:
    """In entries[lo:hi], leaving out the quarantined seqs ``skip``: (first index whose hash
    is wrong, seq of the first bad signature, first index of the labelled form, first index
    of the older form, first index of the older form after one of the labelled form, first
    index whose detail is not a JSON object)."""
    bad_hash = bad_sig = first_new = first_old = downgrade = bad_detail = None
    zero = bytes(64)
    form: bool | None = True
    for i in range(lo, hi):
        e = entries[i]
        if e.seq in skip:
            continue
        try:
            form = entry_form(e, first=form is not False) if not RW.is_damaged(e) else None
        except (TypeError, AttributeError, ValueError, struct.error):  # a value of the wrong SQL type
            form = None
        if form is not None and bad_detail is None and RW.detail_of(e) is None:
            bad_detail = i
        if form is None:
            bad_hash = i if bad_hash is None else bad_hash
        elif form:
            first_new = i if first_new is None else first_new
        else:
            first_old = i if first_old is None else first_old
            if first_new is not None and downgrade is None:
                downgrade = i
        if bad_sig is None and e.actor in known and not (e.action in UNSIGNED_ACTIONS and e.sig == zero):
            if not any(entry_signed(e, labelled) for labelled in ((form,) if form is not None else (True, False))):
                bad_sig = e.seq
        if bad_hash is not None and bad_sig is not None:  # anything later is reported after these
            break
    return bad_hash, bad_sig, first_new, first_old, downgrade, bad_detail


def _first_failures(parts: list[tuple[int | None, ...]]) -> tuple[int | None, int | None, int | None, int | None]:
    """Chunks are in index order: the first chunk with a bad hash has the lowest index; a bad
    signature is the lowest seq among each chunk's first failure; an entry of the older form
    after one of the labelled form (the lowest index: a chunk's first older entry once an
    earlier chunk had a labelled one); the first detail that is not an object."""
    hashes = [p[0] for p in parts if p[0] is not None]
    sigs = [p[1] for p in parts if p[1] is not None]
    details = [p[5] for p in parts if p[5] is not None]
    downgrade = None
    seen_new = False
    for _, _, first_new, first_old, in_chunk, _ in parts:
        if seen_new and first_old is not None:
            downgrade = first_old
            break
        if in_chunk is not None:
            downgrade = in_chunk
            break
        seen_new = seen_new or first_new is not None
    return (hashes[0] if hashes else None), (min(sigs) if sigs else None), downgrade, (details[0] if details else None)


# -- checkpoints --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    """``dvcp1:SEQ:HASH`` (20 bytes of the head hash, base32) -- short enough for paper --
    optionally ``:SIGNER:SIG`` for a copy sent to another system."""

    seq: int
    hash_prefix: bytes
    signer: bytes = b""
    sig: bytes = b""

    def matches(self, full_hash: bytes) -> bool:
        return C.mac_equal(full_hash[: len(self.hash_prefix)], self.hash_prefix)

    @property
    def short(self) -> str:
        return f"{CHECKPOINT_PREFIX}:{self.seq}:{_b32(self.hash_prefix)}"

    def __str__(self) -> str:
        if not self.sig:
            return self.short
        return f"{self.short}:{_b32(self.signer)}:{_b32(self.sig)}"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        if not isinstance(text, str):  # refused as any other malformed checkpoint, not as an AttributeError
            raise AuditError("not a checkpoint (expected dvcp1:SEQ:HASH[:SIGNER:SIG])")
        parts = text.strip().split(":")
        try:
            if parts[0] != CHECKPOINT_PREFIX or len(parts) not in (3, 5):
                raise ValueError
            cp = cls(int(parts[1]), _unb32(parts[2]), *(map(_unb32, parts[3:5]) if len(parts) == 5 else ()))
            if len(cp.hash_prefix) < 16 or not 1 <= cp.seq < 2**64 or not (parts[1].isascii() and parts[1].isdigit()):
                raise ValueError  # the first entry is seq 1: a checkpoint "at 0" would prove nothing;
                # seq is a u64 in the signed message (and in every entry's hash)
        except (ValueError, IndexError):
            raise AuditError("not a checkpoint (expected dvcp1:SEQ:HASH[:SIGNER:SIG])") from None
        if cp.sig:
            try:
                C.ed25519_verify(cp.signer[32:], cls._message(cp.seq, cp.hash_prefix), cp.sig)
            except C.AuthFailure:
                raise AuditError("checkpoint signature does not verify") from None
        return cp

    @staticmethod
    def _message(seq: int, prefix: bytes) -> bytes:
        return b"dvault/v1/checkpoint" + struct.pack(">Q", seq) + prefix


def make_checkpoint(seq: int, head_hash: bytes, signer: bytes, sign: Callable[[bytes], bytes] | None) -> Checkpoint:
    prefix = head_hash[:20]
    if sign is None:
        return Checkpoint(seq, prefix)
    return Checkpoint(seq, prefix, signer, sign(Checkpoint._message(seq, prefix)))


def _b32(b: bytes) -> str:
    return base64.b32encode(b).decode().rstrip("=").lower()


def _unb32(s: str) -> bytes:
    s = s.upper()
    return base64.b32decode(s + "=" * (-len(s) % 8))


# -- presentation -------------------------------------------------------------------------------
# -- record states (docs/format.md 13a) ------------------------------------------------------
def state_key(meta_key: bytes) -> bytes:
    """The key of the record-state tokens (docs/format.md 13a "Record states")."""
    return C.hkdf_sha256(meta_key, F.LABEL_RECORD_STATE)


def record_state(key: bytes, vault_id: bytes, record_id: bytes, row: bytes) -> str:
    """A record row's state as entries name it: keyed, so the log cannot be matched to rows
    without the meta key; over the DEK ids, so a rewrap keeps it and any change of content
    (or the replay of an older row) does not. Raises envelope.Malformed."""
    return state_of(key, vault_id, record_id, dek_ids(row))


def state_of(key: bytes, vault_id: bytes, record_id: bytes, ids: bytes) -> str:
    """:func:`record_state` from the row's DEK ids (a writer that just drew them)."""
    return C.hmac_sha256(key, vault_id + record_id + ids)[:12].hex()


def states(key: bytes, vault_id: bytes) -> Callable[[bytes, bytes], str]:
    """:func:`state_of` under one key, for the rows of a batch: ``state(record_id, ids)``,
    with the HMAC keyed once (same output)."""
    prf = C.Prf(key)

    def state(record_id: bytes, ids: bytes) -> str:
        return prf(vault_id + record_id + ids)[:12].hex()
    return state


def has_states(store: Any) -> bool:
    """Whether any entry carries record states (a vault at database schema v6 or later)."""
    ph = "?" if store.is_sqlite else "%s"
    with store.tx(write=False) as conn:
        return store.raw(conn, f"SELECT 1 FROM dv_audit WHERE detail LIKE {ph} LIMIT 1",  # noqa: S608 - only the placeholder style is formatted in
                         ('%"state":%',)).fetchone() is not None


@dataclass(frozen=True)
class RecordCheck:
    """What :meth:`Vault.check_records` found: record ids (hex) and entry numbers, no values."""

    rows: int
    rolled_back: tuple[str, ...]  # rows holding a state that a later entry replaced or shredded
    unlogged: tuple[str, ...]  # rows holding a state that no entry put
    missing: tuple[int, ...]  # entries whose state no row holds (one per state)
    damaged: tuple[str, ...] = ()  # rows that fail authentication (edited in place, or malformed)
    refused: tuple[int, ...] = ()  # entries whose states were not replayed (vault.audit_replay)

    @property
    def ok(self) -> bool:
        return not (self.rolled_back or self.unlogged or self.missing or self.damaged or self.refused)

    def counts(self) -> dict[str, int]:
        """What an audit entry records of a check: counts, never ids."""
        out = {"rows": self.rows, "rolled_back": len(self.rolled_back), "unlogged": len(self.unlogged),
               "missing": len(self.missing)}
        if self.damaged:  # absent when none, so entries written before the count existed read alike
            out["damaged"] = len(self.damaged)
        if self.refused:
            out["refused"] = len(self.refused)
        return out

    def __str__(self) -> str:
        if self.ok:
            return f"records match the audit log: {self.rows} rows"
        return (f"records differ from the audit log: {len(self.rolled_back)} rolled back, "
                f"{len(self.unlogged)} never logged, {len(self.missing)} logged but missing"
                + (f", {len(self.damaged)} damaged" if self.damaged else "") + f" (of {self.rows} rows)"
                + (f"; entries carrying record states they may not (not replayed): "
                   f"{', '.join(map(str, self.refused))}" if self.refused else ""))


def compare_states(entries: list[Entry], known: set[bytes], rows: list[tuple[bytes, str]],
                   damaged: tuple[str, ...] = (), deciders: set[bytes] = frozenset(),  # type: ignore[assignment]
                   may: Rights | None = None, second: bool = False, states: States | None = None
                   ) -> tuple[RecordCheck, list[str], list[str]]:
    """Vault.check_records' comparison of rows (record id, state token) with the log: (what
    differs, the logged states no row holds, the states of the rows that differ). Raises
    IntegrityError for a log that fails verification.
    Quarantined entries (``deciders``' decisions) are left out of the replay: what a forged
    entry says about rows is not taken; nor what an entry says that may not say it
    (vault.audit_replay), which is reported instead; ``may``: whose role lets them write
    which states (vault.audit_replay.rights); ``second``: the rows' tokens are of the second
    kind (the vault is at it); ``states``: its parts and tokens, to check updates' parts."""
    verdict = verify(entries, known, deciders=deciders)
    if not verdict.ok:
        raise IntegrityError(f"{verdict}; the rows cannot be checked against a damaged log")
    from .audit_replay import kinds_of, replay
    held = frozenset(verdict.quarantined)
    taken = replay(entries, held, set(deciders), may, kinds_of(entries, held, set(deciders), second, states))
    live, dropped = taken.live, taken.dropped
    rolled_back: list[str] = []
    unlogged: list[str] = []
    differing: list[str] = []
    for rid, token in rows:
        if live.pop(token, None) is not None:
            continue
        # (second kind) a row of a record a shred removed is one put back, whatever it holds
        back = token in dropped or (second and record_of(token) in taken.gone)
        (rolled_back if back else unlogged).append(rid.hex())
        differing.append(token)
    out = RecordCheck(len(rows), tuple(sorted(rolled_back)), tuple(sorted(unlogged)), tuple(sorted(live.values())),
                      tuple(sorted(damaged)), tuple(sorted(taken.refused)))
    return out, list(live), differing


def summary(entries: list[dict[str, Any]], classes_of: dict[str, str]) -> dict[str, dict[str, int]]:
    """Who accessed which classes how often: actor -> class -> number of entries touching it.
    Unsigned entries (failed unlocks) are left out: anyone who can write the table can
    chain one in a colleague's name, so they never count as an access; so are entries that
    fail their own check (``verified`` false, Vault.audit_entries) or that the lead
    quarantined: a junk signature in a colleague's name counts for no one."""
    out: dict[str, dict[str, int]] = {}
    for e in entries:
        if e.get("action") in UNSIGNED_ACTIONS or e.get("verified") is False or e.get("quarantined"):
            continue
        detail = e["detail"] if isinstance(e["detail"], dict) else {}
        fields = detail.get("fields")
        if not isinstance(fields, list):
            continue
        returned = detail.get("returned")  # what a search decrypted, beside what it searched on
        fields = fields + (returned if isinstance(returned, list) else [])
        per = out.setdefault(e["actor"], {})
        for cls in sorted({classes_of[f] for f in fields if f in classes_of}):
            per[cls] = per.get(cls, 0) + 1
    return out
