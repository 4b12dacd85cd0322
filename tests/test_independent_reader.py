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
