"""Tamper-evident, fail-closed audit log that names no one.

Every entry is ``(seq, prev, at, actor, action, target, detail, reason, hash, sig)``:

* ``hash = SHA-256(label || seq || prev || at || actor || action || target || detail || reason)``
  and ``prev`` is the previous entry's hash: a hash chain;
* ``sig`` is the actor's Ed25519 signature over ``hash``: nobody can write an entry in
  someone else's name, and changing any entry breaks every later signature;
* ``target`` is the record's *audit-purpose pseudonym*, never its id or a name; ``detail``
  holds field names and counts, never values or search terms; ``reason`` (which may
  name people) is sealed to the security lead.

A *checkpoint* is the signed head (seq, hash); kept on paper or on another system it
proves the log up to there, so truncation and rewriting are detected by ``verify``.
The vault writes the entry *before* it returns any data and fails the operation if the
entry cannot be written (fail-closed).
"""

from __future__ import annotations

import base64
import json
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from sqlalchemy import BigInteger, Column, LargeBinary, String, Table, Text, func, select

from . import _crypto as C
from .envelope import _lp8
from .errors import VaultError
from .store import metadata

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

LABEL = b"dvault/v1/audit"
CHECKPOINT_PREFIX = "dvcp1"
GENESIS = bytes(32)
UNSIGNED_ACTIONS = frozenset({"unlock_failed"})  # no key to sign with: chained, not signed


class AuditError(VaultError):
    """The audit entry could not be written, so the operation did not happen."""


@dataclass(frozen=True)
class Entry:
    seq: int
    prev: bytes
    at: int
    actor: bytes
    action: str
    target: str
    detail: str
    reason: bytes
    hash: bytes
    sig: bytes

    def __repr__(self) -> str:
        return f"<Entry {self.seq} {self.action} {self.target}>"


def entry_hash(seq: int, prev: bytes, at: int, actor: bytes, action: str, target: str, detail: str,
               reason: bytes) -> bytes:
    return C.sha256(LABEL + struct.pack(">QQ", seq, at) + prev + actor + _lp8(action.encode())
                    + _lp8(target.encode()) + struct.pack(">I", len(detail.encode())) + detail.encode()
                    + struct.pack(">I", len(reason)) + reason)


def actor_id(actor: bytes) -> str:
    from .identity import PublicIdentity
    return PublicIdentity(actor[:32], actor[32:]).user_id if len(actor) == 64 else "unknown"


class Auditor:
    """Appends entries for one opener (their public key and signing function)."""

    def __init__(self, actor: bytes, sign: Callable[[bytes], bytes] | None,
                 reason_to: bytes | None) -> None:
        self.actor = actor
        self._sign = sign
        self._reason_to = reason_to
        self.reason: str | None = None
        self._head: tuple[int, bytes] | None = None  # (seq, hash) of the last entry we know of
        self.disabled_for_benchmark = False  # only bench/ flips this, to measure the cost

    def __repr__(self) -> str:
        return f"<Auditor actor={actor_id(self.actor)}>"

    def append(self, store: Any, action: str, target: str = "", detail: dict | None = None,
               *, unsigned: bool = False) -> None:
        if self.disabled_for_benchmark:
            return
        text = json.dumps(detail or {}, sort_keys=True, separators=(",", ":"), default=str)
        reason = b""
        if self.reason and self._reason_to is not None:
            reason = C.seal_to(self._reason_to, self.reason.encode("utf-8"))
        last_error: Exception | None = None
        ph = "?" if store.is_sqlite else "%s"
        insert = f"INSERT INTO dv_audit (seq, prev, at, actor, action, target, detail, reason, hash, sig) " \
                 f"VALUES ({', '.join([ph] * 10)})"
        for _ in range(5):  # concurrent appenders race for the next seq; the loser retries
            try:
                with store.tx() as conn:
                    # The head of the chain is cached between appends: if another writer got
                    # there first, our INSERT collides on the primary key (seq), the cache is
                    # dropped and the loop re-reads the head. The chain can never fork.
                    if self._head is None:
                        row = conn.exec_driver_sql("SELECT seq, hash FROM dv_audit ORDER BY seq DESC LIMIT 1").first()
                        self._head = (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))
                    seq, prev = self._head[0] + 1, self._head[1]
                    at = int(time.time() * 1000)
                    h = entry_hash(seq, prev, at, self.actor, action, target, text, reason)
                    sig = bytes(64) if (unsigned or self._sign is None) else self._sign(h)
                    conn.exec_driver_sql(insert, (seq, prev, at, self.actor, action, target, text, reason, h, sig))
                self._head = (seq, h)
                return
            except Exception as e:  # noqa: BLE001 - any failure means: not audited, so refuse
                self._head = None
                last_error = e
        raise AuditError(f"audit log write failed ({type(last_error).__name__}); operation refused")


def read_entries(store: Any, after: int = 0) -> list[Entry]:
    ph = "?" if store.is_sqlite else "%s"
    with store.tx() as conn:
        rows = conn.exec_driver_sql(
            "SELECT seq, prev, at, actor, action, target, detail, reason, hash, sig FROM dv_audit "
            f"WHERE seq > {ph} ORDER BY seq", (after,)).fetchall()
    return [Entry(int(r[0]), bytes(r[1]), int(r[2]), bytes(r[3]), r[4], r[5], r[6], bytes(r[7]), bytes(r[8]),
                  bytes(r[9])) for r in rows]


def head(store: Any) -> tuple[int, bytes]:
    with store.tx() as conn:
        row = conn.execute(select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)).first()
    return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))


