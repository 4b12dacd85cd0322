"""Canaries: decoy participants whose every touch the lead learns of (threat model 10).

The list of canaries (docs/format.md 13a) is sealed under a key derived from the recovery
seed, which only a managing role's keyring (the lead's) and the recovery passphrase's hold,
and the signed key statement names its SHA-256 (format.md 9b), checked at every open and
every read of the user table. So staff and tool clients can neither read the list (they
cannot tell a canary from a participant, from their keyring or from the database) nor
replace, empty or roll it back unnoticed. No client writes an alarm: the lead's client
finds the touches in the log, by each canary's audit pseudonym (the target of a read,
update, shred, pseudonym or break-glass entry, and a search's ``targets``) and by every
listing or export written after the canary was planted, in every actor's entries but a
managing user's (who holds the list, and whose touches are no threat signal). Not even the
lead's client writes one for its own accesses: an entry naming a canary, or written right
after a read of one, is something staff can read, and would tell them which records are
decoys. Only entries whose own check passes count (vault.audit_trust); a malformed one
is passed over, never a reason to stop.

Every add by the lead re-seals the list under a fresh nonce and signs the statement again
in the add's transaction, so a planted canary's add looks like any other add of the lead's.

The lead's client keeps a checkpoint of the log outside the database at every open
(:func:`witness`), and refuses a log that no longer holds the last one: entries (alarms
among them) that a database writer deletes after the lead's open are found at the next.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import _crypto as C
from . import _format as F
from . import audit as A
from . import audit_rows as RW
from . import envelope as E
from . import keys as K
from . import pseudonym as P
from . import statement as ST
from .access import Access
from .args import check_path
from .errors import IntegrityError, VaultError
from .journal import Journal
from .session import Session

_HEADER = bytes([F.FORMAT_VERSION]) + F.KIND_CANARY_LIST
_ENTRY = struct.Struct(">16sQ")  # record id, seq of the entry that planted it
#: Entries that touch every record (so every canary planted before them).
EVERY_RECORD = frozenset({"read_all", "export"})


# -- the sealed list (format.md 13a) ----------------------------------------------------------
def seed_of(ring: K.Keyring | None) -> bytes | None:
    """The recovery seed (keyring kind 8), held by managing roles and the recovery passphrase only."""
    if ring is None:
        return None
    return next((k.secret for k in ring.keys if k.kind == K.KIND_RECOVERY_SEED), None)


def list_key(seed: bytes) -> C.Aead:
    """The list's AEAD key, derived from the recovery seed."""
    return C.Aead(C.hkdf_sha256(seed, F.LABEL_CANARY_LIST))


def seal_list(seed: bytes, vault_id: bytes, canaries: dict[bytes, int], nonce: bytes | None = None,
              key: C.Aead | None = None) -> bytes:
    """``dv_meta.canaries``: header, nonce, AEAD over the padded list (u32 count, then each
    record id and the seq of its planting entry, sorted by id), bound to the vault.
    ``key``: :func:`list_key` of ``seed``, if the caller keeps it."""
    plain = struct.pack(">I", len(canaries)) + b"".join(_ENTRY.pack(rid, since)
                                                       for rid, since in sorted(canaries.items()))
    nonce = C.random_bytes(F.NONCE_LEN) if nonce is None else nonce
    key = list_key(seed) if key is None else key
    return _HEADER + nonce + key.seal(nonce, E.pad(plain, F.CANARY_LIST_BLOCK), _HEADER + vault_id)


def open_list(seed: bytes, vault_id: bytes, blob: bytes, key: C.Aead | None = None) -> dict[bytes, int]:
    """Record id -> seq of its planting entry; IntegrityError for anything else."""
    bad = IntegrityError("canary list failed authentication")
    if len(blob) < 2 + F.NONCE_LEN + F.TAG_LEN or blob[:2] != _HEADER:
        raise bad
    key = list_key(seed) if key is None else key
    try:
        plain = E.unpad(key.open(blob[2:2 + F.NONCE_LEN], blob[2 + F.NONCE_LEN:], _HEADER + vault_id),
                        F.CANARY_LIST_BLOCK)
        (n,) = struct.unpack_from(">I", plain)
    except (C.AuthFailure, E.Malformed, struct.error):
        raise bad from None
    if len(plain) != 4 + n * _ENTRY.size:
        raise bad
    out = dict(_ENTRY.iter_unpack(plain[4:]))
    if len(out) != n or list(out) != sorted(out):
        raise bad
    return out


