"""The audit log: tamper evidence, fail-closed reads, no names, exact sequences (issue 5)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets

import pytest
import sqlalchemy as sa

import vault
from conftest import PASSPHRASE, PG_URL
from rawdb import RawDB, audit_unguarded, freeze_audit
from vault import audit as A
from vault.identity import Identity

SECRET_NAME = "Zainab Okonkwo-Rahimi"
REASON = "Checking Zainab's visa letter for the embassy"


@pytest.fixture
def logged(url: str):  # type: ignore[no-untyped-def]
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        ids = v.add_many([{"legal_name": SECRET_NAME, "email": "z@example.org", "badge_name": "Zainab"},
                          {"legal_name": "Kofi Mensah", "email": "k@example.org"}])
    with vault.open(url, identity=staff) as v:
        v.set_reason(REASON)
        for rid in ids:
            v.get(rid)
        v.find(email="z@example.org")
        v.update(ids[0], {"dietary": "vegan"})
    return url, lead, staff, ids


def _rows(url: str) -> list[tuple]:
    raw = RawDB(url)
    with raw.engine.begin() as c:
        rows = [tuple(r) for r in c.execute(sa.text("SELECT * FROM dv_audit ORDER BY seq"))]
    raw.close()
    return rows


def _exec(url: str, sql: str, **params: object) -> None:
    """As the database owner; an insert into the log with PostgreSQL's insert guard off (the
    owner can), as a SQLite file writer puts any row there."""
    raw = RawDB(url)
    with raw.engine.begin() as c:
        with audit_unguarded(c, url) if sql.startswith("INSERT INTO dv_audit") else contextlib.nullcontext():
            c.execute(sa.text(sql), params)
    raw.close()


def _verify(url: str, lead: Identity, against: str | None = None) -> A.Verdict:
    # verify reads the log before it appends its own entry, so the verdict is about the tampered log
    with vault.open(url, identity=lead) as v:
        return v.audit_verify(against)


def test_clean_log_verifies(logged) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, ids = logged
    verdict = _verify(url, lead)
    assert verdict.ok, str(verdict)


def _n(url: str) -> int:
    return len(_rows(url))


@pytest.mark.parametrize("attack", ["edit", "delete", "swap", "insert", "forge", "reorder_seq"])
def test_tampering_is_detected_and_located(logged, attack: str) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, ids = logged
    n = _n(url)
    k = n // 2
    if attack == "edit":
        _exec(url, "UPDATE dv_audit SET detail = :d WHERE seq = :s", d='{"fields":[]}', s=k)
        expect = k
    elif attack == "delete":
        _exec(url, "DELETE FROM dv_audit WHERE seq = :s", s=k)
        expect = k
    elif attack == "swap":  # swap the contents of two rows, keeping their seq numbers
        rows = {r[0]: r for r in _rows(url)}
        a, b = rows[k], rows[k + 1]
        for dst, src in ((k, b), (k + 1, a)):
            _exec(url, "UPDATE dv_audit SET prev=:p, at=:t, actor=:ac, action=:an, target=:tg, detail=:d, "
                       "reason=:r, hash=:h, sig=:g WHERE seq=:s", p=src[1], t=src[2], ac=src[3], an=src[4],
                  tg=src[5], d=src[6], r=src[7], h=src[8], g=src[9], s=dst)
        expect = k
    elif attack == "insert":  # a database writer appends an entry signed with their own key
        eve = Identity.generate()
        last = _rows(url)[-1]
        h = A.entry_hash(n + 1, bytes(last[8]), 0, eve.public.raw, "read", "", "{}", b"")
        _exec(url, "INSERT INTO dv_audit VALUES (:s,:p,0,:a,'read','','{}',:r,:h,:g)", s=n + 1,
              p=bytes(last[8]), a=eve.public.raw, r=b"", h=h, g=eve.sign(h))
        expect = n + 1
    elif attack == "forge":  # rewrite an entry consistently, but without its actor's key
        row = _rows(url)[k - 1]
        h = A.entry_hash(k, bytes(row[1]), row[2], bytes(row[3]), "read", row[5], '{"fields":[]}', bytes(row[7]))
        _exec(url, "UPDATE dv_audit SET action='read', detail='{\"fields\":[]}', hash=:h WHERE seq=:s", h=h, s=k)
        expect = k
    else:
        _exec(url, "UPDATE dv_audit SET seq = :big WHERE seq = :s", big=n + 50, s=k)
        expect = k
    verdict = _verify(url, lead)
    assert not verdict.ok and verdict.first_bad == expect, str(verdict)


def test_truncation_after_checkpoint(logged) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, ids = logged
    with vault.open(url, identity=lead) as v:
        cp = v.audit_checkpoint()
    assert cp.startswith("dvcp1:")
    short = ":".join(cp.split(":")[:3])
    assert len(short) < 50  # fits on paper
    assert _verify(url, lead, cp).ok and _verify(url, lead, short).ok
    seq = int(cp.split(":")[1])
    _exec(url, "DELETE FROM dv_audit WHERE seq >= :s", s=seq - 2)
    verdict = _verify(url, lead, cp)
    assert not verdict.ok and "truncated" in verdict.problem
    assert _verify(url, lead).ok  # without the checkpoint a clean truncation is invisible: keep checkpoints


def test_rewritten_log_differs_from_checkpoint(logged) -> None:  # type: ignore[no-untyped-def]
    """A consistently re-chained log (every later hash recomputed and re-signed, as someone
    holding the signing keys could) verifies on its own; only the checkpoint catches it."""
    url, lead, staff, ids = logged
    with vault.open(url, identity=lead) as v:
        cp = v.audit_checkpoint()
    with pytest.raises(A.AuditError):
        A.Checkpoint.parse(cp[:-4] + "aaaa")  # the signed form's signature is checked
    seq = int(cp.split(":")[1])
    by_actor = {ident.public.raw: ident for ident in (lead, staff)}  # every actor in this log
    prev = None
    for row in _rows(url):
        s, at, actor = row[0], row[2], bytes(row[3])
        if s < seq:
            prev = bytes(row[8])
            continue
        at = at + 1 if s == seq else at  # the rewrite: the checkpointed entry's time changes
        h = A.entry_hash(s, prev, at, actor, row[4], row[5], row[6], bytes(row[7]), labelled=True)
        sig = by_actor[actor].sign(A.signed_message(h, True)) if row[9] != bytes(64) else bytes(row[9])  # unlock_failed: unsigned
        _exec(url, "UPDATE dv_audit SET prev = :p, at = :t, hash = :h, sig = :g WHERE seq = :s",
              p=prev, t=at, h=h, g=sig, s=s)
        prev = h
    assert _verify(url, lead).ok  # consistent: without the checkpoint nothing is wrong
    verdict = _verify(url, lead, cp)
    assert not verdict.ok and verdict.first_bad == seq and "differs from the checkpoint" in verdict.problem


@pytest.mark.parametrize("edit", ["detail_nested", "prev_short", "actor_short", "actor_as_text", "at_as_text",
                                  "hash_as_text", "detail_as_blob", "sig_as_integer"])
def test_a_malformed_row_is_named_by_read_and_located_by_verify(logged, edit: str) -> None:  # type: ignore[no-untyped-def]
    """Columns edited into the wrong type or size (SQLite keeps any type in any column;
    bytea has no length on PostgreSQL): reading the log named nothing and crashed
    (RecursionError on a detail of 100000 "[", TypeError on a text actor); now it is an
    IntegrityError naming the entry; now the listing shows it where it stands, flagged
    (one bad row must not blind the lead to every other entry), and verify reports that
    entry as the first bad one (a fuzz hunt, 2026-11-27)."""
    url, lead, staff, ids = logged
    if edit not in ("detail_nested", "prev_short", "actor_short") and not url.startswith("sqlite"):
        pytest.skip("PostgreSQL's typed columns cannot hold this edit (SQLite keeps any type in any column)")
    k = _n(url) // 2
    column, value = {"detail_nested": ("detail", "[" * 100_000), "prev_short": ("prev", bytes(31)),
                     "actor_short": ("actor", bytes(63)), "actor_as_text": ("actor", "x" * 64),
                     "at_as_text": ("at", "noon"), "hash_as_text": ("hash", "h" * 32),
                     "detail_as_blob": ("detail", b"{}"), "sig_as_integer": ("sig", 7)}[edit]
    _exec(url, f"UPDATE dv_audit SET {column} = :v WHERE seq = :s", v=value, s=k)
    with vault.open(url, identity=lead) as v:
        shown = v.audit_entries()
        verdict = v.audit_verify()
    assert [e["seq"] for e in shown if not e["verified"]] == [k]
    assert [e["seq"] for e in shown][:k + 1] == list(range(1, k + 2))  # every entry, in place
    assert not verdict.ok and verdict.first_bad == k, str(verdict)


@pytest.mark.parametrize("seq", [2**64, 2**64 + 5, 10**30])
def test_checkpoint_beyond_a_u64_is_not_a_checkpoint(seq: int) -> None:
    """SEQ is a u64 in the signed message: a larger one (signed form or short) is refused as
    malformed, not a struct.error from packing it (a fuzz hunt, 2026-11-27)."""
    z = A._b32
    for text in (f"dvcp1:{seq}:{z(bytes(20))}:{z(bytes(64))}:{z(bytes(64))}", f"dvcp1:{seq}:{z(bytes(20))}"):
        with pytest.raises(A.AuditError, match="not a checkpoint"):
            A.Checkpoint.parse(text)


def test_fail_closed_when_audit_cannot_be_written(url: str) -> None:
    with vault.create(url, PASSPHRASE) as v:
        rid = v.add({"legal_name": SECRET_NAME})
        freeze_audit(v._ses.store().engine, url)  # the audit table turns read-only under the open vault
        for call in (lambda: v.get(rid), lambda: v.find(legal_name=SECRET_NAME), lambda: list(v.records()),
                     lambda: v.resolve(v._pseudonyms.issue(rid, "badge")), lambda: v.add({"badge_name": "x"})):
            with pytest.raises(A.AuditError) as info:
                call()
            assert SECRET_NAME not in str(info.value)
        assert v.count() == 1  # the refused add wrote nothing


def test_no_names_or_reasons_in_audit_tables(logged) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, ids = logged
    raw = RawDB(url)
    dump = b"".join(bytes(x) if isinstance(x, (bytes, memoryview)) else str(x).encode()
                    for r in _rows(url) for x in r)
    raw.close()
    for needle in (SECRET_NAME, "Zainab", "Kofi Mensah", "z@example.org", "vegan", REASON, "visa"):
        for enc in ("utf-8", "utf-16-le"):
            assert needle.encode(enc) not in dump, needle
    assert not any(bytes.fromhex(rid) in dump or rid.encode() in dump for rid in ids)
    with vault.open(url, identity=lead) as v:
        reads = v.audit_entries(action="read")
        assert {e["reason"] for e in reads} == {REASON}
        assert all(e["target"].startswith("AU-") for e in reads)
    with vault.open(url, identity=staff) as v:
        mine = v.audit_entries()
        assert {e["reason"] for e in mine} == {None}
        assert {e["actor"] for e in mine} == {staff.public.user_id}  # only their own entries


def test_reasons_are_padded_notes_to_the_lead(logged) -> None:  # type: ignore[no-untyped-def]
    """A sealed reason starts with version, kind Q (padded: its length shows only a 32-byte
    bucket; kind R of before 2026-11-27 showed the exact length) and the lead's user id;
    the lead also reads kind R and a headerless reason of before 2026-11-26, and refuses
    an edited header."""
    from vault import _crypto as C
    from vault import notes as N
    url, lead, staff, ids = logged
    reasons = [bytes(r[7]) for r in _rows(url) if r[7]]
    assert reasons and all(r[:10] == b"\x01Q" + bytes.fromhex(lead.public.user_id) for r in reasons)
    with vault.open(url, identity=lead) as v:
        assert v._log.open_reason(reasons[0]) == REASON
        for short, longer in (("visa", "visa appointment, consulate"), ("a", "b" * 30)):
            v.set_reason(short)
            v.get(ids[0])  # its entry carries the reason
            v.set_reason(longer)
            v.get(ids[0])
        v.set_reason(None)
        sizes = [len(bytes(r[7])) for r in _rows(url)[-4:]]
        assert sizes[0] == sizes[1] and sizes[2] == sizes[3], sizes  # 4 and 27 bytes; 1 and 30: one bucket
        old = N.seal_note(b"R", lead.public.x25519, bytes.fromhex(lead.public.user_id), b"an R reason")
        assert v._log.open_reason(old) == "an R reason"
        assert v._log.open_reason(C.seal_to(lead.public.x25519, b"an older reason")) == "an older reason"
        assert v._log.open_reason(b"\x01Q" + bytes(8) + reasons[0][10:]) is None  # header no longer matches
        assert v._log.open_reason(reasons[0][:-1]) is None


def test_exact_sequence_for_fifty_operations(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'seq.vault'}"
    expected: list[str] = []
    with vault.create(url, PASSPHRASE) as v:
        expected.append("create")
        ids = []
        for i in range(50):
            op = i % 5
            if op == 0:
                ids.append(v.add({"legal_name": f"Person {i}", "email": f"p{i}@example.org"}))
                expected.append("add")
            elif op == 1:
                v.get(ids[-1], fields=["email"])
                expected.append("read")
            elif op == 2:
                v.find(email=f"p{i - 2}@example.org")
                expected.append("search")
            elif op == 3:
                v.update(ids[-1], {"phone": "+1 555 0100"})
                expected.append("update")
            else:
                with pytest.raises(vault.ValidationError):
                    v.find(nationality="x")  # refused by validation: not an access, not logged
                list(v.records(fields=["badge_name"]))
                expected.append("read_all")
        v.delete(ids[0])
        expected.append("shred")
    with pytest.raises(vault.WrongPassphrase):
        vault.open(url, "nope")
    expected.append("unlock_failed")
    raw = RawDB(url)
    with raw.engine.begin() as c:
        actions = [r[0] for r in c.execute(sa.text("SELECT action FROM dv_audit ORDER BY seq"))]
        details = [r[0] for r in c.execute(sa.text("SELECT detail FROM dv_audit WHERE action='search'"))]
    raw.close()
    assert actions == expected
    assert all('"results":1' in d and "example.org" not in d for d in details)


def test_denied_access_is_logged(logged) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, ids = logged
    with vault.open(url, identity=staff) as v:
        with pytest.raises(vault.AccessDenied):
            v.get(ids[0], fields=["legal_name"])
        last = v.audit_entries(action="denied")
    assert last and last[-1]["detail"]["op"] == "read"


def test_canary_tripwire(logged) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, ids = logged
    with vault.open(url, identity=lead) as v:
        canary = v.plant_canary({"legal_name": "Decoy Person", "email": "decoy@example.org", "badge_name": "D"})
        assert not v.alarms()
    raw = RawDB(url)
    assert len(raw.envs(canary)) == 5  # same row shape as any record
    raw.close()
    with vault.open(url, identity=staff) as v:
        v.find(email="decoy@example.org")
        list(v.records(fields=["badge_name"]))
        v.get(ids[1])
        v.get(canary)
        v.get(canary)  # the second read uses the cached tag key: still an alarm
    with vault.open(url, identity=lead) as v:
        alarms = v.alarms()
        assert [a["detail"]["op"] for a in alarms] == ["search", "read_all", "read", "read"]
        assert all(a["actor"] == staff.public.user_id for a in alarms)
    with vault.open(url, identity=staff) as v:
        with pytest.raises(vault.AccessDenied):
            v.plant_canary({"badge_name": "x"})
        # their own alarm entries would name the decoy (target) to the one who tripped it
        mine = v.audit_entries()
        assert mine and not [e for e in mine if e["action"] == "alarm" or e["detail"].get("canary")]


def test_only_the_lead_plants_canaries(url: str) -> None:
    """A role holding every class key but not ``manage`` is still refused, and the refusal is
    logged like any other denial (op and why)."""
    toml = """[schema]