def count(store: Any) -> int:
    with store.tx() as conn:
        return int(conn.execute(select(func.count()).select_from(audit)).scalar_one())


# -- verification ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    first_bad: int | None = None
    problem: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit log verified: {self.entries} entries"
        return f"audit log damaged at entry {self.first_bad}: {self.problem}"


def verify(entries: Iterable[Entry], known_actors: set[bytes], checkpoint: "Checkpoint | None" = None) -> Verdict:
    """Walk the chain; report the first entry that is not what its predecessors promise.

    Structure and hashes are checked in one pass; signatures (the expensive part) are
    checked afterwards, in parallel on large logs, and the earliest failure of either
    kind is reported."""
    entries = list(entries)
    # Signature checks (the expensive part) start in worker processes first, on every entry
    # that claims a known signer; the structural walk below runs meanwhile.
    pending = _start_signature_checks([(e.seq, e.actor[32:], e.hash, e.sig) for e in entries
                                       if not (e.action in UNSIGNED_ACTIONS and e.sig == bytes(64))
                                       and e.actor in known_actors])
    prev, expected, n = GENESIS, 1, 0
    cp_seen = checkpoint is None or checkpoint.seq == 0
    structural: Verdict | None = None
    for e in entries:
        n += 1
        if e.seq != expected:
            what = "an entry is missing (deleted)" if e.seq > expected else "entries are out of order or duplicated"
            structural = Verdict(False, n, expected, what)
            break
        if e.prev != prev:
            structural = Verdict(False, n, e.seq, "chain broken: an earlier entry was changed, removed or reordered")
            break
        if entry_hash(e.seq, e.prev, e.at, e.actor, e.action, e.target, e.detail, e.reason) != e.hash:
            structural = Verdict(False, n, e.seq, "entry edited (its hash does not match its content)")
            break
        if not (e.action in UNSIGNED_ACTIONS and e.sig == bytes(64)) and e.actor not in known_actors:
            structural = Verdict(False, n, e.seq, "entry written by an unknown actor (inserted)")
            break
        if checkpoint is not None and e.seq == checkpoint.seq:
            if not checkpoint.matches(e.hash):
                structural = Verdict(False, n, e.seq, "log differs from the checkpoint (rewritten)")
                break
            cp_seen = True
        prev, expected = e.hash, e.seq + 1
    bad_sig = pending()
    if bad_sig is not None and (structural is None or bad_sig <= (structural.first_bad or 0)):
        return Verdict(False, n, bad_sig, "forged or broken signature")
    if structural is not None:
        return structural
    if not cp_seen:
        assert checkpoint is not None
        return Verdict(False, n, expected, f"log truncated: checkpoint is at entry {checkpoint.seq} "
                                           f"but the log ends at {expected - 1}")
    return Verdict(True, n)


def _check_chunk(jobs: list[tuple[int, bytes, bytes, bytes]]) -> int | None:
    for seq, vk, h, sig in jobs:
        try:
            C.ed25519_verify(vk, h, sig)
        except C.AuthFailure:
            return seq
    return None


def _start_signature_checks(jobs: list[tuple[int, bytes, bytes, bytes]]):  # type: ignore[no-untyped-def]
    """Start checking Ed25519 signatures (~60 us each) and return a function that waits and
    gives the lowest bad seq (or None). Large logs are spread over forked workers."""
    import os
    workers = min(os.cpu_count() or 1, 8)
    if len(jobs) < 20_000 or workers < 2:
        return lambda: _check_chunk(jobs)
    import multiprocessing
    size = -(-len(jobs) // (workers * 4))
    chunks = [jobs[i:i + size] for i in range(0, len(jobs), size)]
    try:
        pool = multiprocessing.get_context("fork").Pool(workers)
    except (OSError, ValueError):  # no fork here: do it in-process
        return lambda: _check_chunk(jobs)
    result = pool.map_async(_check_chunk, chunks)

    def wait() -> int | None:
        try:
            bad = [r for r in result.get() if r is not None]
        finally:
            pool.close()
            pool.join()
        return min(bad) if bad else None
    return wait


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
    def parse(cls, text: str) -> "Checkpoint":
        parts = text.strip().split(":")
        try:
            if parts[0] != CHECKPOINT_PREFIX or len(parts) not in (3, 5):
                raise ValueError
            cp = cls(int(parts[1]), _unb32(parts[2]), *(map(_unb32, parts[3:5]) if len(parts) == 5 else ()))
            if len(cp.hash_prefix) < 16 or cp.seq < 0:
                raise ValueError
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
def summary(entries: list[dict[str, Any]], classes_of: dict[str, str]) -> dict[str, dict[str, int]]:
    """Who accessed which classes how often: actor -> class -> number of entries touching it."""
    out: dict[str, dict[str, int]] = {}
    for e in entries:
        fields = e["detail"].get("fields") if isinstance(e["detail"], dict) else None
        if not isinstance(fields, list):
            continue
        per = out.setdefault(e["actor"], {})
        for cls in sorted({classes_of[f] for f in fields if f in classes_of}):
            per[cls] = per.get(cls, 0) + 1
    return out


def as_jsonl(entries: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(e, sort_keys=True, ensure_ascii=False) + "\n" for e in entries)


def as_table(entries: list[dict[str, Any]]) -> str:
    rows = [("seq", "time (UTC)", "actor", "action", "target", "detail")]
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["at"] / 1000))
        rows.append((str(e["seq"]), when, e["actor"], e["action"], e["target"] or "-",
                     json.dumps(e["detail"], sort_keys=True, separators=(",", ":"))[:60]))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows) + "\n"
