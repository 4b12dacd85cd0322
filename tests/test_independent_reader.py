"""A second implementation reads vaults this library wrote (docs/format.md is enough).

tests/vectors/reader.py was written from format.md alone and imports nothing from
``vault``. Here the library builds vaults that exercise most of the format (lead and
staff, write-only envelopes, updates, shreds, both kinds of rotation, canaries, failed
unlocks, reasons, typed fields and every normaliser), and the reader must unlock them,
verify every MAC, signature and the audit chain, decrypt every record to what the
library returns, and find every blind-index term. SQLite only: the reader reads files.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pytest

import vault
from conftest import FAST_KDF, PASSPHRASE
from vault.identity import Identity

sys.path.insert(0, str(Path(__file__).resolve().parent / "vectors"))
import reader  # noqa: E402  (tests/vectors/reader.py)

FLOOR = (FAST_KDF.t, FAST_KDF.m_kib, FAST_KDF.p)
ID_PW = "identity passphrase for the reader test"


def _plain(x: Any) -> Any:
    return x.isoformat() if isinstance(x, dt.date) else x


def _expected(v: vault.Vault, ids: list[str], shredded: str) -> dict:
    return {"records": {r: {k: _plain(x) for k, x in dict(v.get(r)).items()} for r in ids},
            "badge": {r: v.pseudonym(r, "badge") for r in ids}, "shredded": shredded}


def _assert_all_ok(steps: list[tuple[str, bool, str]]) -> None:
    bad = [f"{name} {info}" for name, ok, info in steps if not ok]
    assert not bad, bad
    names = {name for name, _, _ in steps}
    assert {"unlock", "records decrypted", "audit chain + signatures", "blind index terms present"} <= names


def test_reader_opens_a_team_vault(tmp_path: Path) -> None:
    lead, staff = Identity.generate(), Identity.generate()
    lead.save(tmp_path / "lead.dvid", ID_PW)
    staff.save(tmp_path / "staff.dvid", ID_PW)
    path = tmp_path / "team.vault"
    with vault.create(path, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        ids = v.add_many([{"legal_name": f"Amira Haddad {i}", "email": f"A{i}@Example.org",
                           "phone": f"+44 (0)20 7946 {i:04d}", "badge_name": f"Amira{i}",
                           "passport_number": f"p-83.52 {i}", "nationality": "Testland"} for i in range(12)])
        v.update(ids[0], {"email": "new@example.org", "phone": None})
        v.delete(ids[1])
        v.rotate()
        v.set_reason("Checking Amira's visa letter")
        v.get(ids[2])
        v.find(email="a3@example.org")
    with pytest.raises(vault.WrongPassphrase):
        vault.open(path, "not the passphrase")
    with vault.open(path, identity=staff) as v:  # write-only identity class: a kind W envelope
        ids.append(v.add({"legal_name": "Kofi Mensah", "badge_name": "Kofi", "email": "kofi@example.org"}))
    with vault.open(path, identity=lead) as v:
        ids.append(v.plant_canary({"legal_name": "Decoy Person", "badge_name": "D"}))
        live = [r for r in ids if r != ids[1]]
        expected = _expected(v, live, ids[1])
    lead_steps = reader.check(str(path), identity=str(tmp_path / "lead.dvid"), identity_passphrase=ID_PW,
                              expected=expected, floor=FLOOR)
    _assert_all_ok(lead_steps)
    assert "'W': 2" in dict((n, i) for n, _, i in lead_steps)["records decrypted"]  # staff's sealed envelopes
    _assert_all_ok(reader.check(str(path), passphrase=PASSPHRASE, expected=expected, floor=FLOOR))
    staff_steps = reader.check(str(path), identity=str(tmp_path / "staff.dvid"), identity_passphrase=ID_PW,
                               floor=FLOOR)
    _assert_all_ok(staff_steps)
    assert "identity" in dict((n, i) for n, _, i in staff_steps)["records decrypted"]  # what staff cannot read


def test_reader_opens_a_vault_with_recovery_shares(tmp_path: Path) -> None:
    """§8g: the reader rebuilds the master secret from k shares (SLIP-39's reference
    implementation), opens the shares' kind P slot with the derived text, and checks the
    description's signature and the slot digest it names; a forged description fails."""
    lead = Identity.generate()
    lead.save(tmp_path / "lead.dvid", ID_PW)
    path = tmp_path / "shares.vault"
    with vault.create(path, PASSPHRASE, lead=lead) as v:
        ids = v.add_many([{"legal_name": f"Amira Haddad {i}", "email": f"a{i}@example.org"} for i in range(5)])
        v.split_recovery(2, 3)
        shares = v.split_recovery(3, 5)  # a re-split: the description remembers the first set id
        v.rotate()
        v.delete(ids[0])
        expected = _expected(v, ids[1:], ids[0])
    steps = reader.check(str(path), shares=shares[1:4], expected=expected, floor=FLOOR)
    _assert_all_ok(steps)
    names = {name for name, _, _ in steps}
    assert {"meta:recovery_shares_sig", "meta:recovery_shares_slot", "meta:keys_stmt_exact"} <= names
    assert "(shares;" in dict((n, i) for n, _, i in steps)["unlock"]
    _assert_all_ok(reader.check(str(path), passphrase=PASSPHRASE, expected=expected, floor=FLOOR))
    _assert_all_ok(reader.check(str(path), identity=str(tmp_path / "lead.dvid"), identity_passphrase=ID_PW,
                                expected=expected, floor=FLOOR))
    import sqlite3
    db = sqlite3.connect(path)
    blob = bytearray(db.execute("select value from dv_meta where name = 'recovery_shares'").fetchone()[0])
    blob[12] = 4  # k = 4 (of 5): well framed, not what the lead signed
    db.execute("update dv_meta set value = ? where name = 'recovery_shares'", (bytes(blob),))
    db.commit()
    db.close()
    bad = dict((n, ok) for n, ok, _ in reader.check(str(path), passphrase=PASSPHRASE, floor=FLOOR))
    assert bad["meta:recovery_shares_sig"] is False and bad["meta:recovery_shares_slot"] is True