name = "two"
version = 1
classes = ["a", "b"]
purposes = ["audit"]
[roles.lead]
classes = ["a", "b"]
purposes = ["audit"]
manage = true
[roles.desk]
classes = ["a", "b"]
purposes = ["audit"]
[fields.x]
type = "text"
class = "a"
[fields.y]
type = "text"
class = "b"
"""
    lead, desk = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead, schema=toml) as v:
        v.add_user(desk.public, "dee", "desk")
    with vault.open(url, identity=desk) as v:
        before = v.count()
        with pytest.raises(vault.AccessDenied, match="security lead"):
            v.plant_canary({"x": "decoy"})
        assert v.count() == before
    with vault.open(url, identity=lead) as v:
        denied = v.audit_entries(action="denied")
    assert denied[-1]["detail"]["op"] == "plant_canary" and "security lead" in denied[-1]["detail"]["why"]


def test_benchmark_stub_skips_the_whole_entry(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/search.py compares reads against this stub: it must skip every part of the
    entry, its description (the audit pseudonym) included, or the audit's cost is understated."""
    with vault.create(url, PASSPHRASE) as v:
        rid = v.add({"legal_name": SECRET_NAME, "email": "z@example.org"})
        def no_target(record_id: str) -> str:
            raise RuntimeError("describe ran")
        monkeypatch.setattr(v._journal, "target", no_target)
        entries = A.count(v._ses.store())
        v._journal.auditor.disabled_for_benchmark = True
        assert v.get(rid)["legal_name"] == SECRET_NAME
        v._journal.auditor.disabled_for_benchmark = False
        assert A.count(v._ses.store()) == entries
        with pytest.raises(RuntimeError, match="describe ran"):  # audited: described, so refused
            v.get(rid)
        assert A.count(v._ses.store()) == entries