def open_legacy(meta_secret: bytes, vault_id: bytes, blob: bytes) -> set[str]:
    """The tags of a list as database schema v7 and before wrote it (under the meta key,
    which every role holds): padded JSON, or unpadded JSON (the older form: it ends
    with "]", which a padded plaintext never does). Read once, by the upgrade to v8."""
    key = C.Aead(C.hkdf_sha256(meta_secret, F.LABEL_CANARIES))
    try:
        plain = key.open(blob[:F.NONCE_LEN], blob[F.NONCE_LEN:], vault_id)
        tags = json.loads(plain if plain.endswith(b"]") else E.unpad(plain, F.CANARY_LIST_BLOCK))
    except (C.AuthFailure, ValueError, E.Malformed):
        raise IntegrityError("canary list failed authentication") from None
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise IntegrityError("canary list failed authentication")
    return set(tags)


def legacy_tag(meta_secret: bytes, record_id: bytes) -> str:
    """A canary's tag in a list of schema v7 and before."""
    return C.hmac_sha256(C.hkdf_sha256(meta_secret, F.LABEL_CANARY_TAG), record_id)[:16].hex()


def _touches(e: A.Entry, names: dict[str, str], listed: dict[str, int]) -> list[str]:
    """The canaries an entry of another actor touched."""
    if e.target and e.target in names:
        return [names[e.target]]
    if e.action == "search" and '"targets"' in e.detail and names:
        try:
            found = json.loads(e.detail).get("targets", [])
        except (ValueError, AttributeError, RecursionError):
            return []
        return [names[t] for t in found if isinstance(t, str) and t in names] if isinstance(found, list) else []
    if e.action in EVERY_RECORD:
        return [rid for rid, since in sorted(listed.items()) if since < e.seq]
    return []


def _read_witness(path: Path) -> dict[str, str]:
    try:
        text = path.read_text("ascii")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError):
        raise VaultError(f"cannot read the checkpoints file {path}") from None
    out = {}
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) != 2 or len(parts[0]) != 2 * F.ID_LEN or parts[0] in out:
            raise VaultError(f"the checkpoints file {path} is malformed")
        out[parts[0]] = parts[1]
    return out


