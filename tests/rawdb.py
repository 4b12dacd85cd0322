"""What an attacker with write access to the database can do: raw rows, no keys."""

from __future__ import annotations

import json

import contextlib
from typing import Iterator

import pytest
import sqlalchemy as sa

from vault import _format as F
from vault import compact
from vault import envelope as E
from vault import schema as S


@contextlib.contextmanager
def audit_unguarded(conn: sa.Connection, url: str) -> Iterator[None]:
    """Inside ``conn``'s transaction, as the tables' owner: PostgreSQL's insert guard on
    dv_audit (vault.audit_guard) switched off, as the owner (not the staff login) can, so
    that a test can put there the rows a SQLite file writer can, and see the readers cope."""
    pg = not url.startswith("sqlite")
    if pg:
        conn.exec_driver_sql("ALTER TABLE dv_audit DISABLE TRIGGER dv_audit_guard")
    yield
    if pg:
        conn.exec_driver_sql("ALTER TABLE dv_audit ENABLE ALWAYS TRIGGER dv_audit_guard")


class RawDB:
    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)

    def close(self) -> None:
        self.engine.dispose()

    def row(self, rid: str) -> bytes:
        with self.engine.begin() as c:
            return bytes(c.execute(sa.text("SELECT data FROM dv_records WHERE id = :i"),
                                   {"i": bytes.fromhex(rid)}).scalar_one())

    def set_row(self, rid: str, data: bytes) -> None:
        with self.engine.begin() as c:
            n = c.execute(sa.text("UPDATE dv_records SET data = :d WHERE id = :i"),
                          {"d": data, "i": bytes.fromhex(rid)}).rowcount
            assert n == 1

    def insert_row(self, rid: str, data: bytes) -> None:
        with self.engine.begin() as c:
            c.execute(sa.text("INSERT INTO dv_records (id, data) VALUES (:i, :d)"),
                      {"d": data, "i": bytes.fromhex(rid)})

    def delete_row(self, rid: str) -> None:
        with self.engine.begin() as c:
            assert c.execute(sa.text("DELETE FROM dv_records WHERE id = :i"), {"i": bytes.fromhex(rid)}).rowcount == 1

    def codec(self) -> compact.Codec:
        """The stored schema's framing (record format 2 names classes and fields by position)."""
        sch = S.load(self.meta("schema").decode("utf-8"))
        return compact.Codec(self.meta("vault_id"), sch.classes, tuple(sch.fields))

    def envs_of(self, data: bytes) -> dict[str, tuple[bytes, bytes]]:
        """Class -> (DEK blob or reference, cells) of a row of either record format."""
        return self.codec().unpack(data)

    def envs(self, rid: str) -> dict[str, tuple[bytes, bytes]]:
        return self.envs_of(self.row(rid))

    def set_envs(self, rid: str, envs: dict[str, tuple[bytes, bytes]]) -> None:
        """Put ``envs`` back in the row's own format (format 1 keeps the dict's order)."""
        head = self.row(rid)[:2]
        if head in E.ROW_V23:  # schema order; a class left out is left out
            order = self.codec().order
            self.set_row(rid, E.pack_v2([envs[c] for c in order if c in envs]
                                        + [e for c, e in envs.items() if c not in order], head[1]))
        else:
            self.set_row(rid, E.pack_record([(c, d, cells) for c, (d, cells) in envs.items()]))

    def cells(self, rid: str, cls: str) -> dict[str, bytes]:
        """Field name -> cell: a format-1 field blob, a format-2 ciphertext, or a format-3
        piece of the envelope's one ciphertext (field number and size are framing, rebuilt from
        the name by set_cells; a format-3 envelope's tag stays where it is)."""
        data = self.row(rid)
        cells = self.envs_of(data)[cls][1]
        if data[:2] not in E.ROW_V23:
            return E.unpack_cells(cells)
        codec = self.codec()
        return {codec.names[fno]: ct for fno, ct in E.unpack_cells_v2(cells, data[:2] == F.ROW_V3_PREFIX)[0]}

    def derived_opens(self, rid: str, cls: str, secret: bytes, version: int) -> bool:
        """Whether class key ``secret`` (at ``version``) derives the DEK of a format-2 or 3
        kind H envelope: its first cell (or check tag; format 3: its ciphertext) opens under it."""
        from vault import _crypto as C
        dek, cells_blob = self.envs(rid)[cls]
        cells = self.cells(rid, cls)
        names, vid, r = list(cells), self.meta("vault_id"), bytes.fromhex(rid)
        fmt = self.row(rid)[1]
        raw = compact.derive_dek(secret, compact.dek_info(dek, vid, r, cls, version, names, fmt))
        key = C.Aead(raw)
        try:
            if fmt == 3:
                self.codec().authenticate_derived(raw, dek, r, cells_blob, 3)
            elif not names:
                key.open(compact.CHECK_NONCE, E.unpack_cells_v2(cells_blob)[1], compact.check_aad(dek[10:18], vid, r))
            else:
                fno = self.codec().numbers[names[0]]
                key.open(compact.field_nonce(fno), cells[names[0]],
                         compact.field_aad(dek[10:18], vid, r, fno, names[0]))
        except C.AuthFailure:
            return False
        return True

    def set_cells(self, rid: str, cls: str, cells: dict[str, bytes]) -> None:
        envs = self.envs(rid)
        head = self.row(rid)[:2]
        if head not in E.ROW_V23:
            envs[cls] = (envs[cls][0], E.pack_cells(cells))
        else:
            joint = head == F.ROW_V3_PREFIX
            known = self.codec().numbers
            # a name the schema lacks gets a number the schema lacks (what an attacker can write)
            numbers = {n: known.get(n, 200 + i) for i, n in enumerate(sorted(cells))}
            check = E.unpack_cells_v2(envs[cls][1], joint)[1] if joint or not cells else b""
            envs[cls] = (envs[cls][0], E.pack_cells_v2(sorted((numbers[n], ct) for n, ct in cells.items()), check,
                                                       joint))
        self.set_envs(rid, envs)

    def index_widths(self) -> dict[int, int]:
        """Generation -> bytes of each record id its rows store, read from the plans as
        docs/format.md §10 says: a version 3 plan's id_bytes, else the whole 16-byte id."""
        out = {}
        with self.engine.begin() as c:
            for (text,) in c.exec_driver_sql("SELECT value FROM dv_meta WHERE name IN ('index_plan', 'index_next')"):
                if bytes(text):
                    plan = json.loads(bytes(text))
                    out[int(plan["gen"])] = plan["id_bytes"] if plan.get("v") == 3 else 16
        return out

    def index_terms(self, resolve: bool = True) -> list[tuple[int, str, int, bytes]]:
        """Every blind-index term (gen, name, value, record id) spelled out of the bucket rows,
        with duplicates (a record in two chunks of one bucket) kept. Each stored prefix is
        resolved (``resolve``) to the id of every record that starts with it, as a search
        does; a prefix no record has is kept as it is stored (so it shows in comparisons)."""
        widths = self.index_widths()
        with self.engine.begin() as c:
            rows = c.exec_driver_sql("SELECT gen, name, value, ids FROM dv_index").all()
            live = sorted(bytes(r[0]) for r in c.exec_driver_sql("SELECT id FROM dv_records"))
        out = []
        for gen, name, value, ids in rows:
            ids, w = bytes(ids), widths[int(gen)]
            assert ids and len(ids) % w == 0
            parts = [ids[i:i + w] for i in range(0, len(ids), w)]
            assert parts == sorted(set(parts))
            for p in parts:
                owners = [r for r in live if r.startswith(p)] if resolve else []
                out += [(int(gen), str(name), int(value), r) for r in owners or [p]]
        return out

    def meta(self, name: str) -> bytes:
        with self.engine.begin() as c:
            return bytes(c.execute(sa.text("SELECT value FROM dv_meta WHERE name = :n"), {"n": name}).scalar_one())

    def set_meta(self, name: str, value: bytes) -> None:
        with self.engine.begin() as c:
            c.execute(sa.text("UPDATE dv_meta SET value = :v WHERE name = :n"), {"v": value, "n": name})

    def slot(self) -> tuple[str, bytes, bytes]:
        with self.engine.begin() as c:
            r = c.execute(sa.text("SELECT slot_id, unlock, keyring FROM dv_slots WHERE kind = 'passphrase'")).one()
            return r[0], bytes(r[1]), bytes(r[2])

    def set_slot(self, slot_id: str, unlock: bytes, keyring: bytes) -> None:
        with self.engine.begin() as c:
            c.execute(sa.text("UPDATE dv_slots SET unlock = :u, keyring = :k WHERE slot_id = :s"),
                      {"u": unlock, "k": keyring, "s": slot_id})

    TABLES = ("dv_meta", "dv_slots", "dv_records", "dv_index", "dv_pseudonyms", "dv_users", "dv_reveals", "dv_audit",
              "dv_shreds")

    def dump(self, exclude: tuple[str, ...] = ()) -> bytes:
        """Every byte of every vault table as a database administrator would see it."""
        out = []
        with self.engine.begin() as c:
            for table in (t for t in self.TABLES if t not in exclude):
                for row in c.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1")):
                    for v in row:
                        out.append(bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode())
        return b"\x00".join(out)


def flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def audit_head(url: str) -> tuple[int, bytes]:
    """The last audit entry's (seq, hash), read as the database owner."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            seq, h = c.exec_driver_sql("SELECT seq, hash FROM dv_audit ORDER BY seq DESC LIMIT 1").one()
        return int(seq), bytes(h)
    finally:
        engine.dispose()


def audit_actions(url: str) -> list[str]:
    raw = RawDB(url)
    with raw.engine.begin() as c:
        out = [r[0] for r in c.execute(sa.text("SELECT action FROM dv_audit ORDER BY seq"))]
    raw.close()
    return out


def freeze_audit(engine: sa.engine.Engine, url: str) -> None:
    """Make dv_audit refuse every insert (a trigger), as a full disk or a revoked grant would."""
    with engine.begin() as c:
        if url.startswith("sqlite"):
            c.exec_driver_sql("CREATE TRIGGER ro BEFORE INSERT ON dv_audit BEGIN SELECT RAISE(ABORT, 'read-only'); END")
        else:
            c.exec_driver_sql("CREATE FUNCTION ro() RETURNS trigger LANGUAGE plpgsql AS "
                              "$$ BEGIN RAISE EXCEPTION 'read-only'; END $$")
            c.exec_driver_sql("CREATE TRIGGER ro BEFORE INSERT ON dv_audit FOR EACH ROW EXECUTE FUNCTION ro()")


def thaw_audit(engine: sa.engine.Engine, url: str) -> None:
    with engine.begin() as c:
        c.exec_driver_sql("DROP TRIGGER ro" if url.startswith("sqlite") else "DROP TRIGGER ro ON dv_audit")


@contextlib.contextmanager
def old_release(monkeypatch: pytest.MonkeyPatch, *, states: bool = False) -> Iterator[None]:
    """Vaults made inside are what a release before database schema v6 wrote: entries
    without record states and a key statement of the first kind (no db and users lines).
    Set db_schema_version below 6 afterwards for a faithful older vault (``states``: v6,
    whose entries name record states); lowering the version of a vault this release made
    is tampering, and refused. On leaving, each vault made inside gets its canary list as
    those releases sealed it (under the meta key: see as_release_v7). Their index plans were
    of version 2 at most: whole 16-byte ids in dv_index rows."""
    import dataclasses

    import vault
    from vault import _format as F
    from vault import canaries as CA
    from vault import index as I
    from vault import keys as K
    real, real_create, real_plan = K.key_statement, vault.create, I.make_plan
    made = []

    def first_kind(ring, vault_id, db_version, roster, **kw):  # type: ignore[no-untyped-def]
        lines = real(ring, vault_id, db_version, roster, **kw).split("\n")
        return "\n".join([F.KEYS_STATEMENT_HEADER_V1, lines[1]] + [ln for ln in lines if ln.startswith("class ")]) + "\n"

    def create(*a, **k):  # type: ignore[no-untyped-def]
        v = real_create(*a, **k)
        made.append((v._ses.store().url, v._access.ring.current(K.KIND_META_KEY).secret, CA.seed_of(v._access.ring), v._ses.vid))
        return v

    with monkeypatch.context() as m:
        m.setattr(K, "key_statement", first_kind)
        m.setattr(F, "SIGNED_VERSION_FROM", 10 ** 6)
        m.setattr(F, "STATEMENT_V3_FROM", 10 ** 6)
        m.setattr(F, "RECORD_STATES_V2_FROM", 10 ** 6)
        m.setattr(vault, "create", create)
        m.setattr(I, "make_plan", lambda *a, **k: dataclasses.replace(real_plan(*a, **k), id_bytes=16))
        if not states:
            m.setattr("vault.journal.Journal.states", staticmethod(lambda drop=(), put=(): {}))
        yield
    for url, meta_secret, seed, vid in made:
        raw = RawDB(url)
        listed = CA.open_list(seed, vid, raw.meta("canaries"))
        raw.set_meta("canaries", _legacy_list(meta_secret, vid, [r.hex() for r in listed]))
        raw.close()


def _legacy_list(meta_secret: bytes, vault_id: bytes, canaries: list[str], padded: bool = True) -> bytes:
    """A canary list as database schema v7 and before sealed it (format.md 13a)."""
    import json

    from vault import _crypto as C
    from vault import _format as F
    from vault import canaries as CA
    from vault import envelope as E
    tags = json.dumps(sorted(CA.legacy_tag(meta_secret, bytes.fromhex(r)) for r in canaries)).encode()
    nonce = C.random_bytes(F.NONCE_LEN)
    key = C.Aead(C.hkdf_sha256(meta_secret, F.LABEL_CANARIES))
    return nonce + key.seal(nonce, E.pad(tags, F.CANARY_LIST_BLOCK) if padded else tags, vault_id)


def as_release_v7(v, canaries: list[str] = (), *, padded: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the vault of the open handle ``v`` (the lead's or the recovery passphrase's)
    as database schema v7 left it: db_schema_version 7, the canary list sealed under the meta
    key (the tags of ``canaries``; padded JSON, or ``padded=False`` the unpadded JSON of
    before 2026-11-27) and a key statement of the second kind, signed for v7."""
    from vault import _format as F
    from vault import keys as K
    blob = _legacy_list(v._access.ring.current(K.KIND_META_KEY).secret, v._ses.vid, list(canaries), padded)
    raw = RawDB(v._ses.store().url)
    lines = raw.meta("keys_stmt").decode("ascii").split("\n")
    text = "\n".join([F.KEYS_STATEMENT_HEADER_V2, lines[1], "db 7", lines[3]]
                     + [ln for ln in lines if ln.startswith("class ")]) + "\n"
    who, sign = v._access.plan_signer()
    raw.set_meta("keys_stmt", text.encode("ascii"))
    raw.set_meta("keys_stmt_sig", K.sign_text("keys", v._ses.vid, text, who, sign))
    raw.set_meta("canaries", blob)
    raw.set_meta("db_schema_version", b"7")
    raw.close()


def as_release_v8(v) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the vault of the open handle ``v`` (the lead's or the recovery passphrase's)
    as database schema v8 left it: db_schema_version 8 and the key statement signed for v8.
    Its entries must name record states of the first kind: write them with
    ``vault._format.RECORD_STATES_V2_FROM`` raised out of reach (as releases of v8 wrote)."""
    from vault import keys as K
    raw = RawDB(v._ses.store().url)
    lines = raw.meta("keys_stmt").decode("ascii").split("\n")
    assert lines[2].startswith("db ")
    text = "\n".join(lines[:2] + ["db 8"] + lines[3:])
    who, sign = v._access.plan_signer()
    raw.set_meta("keys_stmt", text.encode("ascii"))
    raw.set_meta("keys_stmt_sig", K.sign_text("keys", v._ses.vid, text, who, sign))
    raw.set_meta("db_schema_version", b"8")
    raw.close()