TYPED = """[schema]
name = "typed"
version = 1
classes = ["alpha", "beta"]
purposes = ["badge", "audit"]
expected_population = 40
k_anonymity = 1
[fields.name]
type = "text"
class = "alpha"
search = "exact"
normalize = "name"
tokens = true
[fields.n]
type = "integer"
class = "alpha"
search = "exact"
[fields.flag]
type = "bool"
class = "beta"
search = "exact"
allow_low_cardinality = true
[fields.d]
type = "date"
class = "beta"
search = "exact"
allow_low_cardinality = true
[fields.e]
type = "enum"
class = "beta"
values = ["x", "y"]
[fields.phone]
type = "text"
class = "beta"
search = "exact"
normalize = "phone"
[fields.pid]
type = "text"
class = "alpha"
search = "exact"
normalize = "compact"
[fields.mail]
type = "text"
class = "beta"
search = "exact"
normalize = "email"
[fields.t]
type = "text"
class = "beta"
search = "exact"
multiline = true
[fields.raw]
type = "text"
class = "beta"
search = "exact"
normalize = "none"
"""

NAMES = ["Łukasz Żółć", "Øyvind Ærø", "Straße Groß", "Ångström Ñúñez", "Αλέξης Τσίπρας", "Йосиф Ёлкин",
         "Anne\u2010Marie O\u2019Brien", "Ｆｕｌｌｗｉｄｔｈ  Name", "Đorđe Þór", "ﬁligree İstanbul", "Mary-Jane  Watson"]
PHONES = ["+44 (0)20 7946 0000", "0044 20 7946 0001", "020 7946 0002", "(555) 010-0101", "+49 (0) 30 1234"]