class Canaries:
    """A handle's view of the canary list: loaded once, re-sealed by the lead's adds, and the
    alarms the lead sees. It owns the ``canaries`` row of ``dv_meta``."""

    def __init__(self, ses: Session, access: Access, journal: Journal) -> None:
        self.ses = ses
        self.access = access
        self.journal = journal
        self.cache: dict[str, int] | None = None
        #: (seed, its list key), derived once per handle (every add of ours re-seals)
        self._key: tuple[bytes, C.Aead] | None = None
        #: the list this handle sealed last, and what it holds: the same bytes read back
        #: hold the same list (an AEAD opening is a function of key and bytes), so the next
        #: re-seal need not open them; other bytes are opened (and checked) as ever
        self._sealed: tuple[bytes, bytes, dict[bytes, int]] | None = None  # (seed, blob, list)

    def _store_list(self, blob: bytes) -> None:
        """Write the sealed list (joining the caller's transaction, if any)."""
        store = self.ses.store()
        with store.tx() as conn:
            store.set_meta_value(conn, "canaries", blob)

    def upgraded_list(self, conn: Any) -> bytes:
        """The list of a vault below schema v8 sealed as from v8 on (the upgrade writes it): the
        tags of the old list matched to the record ids present, each planted "since" the last
        entry before the upgrade. Why not 0: every listing or export before it would count as a
        touch of each canary at the lead's first look (a false alarm per canary and listing);
        touches before the upgrade are in the ``alarm`` entries the clients of then wrote."""
        store, seed = self.ses.store(), seed_of(self.access.ring)
        assert self.access.ring is not None and seed is not None  # only a signer upgrades to v8
        meta_secret = self.access.ring.current(K.KIND_META_KEY).secret
        blob = store.meta_value(conn, "canaries")
        if blob and blob[:2] == _HEADER:
            try:
                open_list(seed, self.ses.vid, blob)
            except IntegrityError:
                pass  # an old list whose random nonce begins like the header
            else:  # only v8 writes this kind: the version was lowered and an older statement put back
                raise IntegrityError("the canary list is of database schema v8, but the vault says it is older and "
                                     "its key statement is of an older kind: the database was edited (an older "
                                     "statement put back, to have an older canary list signed); tell the lead")
        tags = open_legacy(meta_secret, self.ses.vid, blob) if blob else set()
        before = RW.head_row(store, conn)[0]
        found = {rid: before for rid, _ in store.scan_records(conn) if tags and legacy_tag(meta_secret, rid) in tags}
        return seal_list(seed, self.ses.vid, found)


    def holds_key(self) -> bool:
        return seed_of(self.access.ring) is not None


    def load(self) -> dict[str, int]:
        """Canary record id (hex) -> seq of its planting entry; empty for a handle without the
        key. Read once per session (a canary planted meanwhile by another handle is noticed at
        the next open), from one snapshot of the list and the statement that names it."""
        if self.cache is not None:
            return self.cache
        seed = seed_of(self.access.ring)
        if seed is None:
            self.cache = {}
            return self.cache
        store = self.ses.store()
        with store.tx(write=False, snapshot=True) as conn:
            meta = store.get_meta_values(conn, ["canaries", "keys_stmt", "keys_stmt_sig", "db_schema_version"])
        blob = meta.get("canaries", b"")
        if not blob:
            raise IntegrityError("the canary list is missing (deleted in the database?); tell the lead")
        assert self.access.ring is not None
        st = ST.stored(meta, self.access.ring, self.ses.vid)
        named = st.canaries if st is not None and st.kind == 3 else None
        if (named is None and ST.meta_version(meta) >= F.STATEMENT_V3_FROM) \
                or (named is not None and not C.mac_equal(named.encode(), C.sha256(blob).hex().encode())):
            raise IntegrityError("the canary list is not the one the lead signed (replaced, emptied or put back from "
                                 "an older copy in the database?); tell the lead")
        self.cache = {rid.hex(): since for rid, since in open_list(seed, self.ses.vid, blob).items()}
        return self.cache


    def reseal(self, conn: Any, new: list[str]) -> None:
        """In an add's transaction (the lead's or the recovery passphrase's; it holds the keys
        lock and has written its entry): the list with ``new`` added, under a fresh nonce, and
        the statement signed again to name it. Every such add does it, a canary's like any other."""
        seed = seed_of(self.access.ring)
        if seed is None:
            return
        store = self.ses.store()
        # the stored statement names the stored list and users; the list re-sealed is the one
        # that check read (the keys lock, held since, keeps every other signer out)
        users, meta = self.access.verified_users_meta(conn)
        blob = meta.get("canaries", b"")
        if self._key is None or self._key[0] != seed:
            self._key = (seed, list_key(seed))
        key = self._key[1]
        sealed = self._sealed
        if sealed is not None and sealed[0] == seed and sealed[1] == blob:
            listed = dict(sealed[2])
        else:
            listed = open_list(seed, self.ses.vid, blob, key)
        if new:
            planted = A.head(store)[0]  # our add's entry, written in this transaction
            listed.update({bytes.fromhex(rid): planted for rid in new})
        fresh = seal_list(seed, self.ses.vid, listed, key=key)
        self._store_list(fresh)
        ST.sign(self.access, conn, users=users, canaries=fresh, meta=meta)
        self._sealed = (seed, fresh, dict(listed))
        self.cache = {rid.hex(): since for rid, since in listed.items()}


    def live(self) -> set[str]:
        """Record ids (hex) of the canaries still present."""
        listed = self.load()
        return {rid for rid in [rid.hex() for rid in self.ses.store().ids()] if rid in listed} if listed else set()


    def alarm_if_canary(self, record_ids: Iterable[str], op: str) -> None:
        """After an operation on ``record_ids``: nothing is written (a managing client's own touch
        of a canary is no alarm, and an entry naming it would tell staff which record it is; the
        recovery passphrase's touches are found in its entries). A holder of the list's key
        loads it (once per handle), so that a list deleted or replaced since its open is refused
        at its next touch, not only at its next open."""
        self.load()


    def own_touch(self, record_id: str, op: str) -> None:
        """A holder's listing touched canary ``record_id``: as :func:`alarm_if_canary`."""
        self.load()


    def _audit_names(self, listed: dict[str, int]) -> dict[str, str]:
        """Audit pseudonym -> canary id, computed (never issued: no write)."""
        keys = self.access.purposes.get("audit")
        if keys is None:
            return {}
        prefix = P.purpose_prefix("audit")
        return {P.format(keys.value(bytes.fromhex(rid)), prefix): rid for rid in listed}


    def _holders(self) -> set[bytes]:
        """Actors whose touches are no alarm: managing users (they hold the list; the recovery
        passphrase, which may be in other hands, is watched like anyone)."""
        return {u.public.raw for u in self.access.users(include_revoked=True)
                if u.role in self.ses.schema.roles and self.ses.schema.roles[u.role].manage}


    def alarms(self, after: int = 0) -> list[dict[str, Any]]:
        """Every touch of a canary in the log after entry ``after``, in order: the touches found
        in the entries of every actor but a managing user (``derived``), and the ``alarm``
        entries managing clients wrote in older releases. Entries that fail their own check
        (a malformed row, a forged signature, a detail that is no JSON object) count for
        nothing and never stop the listing."""
        from .audit_trust import problem
        listed = self.load()
        names = self._audit_names(listed)
        holders = self._holders() if listed else set()
        known = self.access.known_actors()
        out: list[dict[str, Any]] = []
        for e in A.read_entries(self.ses.store(), after=after):
            if e.action == "alarm":
                hits, derived = [None], False
            elif not listed or e.actor in holders or e.action in A.UNSIGNED_ACTIONS:
                continue
            else:
                hits, derived = _touches(e, names, listed), True  # type: ignore[assignment]
            if not hits or problem(e, known) is not None:
                continue
            for rid in hits:
                detail = (RW.detail_of(e) or {}) if not derived else {"op": e.action, "canary": True, "derived": True}
                target = e.target if not derived or not rid else next((n for n, r in names.items() if r == rid), "")
                out.append({"seq": e.seq, "at": e.at, "actor": A.actor_id(e.actor), "target": target, "detail": detail})
        return out


    def count(self) -> int:
        """How many canaries are planted and still present (for the lead's status). A closed
        handle raises VaultClosed: its cached list would otherwise answer a count of nothing."""
        self.ses.store()
        return len(self.live())


    def witness(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """At the lead's open: check that the log still holds the checkpoint kept in ``path`` for
        this vault (else IntegrityError: the log was cut back or rewritten since), list the canary
        alarms written since it, and keep the log's head there as the new checkpoint. Returns
        {"alarms": [...], "checkpoint": str, "previous": str | None}. The file (format.md 8e) is
        the lead's, beside their identity; a database writer cannot reach it."""
        from ._files import replace_private
        p = Path(check_path(path))
        kept = _read_witness(p)
        previous = kept.get(self.ses.vid.hex())
        after = 0
        if previous is not None:
            cp = A.Checkpoint.parse(previous)
            store = self.ses.store()
            ph = "?" if store.is_sqlite else "%s"
            with store.tx(write=False) as conn:
                row = store.raw(conn, "SELECT seq, prev, at, actor, action, target, detail, reason, hash, sig "  # noqa: S608 - only the placeholder style is formatted in
                                      f"FROM dv_audit WHERE seq = {ph}", (cp.seq,)).fetchone()
            if row is None or not cp.matches(RW.link_of(row)):
                raise IntegrityError(f"the audit log no longer holds entry {cp.seq} as your last open saw it (kept "
                                     f"in {p}): entries were deleted or rewritten since; run dvault audit verify "
                                     f"--against {cp.short}. If the vault was restored from a backup on purpose, "
                                     "remove this vault's line from that file")
            after = cp.seq
        found = self.alarms(after=after)
        seq, head = A.head(self.ses.store())
        now = str(A.make_checkpoint(seq, head, self.journal.auditor.actor, self.access.signer))
        kept[self.ses.vid.hex()] = now
        replace_private(p, "".join(f"{vid} {cp_}\n" for vid, cp_ in sorted(kept.items())).encode("ascii"))
        return {"alarms": found, "checkpoint": now, "previous": previous}