@pytest.mark.skipif(not PG_URL, reason="PostgreSQL tests need DVAULT_TEST_PG_URL")
def test_postgres_app_role_cannot_edit_audit(url: str) -> None:
    if not url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    vault.create(url, PASSPHRASE).close()
    role = "dvault_app_" + secrets.token_hex(4)
    admin = sa.create_engine(url)
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE ROLE {role}")
        schema = c.exec_driver_sql("SELECT current_schema()").scalar()
        c.exec_driver_sql(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    try:
        from vault.store import restrict_audit_role
        restrict_audit_role(url, role)
        with admin.connect() as c:
            c.exec_driver_sql(f"SET ROLE {role}")
            assert c.exec_driver_sql("SELECT count(*) FROM dv_audit").scalar() >= 1
            for sql in ("UPDATE dv_audit SET detail = '{}'", "DELETE FROM dv_audit"):
                with pytest.raises(sa.exc.ProgrammingError):
                    c.exec_driver_sql(sql)
                c.rollback()
                c.exec_driver_sql(f"SET ROLE {role}")
    finally:
        with admin.begin() as c:
            c.exec_driver_sql("RESET ROLE")
            c.exec_driver_sql(f"DROP OWNED BY {role}")
            c.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()


def test_init_app_role_uses_the_vault_but_cannot_edit_its_log(url: str, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """Issue 5: `dvault init --app-role` sets up the role staff clients log in as (and
    `--lead-role` the lead's)."""
    from test_cli_errors import run

    for k in [k for k in os.environ if k.startswith("DVAULT_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "lead.pass").write_text("lead pass words\n")
    (tmp_path / "recovery.pass").write_text(PASSPHRASE + "\n")
    ident = str(tmp_path / "lead.dvid")
    init = ("init", "--vault", url, "--identity", ident, "--passphrase-file", str(tmp_path / "recovery.pass"),
            "--identity-passphrase-file", str(tmp_path / "lead.pass"))
    if not url.startswith("postgresql"):
        code, _out, err = run(monkeypatch, capsys, *init, "--app-role", "dvault_app")
        assert (code, err.strip()) == (1, "dvault: error: database roles apply to PostgreSQL; SQLite has none")
        assert not os.path.exists(url.removeprefix("sqlite:///")) and not os.path.exists(ident)
        return
    role = "dvault_app_" + secrets.token_hex(4)
    for bad, message in ((role, f"no database role {role} (create it first, as the database owner)"),
                         ("App-Role", "database role names are lower-case letters, digits and _"),
                         ("postgres", "database role postgres is a superuser or owns the vault's tables, so no "
                                      "grant can stop it changing the audit log; give the application an "
                                      "ordinary role")):
        code, _out, err = run(monkeypatch, capsys, *init, "--app-role", bad)
        assert (code, err.strip()) == (1, f"dvault: error: {message}")
        assert not os.path.exists(ident)
        with pytest.raises(vault.NotFound):
            vault.open(url, PASSPHRASE)
    lead_role = "dvault_lead_" + secrets.token_hex(4)
    admin = sa.create_engine(url)
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        c.exec_driver_sql(f"CREATE ROLE {lead_role} LOGIN")
    try:
        code, _out, err = run(monkeypatch, capsys, *init, "--app-role", role, "--lead-role", lead_role)
        assert code == 0, err
        assert f"database role {role} (staff): records, index, pseudonyms, break-glass requests; the audit log " \
               "only SELECT and INSERT; keys, slots, users and the vault's state read-only" in err
        assert f"database role {lead_role} (lead): every table, but the audit log only SELECT and INSERT" in err
        as_app = sa.engine.make_url(url).set(username=role).render_as_string(hide_password=False)
        as_lead = sa.engine.make_url(url).set(username=lead_role).render_as_string(hide_password=False)
        staff = Identity.generate()
        with vault.open(as_lead, identity=Identity.load(ident, "lead pass words")) as v:
            v.add_user(staff.public, "sam", "staff")  # everything the lead's client does works as its role
            rid = v.add({"legal_name": "Amira Haddad", "badge_name": "Amira"})
            v.update(rid, {"badge_name": "A."})
            assert v.get(rid)["badge_name"] == "A." and v.find(legal_name="amira haddad")
            v.delete(rid)
            v.rotate()
            assert v.audit_verify().ok
        with vault.open(as_app, identity=staff) as v:  # ... and what a staff client does, as the app role
            rid = v.add({"legal_name": "Kofi Mensah", "badge_name": "Kofi", "email": "kofi@example.org"})
            v.update(rid, {"badge_name": "K."})
            assert v.get(rid)["badge_name"] == "K." and v.find(email="kofi@example.org")
            v.delete(rid)
            assert v.audit_verify().ok
        for who in (as_app, as_lead):
            app = sa.create_engine(who)
            try:
                with app.connect() as c:
                    assert c.exec_driver_sql("SELECT count(*) FROM dv_audit").scalar() >= 6
                    for sql in ("UPDATE dv_audit SET detail = '{}'", "DELETE FROM dv_audit", "TRUNCATE dv_audit"):
                        with pytest.raises(sa.exc.ProgrammingError):
                            c.exec_driver_sql(sql)
                        c.rollback()
            finally:
                app.dispose()
    finally:
        with admin.begin() as c:
            for r in (role, lead_role):
                c.exec_driver_sql(f"DROP OWNED BY {r}")
                c.exec_driver_sql(f"DROP ROLE {r}")
        admin.dispose()


def test_two_writers_interleave_without_forking_the_chain(url: str) -> None:
    """Each handle caches the chain head; a stale cache collides on seq and re-reads."""
    with vault.create(url, PASSPHRASE) as a:
        rid = a.add({"badge_name": "X"})
        with vault.open(url, PASSPHRASE) as b:
            for _ in range(10):
                a.get(rid)
                b.get(rid)
                b.get(rid)
                a.get(rid)
            verdict = b.audit_verify()
    assert verdict.ok, str(verdict)
    assert verdict.entries >= 43


def _reader(url: str, ids: list[str], rounds: int, seed: int) -> None:
    """A second process: audited reads and searches interleaved with writes on the same vault."""
    import os
    import random
    rng = random.Random(seed)
    try:
        with vault.open(url, PASSPHRASE) as v:
            for i in range(rounds):
                v.get(rng.choice(ids))
                if i % 4 == 0:
                    v.find(email="p1@example.org")
                if i % 7 == 0:
                    v.add({"badge_name": f"w{seed}-{i}"})
    except BaseException:  # noqa: BLE001 - the parent only sees the exit code
        import traceback
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def test_concurrent_processes_keep_one_chain(url: str) -> None:
    """Several processes reading (each read and its entry in one transaction) and writing
    at once: no read fails for lack of an entry, and the chain stays one verified line."""
    import multiprocessing
    with vault.create(url, PASSPHRASE) as v:
        ids = v.add_many([{"legal_name": f"Person {i}", "email": f"p{i}@example.org"} for i in range(10)])
    rounds, n = 30, 3
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_reader, args=(url, ids, rounds, s)) for s in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * n
    with vault.open(url, PASSPHRASE) as v:
        verdict = v.audit_verify()
        assert verdict.ok, str(verdict)
        entries = v.audit_entries()
        assert sum(e["action"] == "read" for e in entries) == n * rounds
        assert sum(e["action"] == "search" for e in entries) == n * len(range(0, rounds, 4))
        assert v.count() == 10 + n * len(range(0, rounds, 7))


def test_forked_verify_locates_the_same_damage(logged, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Large logs are checked by forked workers: they must name the same first bad entry."""
    import os
    url, lead, staff, ids = logged
    with vault.open(url, identity=lead) as v:
        for _ in range(40):
            v.get(ids[0])
    monkeypatch.setattr(A, "PARALLEL_VERIFY_MIN", 0)
    parent, calls = os.getpid(), []
    real = A._check_range

    def spy(*a, **kw):  # type: ignore[no-untyped-def]
        if os.getpid() == parent:
            calls.append(1)
        return real(*a, **kw)
    monkeypatch.setattr(A, "_check_range", spy)
    assert _verify(url, lead).ok
    assert calls == []  # every hash and signature was checked in a worker
    rows = _rows(url)
    _exec(url, "UPDATE dv_audit SET detail = :d WHERE seq = :s", d='{"fields":["x"]}', s=30)
    verdict = _verify(url, lead)
    assert not verdict.ok and verdict.first_bad == 30 and "edited" in verdict.problem
    _exec(url, "UPDATE dv_audit SET detail = :d WHERE seq = :s", d=rows[29][6], s=30)
    sig = bytearray(bytes(rows[19][9]))
    sig[5] ^= 1
    _exec(url, "UPDATE dv_audit SET sig = :g WHERE seq = :s", g=bytes(sig), s=20)
    verdict = _verify(url, lead)
    assert not verdict.ok and verdict.first_bad == 20 and "signature" in verdict.problem


def test_update_and_shred_targets(url: str) -> None:
    """The entry names the record's audit pseudonym; an unknown id is logged with no target
    (then NotFound), and a malformed id is refused before anything is logged."""
    with vault.create(url, PASSPHRASE) as v:
        rid = v.add({"legal_name": SECRET_NAME})
        target = v._journal.target(rid)
        v.update(rid, {"dietary": "vegan"})
        v.delete(rid)
        for call in (lambda: v.update(rid, {"dietary": "none"}), lambda: v.delete("ab" * 16)):
            with pytest.raises(vault.NotFound):
                call()
        before = A.count(v._ses.store())
        for call in (lambda: v.update("not-an-id", {"dietary": "x"}), lambda: v.delete("zz" * 16)):
            with pytest.raises(vault.ValidationError):
                call()
        assert A.count(v._ses.store()) == before
        got = [(e.action, e.target) for e in A.read_entries(v._ses.store()) if e.action in ("update", "shred")]
    assert got[:2] == [("update", target), ("shred", target)] and target.startswith("AU-")
    assert got[2][0] == "update" and got[3] == ("shred", "")


def test_entries_about_a_record_by_any_of_its_pseudonyms(url: str) -> None:
    """Issue 5 item 4: the lead filters by record through any pseudonym (or a lookup that
    yields one); an audit pseudonym still finds a shredded record's entries."""
    with vault.create(url, PASSPHRASE) as v:
        rid, other = v.add({"legal_name": SECRET_NAME}), v.add({"legal_name": "Someone Else"})
        v.get(rid)
        v.get(other)
        v.update(rid, {"dietary": "vegan"})
        au, badge = v.pseudonym(rid, "audit"), v.pseudonym(rid, "badge")
        found = v.find(legal_name=SECRET_NAME)[0].id  # looking the record up first
        travel = v.pseudonym(found, "travel")
        by_audit = v.audit_entries(target=au)
        # the search that returned the record names it too (detail.targets; since 2026-11-27)
        assert [e["action"] for e in by_audit] == ["read", "update", "pseudonym", "pseudonym", "search", "pseudonym"]
        assert {e["target"] for e in by_audit if e["action"] != "search"} == {au}
        search = next(e for e in by_audit if e["action"] == "search")
        assert search["target"] == "" and search["detail"]["targets"] == [au]
        assert "legal_name" in search["detail"]["returned"]
        for spelled in (badge, badge.lower(), au.lower().replace("-", " "), travel):
            assert v.audit_entries(target=spelled) == by_audit
        v.delete(rid)
        assert [e["action"] for e in v.audit_entries(target=au)][-1] == "shred"
        with pytest.raises(vault.NotFound):
            v.audit_entries(target=badge)  # its badge pseudonym went with it
        before = A.count(v._ses.store())
        mistyped = badge[:-1] + ("A" if badge[-1] != "A" else "B")
        with pytest.raises(vault.VaultError, match="check"):
            v.audit_entries(target=mistyped)
        assert A.count(v._ses.store()) == before  # refused before anything was logged


def test_forged_unsigned_entry_cannot_blame_a_colleague(logged) -> None:  # type: ignore[no-untyped-def]
    """A database writer chains an unsigned "unlock_failed" in a colleague's name that names
    fields and a record: verify locates it, and neither the summary nor the record filter
    books it as a read. A failed unlock of the real shape still verifies."""
    url, lead, staff, ids = logged
    with pytest.raises(vault.AccessDenied):
        vault.open(url, identity=Identity.generate())  # a real unsigned entry: not enrolled
    with pytest.raises(vault.WrongPassphrase):
        vault.open(url, "not the passphrase at all")
    with vault.open(url, identity=lead) as v:
        target = v.pseudonym(ids[0], "audit")
        classes = {n: f.cls for n, f in v.schema.fields.items()}
    assert _verify(url, lead).ok
    last = _rows(url)[-1]
    seq, prev = last[0] + 1, bytes(last[8])
    detail = '{"fields":["legal_name","passport_number","risk_notes"]}'
    h = A.entry_hash(seq, prev, 1, staff.public.raw, "unlock_failed", target, detail, b"")
    _exec(url, "INSERT INTO dv_audit VALUES (:s,:p,1,:a,'unlock_failed',:t,:d,:r,:h,:g)", s=seq, p=prev,
          a=staff.public.raw, t=target, d=detail, r=b"", h=h, g=bytes(64))
    verdict = _verify(url, lead)
    assert not verdict.ok and verdict.first_bad == seq and "unsigned" in verdict.problem, str(verdict)
    with vault.open(url, identity=lead) as v:
        entries = v.audit_entries()
        assert "unlock_failed" not in [e["action"] for e in v.audit_entries(target=target)]
    assert entries[seq - 1]["action"] == "unlock_failed"  # shown as it is, but counted as nothing
    assert A.summary(entries, classes)[staff.public.user_id].get("identity", 0) == 0
    for shape in ({"target": "AU-X"}, {"detail": '{"with":"passphrase"}'}, {"reason": b"x"}):
        e = A.Entry(1, A.GENESIS, 1, staff.public.raw, "unlock_failed", "", '{"with":"identity"}', b"", b"",
                    bytes(64))
        assert A.unsigned_shape_ok(e) and not A.unsigned_shape_ok(e._replace(**shape))
    zero = A.Entry(1, A.GENESIS, 1, bytes(64), "unlock_failed", "", '{"with":"passphrase"}', b"", b"", bytes(64))
    assert A.unsigned_shape_ok(zero) and not A.unsigned_shape_ok(zero._replace(detail='{"with":"identity"}'))


def test_staff_cannot_count_alarms(logged, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """alarms() is the lead's (a refusal is logged), and the entries another role sees carry no
    seq: its gaps would mark each hidden alarm, so a decoy would show after one read."""
    from vault_cli.main import _audit_table
    url, lead, staff, ids = logged
    with vault.open(url, identity=lead) as v:
        canary = v.plant_canary({"legal_name": "Decoy Person", "badge_name": "D"})
    with vault.open(url, identity=staff) as v:
        v.get(canary)
        with pytest.raises(vault.AccessDenied, match="security lead"):
            v.alarms()
        mine = v.audit_entries()
    assert mine and not [e for e in mine if "seq" in e]
    _audit_table(mine)
    assert "seq" not in capsys.readouterr().out.splitlines()[0]
    with vault.open(url, identity=lead) as v:
        denied = v.audit_entries(action="denied")
        assert [a["detail"]["op"] for a in v.alarms()] == ["read"]
        everything = v.audit_entries()
    assert denied[-1]["detail"]["op"] == "alarms" and denied[-1]["actor"] == staff.public.user_id
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    _audit_table(everything)
    assert capsys.readouterr().out.splitlines()[0].split()[0] == "seq"


def test_every_touch_of_a_canary_alarms(logged) -> None:  # type: ignore[no-untyped-def]
    """Issuing a pseudonym for a decoy, updating it, break-glass on it (request, approval,
    reveal) and shredding it each raise an alarm naming it; the same calls on a real record
    raise none. Staff clients cannot tell a canary (vault.canaries): the lead finds their
    touches in the log. The lead's own touches (the approval) write nothing: an alarm entry
    naming the decoy, readable by staff, would tell them which record it is."""
    url, lead, staff, ids = logged
    with vault.open(url, identity=lead) as v:
        canary = v.plant_canary({"legal_name": "Decoy Person", "email": "decoy@example.org", "badge_name": "D"})
        target = v._journal.target(canary)
    with vault.open(url, identity=staff) as v:
        v.pseudonym(ids[1], "travel")
        v.update(ids[1], {"dietary": "halal"})
        v.pseudonym(canary, "travel")
        v.update(canary, {"dietary": "halal"})
        req = v.request_reveal(canary, "legal_name", "hospital visit, needs the legal name")
        with vault.open(url, identity=lead) as lv:
            lv.approve_reveal(req, record=target, field="legal_name")
        assert v.reveal(req) == "Decoy Person"
        v.delete(canary)
    with vault.open(url, identity=lead) as v:
        alarms = v.alarms()
        written = v.audit_entries(action="alarm")
        actions = [e["action"] for e in v.audit_entries(target=target)]
    assert [a["detail"]["op"] for a in alarms] == ["pseudonym", "update", "reveal_request", "reveal", "shred"]
    assert [a["actor"] for a in alarms] == [staff.public.user_id] * 5
    assert {a["target"] for a in alarms} == {target}
    assert written == [] and "alarm" not in actions


def test_every_refusal_is_logged_once(logged) -> None:  # type: ignore[no-untyped-def]
    """Refusals raised past the up-front checks are logged as 'denied' too, each once: a
    record filter through a pseudonym whose purpose the role lacks, a staff member changing
    the recovery passphrase (before any change_passphrase entry), a break-glass request
    by the recovery passphrase, and a write by a handle whose slot was revoked meanwhile."""
    url, lead, staff, ids = logged
    tool = Identity.generate()
    with vault.open(url, identity=lead) as v:
        v.add_user(tool.public, "badge-printer", "tool")
        travel = v.pseudonym(ids[0], "travel")
    attempts = [(tool, "audit_read", lambda v: v.audit_entries(target=travel)),
                (staff, "change_passphrase", lambda v: v.change_passphrase("another long passphrase here")),
                (None, "reveal_request", lambda v: v.request_reveal(ids[0], "legal_name", "hospital visit"))]
    for who, op, call in attempts:
        with (vault.open(url, identity=who) if who else vault.open(url, PASSPHRASE)) as v:
            n = A.count(v._ses.store())
            with pytest.raises(vault.AccessDenied):
                call(v)
            added = A.read_entries(v._ses.store(), after=n)
        assert [(e.action, json.loads(e.detail)["op"]) for e in added] == [("denied", op)], op
    with vault.open(url, identity=staff) as v:
        with vault.open(url, identity=lead) as lv:
            lv.remove_user(staff.public.user_id, rotate=False)
        n = A.count(v._ses.store())
        with pytest.raises(vault.AccessDenied, match="slot is gone"):
            v.update(ids[1], {"dietary": "halal"})
        added = A.read_entries(v._ses.store(), after=n)
    assert [(e.action, json.loads(e.detail)["op"]) for e in added] == [("denied", "update")]
    assert _verify(url, lead).ok


def test_require_writable_refuses_up_front(url: str) -> None:
    """What the CLI asks before its questions or its import report: a role that may not
    write every class is refused (logged as 'denied'), one that may passes, nothing written."""
    lead, tool = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(tool.public, "badge-printer", "tool")
        v.require_writable("import")
    with vault.open(url, identity=tool) as v:
        for op in ("add", "import"):
            with pytest.raises(vault.AccessDenied, match="cannot write"):
                v.require_writable(op)
        with pytest.raises(vault.ValidationError):
            v.require_writable("shred")
    with vault.open(url, identity=lead) as v:
        assert [e["detail"]["op"] for e in v.audit_entries(action="denied")] == ["add", "import"]
        assert v.count() == 0


def _canary_list(url: str) -> bytes:
    raw = RawDB(url)
    try:
        return raw.meta("canaries")
    finally:
        raw.close()


def test_the_canary_list_does_not_count_the_canaries(url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The sealed list is padded to one size and written at creation: its length is the
    same with no canary, one, or a hundred (docs/threat-model.md 10)."""
    lead = Identity.generate()
    sizes = []
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        sizes.append(len(_canary_list(url)))  # a vault without canaries has the row too
        v.add({"badge_name": "real"})
        sizes.append(len(_canary_list(url)))
        v.plant_canary({"badge_name": "decoy 0"})
        sizes.append(len(_canary_list(url)))
        for i in range(1, 100):
            v.plant_canary({"badge_name": f"decoy {i}"})
        sizes.append(len(_canary_list(url)))
        assert len(v._canaries.live()) == 100
    assert len(set(sizes)) == 1, sizes


def test_a_canary_and_its_list_commit_together(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoy row and its tag are one transaction: a failure of the list leaves no decoy
    behind, and on PostgreSQL the list's row carries the decoy's xmin, not a later one."""
    with vault.create(url, PASSPHRASE, lead=Identity.generate()) as v:
        v.add({"badge_name": "real"})

        def fail(self: vault.Vault, tags: list[str]) -> None:
            raise OSError("disk full")

        with monkeypatch.context() as m:
            m.setattr("vault.canaries.Canaries._store_list", fail)
            with pytest.raises(OSError):
                v.plant_canary({"badge_name": "decoy"})
        assert v.count() == 1
        decoy = v.plant_canary({"badge_name": "decoy"})
        assert v._canaries.live() == {decoy}
    if url.startswith("postgresql"):
        engine = sa.create_engine(url)
        with engine.connect() as c:
            meta = c.execute(sa.text("SELECT xmin::text FROM dv_meta WHERE name = 'canaries'")).scalar()
            row = c.execute(sa.text("SELECT xmin::text FROM dv_records WHERE id = :i"),
                            {"i": bytes.fromhex(decoy)}).scalar()
        engine.dispose()
        assert meta == row


def test_every_lead_add_reseals_the_canary_list(logged) -> None:  # type: ignore[no-untyped-def]
    """A database watcher sees the list's row (and the key statement naming it) change with
    every add by the lead (or a recovery opener), so a canary's add looks like any other of
    theirs; the canaries stay as they were. A staff add leaves the list alone: a staff
    database login may not write dv_meta (vault.postgres), and a staff keyring cannot open
    the list (nor sign the statement): a staff handle knows no canary."""
    url, lead, staff, ids = logged
    with vault.open(url, identity=lead) as v:
        decoy = v.plant_canary({"badge_name": "decoy"})
        before = _canary_list(url)
        v.add({"badge_name": "walk-in"})
        after = _canary_list(url)
        assert after != before and len(after) == len(before)
        v.add_many([{"badge_name": "a"}, {"badge_name": "b"}])
        assert _canary_list(url) not in (before, after)
    latest = _canary_list(url)
    with vault.open(url, identity=staff) as v:
        v.add({"badge_name": "staff walk-in"})
        assert _canary_list(url) == latest and v._canaries.live() == set()
    with vault.open(url, identity=lead) as v:
        assert v._canaries.live() == {decoy}


@pytest.mark.parametrize("padded", [True, False])
def test_an_older_canary_list_is_still_read(url: str, padded: bool) -> None:
    """Lists of database schema v7 (sealed under the meta key; unpadded JSON before
    2026-11-27) are converted by the lead's upgrade to v8, canaries kept, and sealed for the
    lead alone from then on."""
    from vault import _format as F
    from rawdb import as_release_v7
    with vault.create(url, PASSPHRASE, lead=Identity.generate()) as v:
        decoy = v._records.add_many([{"badge_name": "decoy"}])[0]
        v.add({"badge_name": "real"})
        as_release_v7(v, [decoy], padded=padded)
    with vault.open(url, PASSPHRASE) as v:
        assert v._canaries.live() == {decoy}
        v.add({"badge_name": "real too"})
    assert len(_canary_list(url)) == 2 + F.NONCE_LEN + F.CANARY_LIST_BLOCK + F.TAG_LEN
    assert RawDB(url).meta("db_schema_version") == str(F.DB_SCHEMA_VERSION).encode()
    with vault.open(url, PASSPHRASE) as v:
        assert v._canaries.live() == {decoy}


def test_an_entry_rolled_back_with_its_transaction_leaves_the_chain_whole(url: str) -> None:
    """An add's entry is written in the add's transaction, which can still fail after it (here:
    a damaged canary list when the add re-seals it). The appender cached the rolled-back
    entry as the head, and on SQLite the next entry skipped a number: the log stayed
    broken for good."""
    with vault.create(url, PASSPHRASE) as v:
        v.add({"badge_name": "A"})
        raw = RawDB(url)
        blob = bytearray(raw.meta("canaries"))
        blob[-1] ^= 1
        raw.set_meta("canaries", bytes(blob))
        v._canaries.cache = None  # as a handle opened after the damage
        with pytest.raises(vault.IntegrityError, match="canary list"):
            v.add({"badge_name": "B"})
        raw.set_meta("canaries", bytes(blob[:-1]) + bytes([blob[-1] ^ 1]))  # repaired
        raw.close()
        v._canaries.cache = None
        v.add({"badge_name": "C"})
        assert v.audit_verify().ok