def test_reader_opens_a_typed_vault_with_every_normaliser(tmp_path: Path) -> None:
    path = tmp_path / "typed.vault"
    with vault.create(path, PASSPHRASE, schema=TYPED, population=2**40, k=1) as v:  # 32-bit index values
        ids = [v.add({"name": n, "n": (-1) ** i * i * 1234567891, "flag": i % 2 == 1,
                      "d": dt.date(1950 + i, 1 + i % 9, 10 + i), "e": "xy"[i % 2], "phone": PHONES[i % 5],
                      "pid": ["p-123.456 78", "ab 12-34", "ｘ１２"][i % 3],
                      "mail": [" Foo.Bar@Example.ORG ", "ÄÖ@Ex.org"][i % 2],
                      "t": ["  Hello   World ", "ÉCOLE\tÉté", "Ǆ ﬁ"][i % 3], "raw": "Raw Value "})
               for i, n in enumerate(NAMES)]
        v.update(ids[0], {"n": 0, "t": "changed"})
        v.delete(ids[1])
        v.rotate(reencrypt=True)
        v.update(ids[2], {"flag": True})
        v.rotate(["beta"])
        ids.append(v.add({"name": "after the rotations", "n": 2**63 - 1}))
        ids.append(v.add({"n": -(2**63)}))
        ids.append(v.plant_canary({"name": "Canary Bird"}))
        live = [r for r in ids if r != ids[1]]
        expected = _expected(v, live, ids[1])
    _assert_all_ok(reader.check(str(path), passphrase=PASSPHRASE, expected=expected, floor=FLOOR))


def test_reader_opens_rows_of_every_record_format(tmp_path: Path) -> None:
    """Format-1 rows (the writer of two releases ago) beside format-2 rows (§6b, the previous
    release) and format-3 rows (§6c, this one), in each of the later two some derived DEKs
    that a rotation then wrapped (kind D) and an emptied class."""
    import sqlite3
    path = tmp_path / "mixed.vault"
    rows = [{"legal_name": f"Amira Haddad {i}", "email": f"a{i}@example.org", "badge_name": f"A{i}",
             "passport_number": f"P{i:08d}", "risk_level": "low"} for i in range(8)]
    with vault.create(path, PASSPHRASE) as v:
        v._access.codec.legacy = True
        ids = v.add_many(rows[:2])
        v._access.codec.legacy = False
        v._access.codec.newest = 2
        ids += v.add_many(rows[2:4])
        v.rotate(["identity"])  # format 2: identity's derived DEKs wrapped (kind D)
        ids += v.add_many(rows[4:5])
        v._access.codec.newest = 3
        ids += v.add_many(rows[5:7])
        v.rotate(["identity"])  # and format 3's
        ids += v.add_many(rows[7:])
        v.update(ids[4], {"risk_level": None})  # envelopes without cells: format 2's check tag,
        v.update(ids[7], {"risk_level": None})  # format 3's tag over nothing
        expected = _expected(v, ids, "0" * 32)
    db = sqlite3.connect(path)
    heads = {bytes(r[0][:2]) for r in db.execute("SELECT data FROM dv_records")}
    db.close()
    assert heads >= {b"\x00\x02", b"\x00\x03"} and any(h[0] != 0 for h in heads)
    steps = reader.check(str(path), passphrase=PASSPHRASE, expected=expected, floor=FLOOR)
    _assert_all_ok(steps)
    info = dict((n, i) for n, _, i in steps)["records decrypted"]
    assert "'H'" in info and "'D'" in info


def test_the_reader_can_fail(tmp_path: Path) -> None:
    """A reader that said yes to everything would prove nothing: a swapped cell is refused."""
    import sqlite3
    path = tmp_path / "t.vault"
    with vault.create(path, PASSPHRASE) as v:
        a = v.add({"legal_name": "A Person"})
        expected = _expected(v, [a], "0" * 32)
    db = sqlite3.connect(path)
    data = bytearray(db.execute("SELECT data FROM dv_records").fetchone()[0])
    data[-20] ^= 1  # inside the last field ciphertext
    db.execute("UPDATE dv_records SET data = ?", (bytes(data),))
    db.commit()
    db.close()
    steps = reader.check(str(path), passphrase=PASSPHRASE, expected=expected, floor=FLOOR)
    assert [n for n, ok, _ in steps if not ok][:1] == [f"record {a}"]


def test_reader_replays_the_upgrade_to_the_second_kind_of_record_states(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A vault of database schema v8 (its entries name record states of the first kind, §13a),
    opened by the lead: the upgrade to v9 writes one ``restate`` pairing each row's first-kind
    token with its second-kind one, and later entries name the second kind (an update with
    its rows' parts, ``was`` and ``now``). The reader computes the rows' tokens of the second
    kind and replays both kinds and the pairs: a record shredded before the upgrade and put
    back under it stays rolled back (its new token counts as dropped), and an update whose
    parts do not give its tokens is reported."""
    import json
    import sqlite3

    from rawdb import RawDB
    from vault import _format as F
    from vault import keys as K
    lead, staff = Identity.generate(), Identity.generate()
    lead.save(tmp_path / "lead.dvid", ID_PW)
    staff.save(tmp_path / "staff.dvid", ID_PW)
    path = tmp_path / "v8.vault"
    rows = [{"legal_name": f"Amira Haddad {i}", "email": f"a{i}@example.org", "badge_name": f"A{i}",
             "phone": f"+44 20 7946 {i:04d}"} for i in range(6)]
    with monkeypatch.context() as m:  # what v8 wrote: states of the first kind
        m.setattr(F, "RECORD_STATES_V2_FROM", 10 ** 6)
        with vault.create(path, PASSPHRASE, lead=lead) as v:
            v.add_user(staff.public, "sam", "staff")
            ids = v.add_many(rows)
            v.update(ids[0], {"email": "new@example.org"})
            v.rotate(reencrypt=True)
            raw = RawDB(v._ses.store().url)
            old_row = raw.row(ids[1])
            v.delete(ids[1])
            lines = raw.meta("keys_stmt").decode("ascii").split("\n")
            assert lines[2] == "db 9"
            text = "\n".join(lines[:2] + ["db 8"] + lines[3:])
            who, sign = v._access.plan_signer()
            raw.set_meta("keys_stmt", text.encode("ascii"))
            raw.set_meta("keys_stmt_sig", K.sign_text("keys", v._ses.vid, text, who, sign))
            raw.set_meta("db_schema_version", b"8")
    with raw.engine.begin() as c:  # the shredded record put back from a backup, before the upgrade
        c.exec_driver_sql("INSERT INTO dv_records (id, data) VALUES (?, ?)", (bytes.fromhex(ids[1]), old_row))
    raw.close()
    with vault.open(path, identity=staff) as v:  # a write of the first kind at v8: staff do not upgrade to 9
        ids.append(v.add({"legal_name": "Kofi Mensah", "badge_name": "Kofi"}))
    with vault.open(path, identity=lead) as v:  # the upgrade, then entries of the second kind
        assert [e["detail"].get("upgrade") for e in v.audit_entries(action="restate")] == [9]
        assert v.check_records().rolled_back == (ids[1],)
        v.update(ids[2], {"phone": None})
        ids.append(v.add({"legal_name": "Added after the upgrade", "badge_name": "N"}))
        v.delete(ids[3])
        v.rotate(["identity"])
    with vault.open(path, identity=staff) as v:
        v.update(ids[4], {"badge_name": "changed by staff"})
    db = sqlite3.connect(path)
    details = [json.loads(d) for (d,) in db.execute("SELECT detail FROM dv_audit ORDER BY seq") if d]
    db.close()
    upgrade = [d for d in details if d.get("upgrade") == 9][0]["state"]
    assert len(upgrade["drop"]) == len(upgrade["put"]) == 7 and upgrade["drop"] == sorted(upgrade["drop"])
    assert sum("was" in d.get("state", {}) for d in details) == 2  # the two updates after it
    kinds = {len(t) for d in details for t in d.get("state", {}).get("put", [])}
    assert kinds == {24, 48}

    def run(**opener: Any) -> list[tuple[str, bool, str]]:
        return reader.check(str(path), floor=FLOOR, **opener)
    openers = [{"passphrase": PASSPHRASE},
               {"identity": str(tmp_path / "lead.dvid"), "identity_passphrase": ID_PW},
               {"identity": str(tmp_path / "staff.dvid"), "identity_passphrase": ID_PW}]
    for opener in openers:  # the put-back row is reported; (no entry names most rows yet: _expected reads them)
        steps = run(**opener)
        assert [n for n, ok, _ in steps if not ok] == ["record states: every row's token live",
                                                       "audit targets are audit pseudonyms of live records"], steps
        assert "second kind since seq" in dict((n, i) for n, _, i in steps)[
            "record states: of the kind the log takes there; updates' parts give their tokens"]
    rd = reader.Reader(str(path), FLOOR)
    rd.unlock_passphrase(PASSPHRASE)
    rd.load_schema()
    rd.verify_audit()
    rid = bytes.fromhex(ids[1])
    db = sqlite3.connect(path)
    put_back = bytes(db.execute("SELECT data FROM dv_records WHERE id = ?", (rid,)).fetchone()[0])
    db.close()
    assert rd.row_token(rid, put_back, b"") in rd.audit_dropped  # its pair: dropped, not live
    with sqlite3.connect(path) as db:  # the put-back row removed again: the vault is as the log says
        db.execute("DELETE FROM dv_records WHERE id = ?", (rid,))
    db.close()
    with vault.open(path, identity=lead) as v:
        assert v.check_records().ok
        expected = _expected(v, [r for r in ids if r not in (ids[1], ids[3])], ids[3])
    for opener in openers[:2]:
        _assert_all_ok(run(expected=expected, **opener))
    _assert_all_ok(run(**openers[2]))
    # an update's parts that do not give the tokens it names: reported, not replayed
    with sqlite3.connect(path) as db:
        seq, detail = [(s, json.loads(d)) for s, d in db.execute("SELECT seq, detail FROM dv_audit ORDER BY seq")
                       if d and "was" in json.loads(d).get("state", {})][-1]
    db.close()
    rd = reader.Reader(str(path), FLOOR)
    rd.unlock_passphrase(PASSPHRASE)
    rd.load_schema()
    st = detail["state"]
    forged = [(seq, b"", "update", detail, {**st, "now": st["was"]})]
    live, _, problems, _ = rd.replay_states(forged)
    assert problems == [(seq, "update: its parts do not give the states it names")] and not live
    added = (seq - 1, b"", "add", {}, {"put": st["drop"]})  # (an update names a record added before)
    assert rd.replay_states([(seq, b"", "update", detail, st)])[2] == [
        (seq, "names a record never added, or one shredded")]
    assert rd.replay_states([added, (seq, b"", "update", detail, st)])[2] == []
    first_kind = {"drop": ["0" * 24], "put": ["1" * 24]}
    assert rd.replay_states([(seq, b"", "update", detail, first_kind)])[2] == [
        (seq, "states not of the second kind")]


def test_reader_gives_the_record_state_v2_vector() -> None:
    """The reader's second kind of record states (§13a) on record_state_v2.json: each case's
    parts and token, and the first kind's token of record_state_v1.json's row, from the same
    meta key."""
    import json
    here = Path(__file__).resolve().parent / "vectors"
    vec = json.loads((here / "record_state_v2.json").read_text())
    v1 = json.loads((here / "record_state_v1.json").read_text())
    h = bytes.fromhex
    r = reader.Reader.__new__(reader.Reader)
    r.vault_id = h(vec["vault_id"])
    r.kr = reader.Keyring([dict(kind=2, name="meta", version=1, kid=bytes(8), key=h(vec["meta_key"]))])
    r.classes = vec["classes"]
    rid = h(vec["record_id"])
    for case in vec["cases"]:
        parts = r.state_parts(rid, h(case["row"]))
        assert list(parts) == r.classes and {c: p.hex() for c, p in parts.items()} == case["parts"]
        assert r.token_of_parts(rid, list(parts.values())) == case["token"] == r.record_tag(rid) + str(
            r.mac_of_named(case["parts"]))
        assert r.record_tag(rid) == vec["record_tag"]
        r.meta = {"db_schema_version": b"9"}
        assert r.row_token(rid, h(case["row"]), b"") == case["token"]
        with pytest.raises(reader.FormatError):
            r.state_parts(rid, h(case["row"])[:-1])
    assert v1["row"] == vec["cases"][0]["row"] and v1["meta_key"] == vec["meta_key"]
    r.meta = {"db_schema_version": b"8"}
    assert r.row_token(rid, h(v1["row"]), h(v1["dek_ids"])) == v1["token"]
