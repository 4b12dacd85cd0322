"""Retention and purge: the schema's rule, signed per-record overrides checked against the
audit log, and a purge that leaves nothing of an expired record readable (SQLite and
PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from vault.identity import Identity
from vault.schema import default_schema_text
from vault.store import split_ids

import vault
from conftest import PASSPHRASE
from vault import _format as F

TODAY = dt.date(2027, 1, 10)
RULE = '\n[retention]\nafter = "departure"\nevent_end = 2026-06-30\ndays = 30\n'
NO_RULE = default_schema_text().replace('[retention]\nafter = "departure"\ndays = 90\n', "")


def _schema(rule: str = RULE) -> str:
    return NO_RULE + rule


def _people(v: vault.Vault) -> dict[str, str]:
    """old: departed long ago; undated: no departure (the event's end counts); recent: left
    last week; kept: departed long ago but agreed to stay on record (an override)."""
    return {
        "old": v.add({"legal_name": "Olga Expired", "email": "olga@example.org", "departure": dt.date(2026, 7, 1),
                      "hotel": "Shared Hotel", "passport_number": "P-OLGA-1"}),
        "undated": v.add({"legal_name": "Umar Undated", "email": "umar@example.org", "hotel": "Shared Hotel"}),
        "recent": v.add({"legal_name": "Rita Recent", "email": "rita@example.org", "departure": dt.date(2027, 1, 3),
                         "hotel": "Shared Hotel"}),
        "kept": v.add({"legal_name": "Karim Kept", "email": "karim@example.org", "departure": dt.date(2026, 7, 1),
                       "hotel": "Shared Hotel"}),
    }


@pytest.fixture
def rv(url: str) -> Iterator[vault.Vault]:
    with vault.create(url, PASSPHRASE, schema=_schema()) as opened:
        yield opened


def _rows(url: str, sql: str, **params: object) -> list[tuple]:  # type: ignore[type-arg]
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            return [tuple(r) for r in c.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def _meta_name(rid: str) -> str:
    return F.RETENTION_META_PREFIX + rid


def test_schema_rule_is_parsed_and_checked() -> None:
    rule = vault.load_schema(_schema()).retention
    assert rule is not None and rule.after == "departure" and rule.days == 30 and rule.event_end == dt.date(2026, 6, 30)
    assert vault.load_schema(NO_RULE).retention is None
    assert vault.load_schema().retention is not None  # the default schema sets one
    for bad, msg in [('after = "hotel"\ndays = 3', "must be a date field"),
                     ('after = "nope"\ndays = 3', "not a field"),
                     ("days = 3", "needs after"),
                     ('after = "departure"\ndays = -1', "days must be"),
                     ('after = "departure"\ndays = true', "days must be"),
                     ('after = "departure"\ndays = 3\nkeep = 1', "unknown key"),
                     ('event_end = "30/06/2026"\ndays = 3', "event_end must be a date")]:
        with pytest.raises(vault.SchemaError, match=msg):
            vault.load_schema(NO_RULE + "\n[retention]\n" + bad + "\n")


def test_the_rule_is_authenticated_with_the_schema(url: str) -> None:
    """A database writer who edits the stored [retention] (30 days to 3000) is refused at open."""
    with vault.create(url, PASSPHRASE, schema=_schema()):
        pass
    engine = sa.create_engine(url)
    with engine.begin() as c:
        text = bytes(c.execute(sa.text("SELECT value FROM dv_meta WHERE name = 'schema'")).scalar_one())
        c.execute(sa.text("UPDATE dv_meta SET value = :v WHERE name = 'schema'"),
                  {"v": text.replace(b"days = 30", b"days = 3000")})
    engine.dispose()
    with pytest.raises(vault.IntegrityError):
        vault.open(url, PASSPHRASE)


def test_dry_run_counts_by_cause_and_names_no_one(rv: vault.Vault) -> None:
    ids = _people(rv)
    rv.set_retention(ids["kept"], dt.date(2030, 1, 1))
    report = rv.purge_expired(today=TODAY)
    assert report.dry_run and report.count == 2 and report.by == {"after": 1, "event_end": 1}
    assert report.total == 4 and report.undated == 0
    shown = repr(report) + repr(report.as_dict())
    for rid in ids.values():
        assert rid not in shown
    for name in ("Olga", "Umar", "olga@", "Shared Hotel"):
        assert name not in shown
    assert len(rv) == 4  # nothing shredded
    (entry,) = [e for e in rv.audit_entries(action="purge")]
    assert entry["detail"] == {"dry_run": True, "count": 2, "by": {"after": 1, "event_end": 1}, "undated": 0}
    assert entry["target"] == ""


def test_purged_records_are_unreadable_everywhere(url: str) -> None:
    lead, tool = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, schema=_schema(), lead=lead) as rv:
        rv.add_user(tool.public, "printer", "tool")
        ids = _people(rv)
        old = ids["old"]
        pseudonyms = {p: rv.pseudonym(old, p) for p in ("badge", "travel", "audit")}
    with vault.open(url, identity=tool) as tv:
        req = tv.request_reveal(old, "passport_number", "visa letter")
    with vault.open(url, identity=lead) as rv:
        rv.approve_reveal(req, 3600, record=pseudonyms["audit"], field="passport_number")
        _purge_and_check(rv, url, ids, pseudonyms)


def _purge_and_check(rv: vault.Vault, url: str, ids: dict[str, str], pseudonyms: dict[str, str]) -> None:
    old = ids["old"]
    rv.set_retention(ids["kept"], dt.date(2030, 1, 1))
    undated_badge = rv.pseudonym(ids["undated"], "badge")
    assert _rows(url, "SELECT COUNT(*) FROM dv_reveals")[0][0] == 1
    report = rv.purge_expired(dry_run=False, today=TODAY)
    assert not report.dry_run and report.count == 2
    assert sorted(rv.ids()) == sorted([ids["recent"], ids["kept"]])
    for rid in (old, ids["undated"]):
        with pytest.raises(vault.NotFound):
            rv.get(rid)
    for p in [*pseudonyms.values(), undated_badge]:
        with pytest.raises(vault.NotFound):
            rv.resolve(p)
    assert rv.find(email="olga@example.org") == [] and rv.find(email="umar@example.org") == []
    assert [r["legal_name"] for r in rv.records(["legal_name"])] in (["Rita Recent", "Karim Kept"],
                                                                     ["Karim Kept", "Rita Recent"])
    gone = {bytes.fromhex(old), bytes.fromhex(ids["undated"])}
    assert not [r for r in _rows(url, "SELECT id FROM dv_records") if bytes(r[0]) in gone]
    for (blob,) in _rows(url, "SELECT ids FROM dv_index"):  # 8-byte id prefixes (index plan version 3)
        assert not {g[:8] for g in gone} & set(split_ids(bytes(blob), 8))
    assert _rows(url, "SELECT COUNT(*) FROM dv_reveals")[0][0] == 0
    # no pseudonym row of a purged record is left (their tags, from the purpose keys)
    tags = {bytes(t) for (t,) in _rows(url, "SELECT tag FROM dv_pseudonyms")}
    assert tags and not {k.tag(k.value(rid)) for k in rv._access.purposes.values() for rid in gone} & tags
    shreds = rv.audit_entries(action="shred")
    assert len(shreds) == 2 and all(e["verified"] for e in shreds)
    purge = [e for e in rv.audit_entries(action="purge") if not e["detail"]["dry_run"]]
    assert len(purge) == 1 and purge[0]["detail"]["count"] == 2


def test_purge_needs_the_lead_and_a_rule(url: str) -> None:
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, schema=_schema(), lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        rid = _people(v)["old"]
    with vault.open(url, identity=staff) as v:
        with pytest.raises(vault.AccessDenied):
            v.purge_expired(today=TODAY)
        with pytest.raises(vault.AccessDenied):
            v.set_retention(rid, dt.date(2030, 1, 1))
        assert v.retention_warnings(today=TODAY) == []  # counting needs the lead's view
    with vault.open(url, identity=lead) as v:
        denied = [e["detail"]["op"] for e in v.audit_entries(action="denied")]
        assert denied == ["purge", "retain"]
        assert v.purge_expired(dry_run=False, today=TODAY).count == 3  # no override here: Karim too


def test_without_a_rule_nothing_expires_and_status_says_so(url: str) -> None:
    with vault.create(url, PASSPHRASE, schema=NO_RULE) as v:
        v.add({"legal_name": "A", "departure": dt.date(2020, 1, 1)})
        with pytest.raises(vault.ValidationError, match="sets no retention"):
            v.purge_expired(dry_run=False, today=TODAY)
        (w,) = v.retention_warnings(today=TODAY)
        assert "retention is not set" in w
        assert len(v) == 1


def test_status_warns_about_records_past_retention(rv: vault.Vault) -> None:
    _people(rv)
    w = rv.retention_warnings(today=TODAY)
    assert len(w) == 1 and "3 record(s) past retention" in w[0]  # without the override, Karim's too
    assert "Olga" not in w[0] and "Umar" not in w[0]
    assert rv.retention_warnings(today=dt.date(2026, 7, 1)) == []


def test_status_counts_records_without_a_date(url: str) -> None:
    with vault.create(url, PASSPHRASE, schema=_schema('\n[retention]\nafter = "departure"\ndays = 30\n')) as v:
        _people(v)
        w = v.retention_warnings(today=TODAY)
        assert any("2 record(s) past retention" in x for x in w)
        assert any("1 record(s) have no departure date" in x for x in w)
        report = v.purge_expired(dry_run=False, today=TODAY)
        assert report.count == 2 and report.undated == 1 and len(v) == 2  # the undated record is kept


def test_override_is_respected_and_can_be_cleared(rv: vault.Vault) -> None:
    ids = _people(rv)
    rv.set_retention(ids["kept"], dt.date(2030, 1, 1))
    rv.set_retention(ids["recent"], dt.date(2027, 1, 5))  # shortened: the person asked to go sooner
    report = rv.purge_expired(today=TODAY)
    assert report.by == {"after": 1, "event_end": 1, "override": 1}
    rv.set_retention(ids["kept"], None)
    assert rv.purge_expired(today=TODAY).count == 4
    entries = rv.audit_entries(action="retain")
    assert [bool(e["detail"]["override"]) for e in entries] == [True, True, False]
    assert entries[2]["detail"]["replaces"] == entries[0]["detail"]["override"]
    assert entries[0]["target"].startswith("AU-")
    rv.purge_expired(dry_run=False, today=TODAY)
    assert len(rv) == 0


def _meta(url: str, rid: str) -> bytes:
    return bytes(_rows(url, "SELECT value FROM dv_meta WHERE name = :n", n=_meta_name(rid))[0][0])


def _put_meta(url: str, rid: str, value: bytes | None) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text("DELETE FROM dv_meta WHERE name = :n"), {"n": _meta_name(rid)})
        if value is not None:
            c.execute(sa.text("INSERT INTO dv_meta (name, value) VALUES (:n, :v)"), {"n": _meta_name(rid), "v": value})
    engine.dispose()


@pytest.mark.parametrize("tamper", ["deleted", "older", "flipped", "moved", "planted"])
def test_a_tampered_override_stops_the_purge(rv: vault.Vault, url: str, tamper: str) -> None:
    """A database writer deletes an override (Karim purged too early), puts back an older one
    (kept too long), edits one, moves one to another record, or plants one: the purge refuses
    and shreds no one; status says so, by count."""
    ids = _people(rv)
    rv.set_retention(ids["kept"], dt.date(2026, 8, 1))
    first = _meta(url, ids["kept"])
    rv.set_retention(ids["kept"], dt.date(2030, 1, 1))
    if tamper == "deleted":
        _put_meta(url, ids["kept"], None)
    elif tamper == "older":
        _put_meta(url, ids["kept"], first)
    elif tamper == "flipped":
        blob = bytearray(_meta(url, ids["kept"]))
        blob[20] ^= 1  # a digit of the date
        _put_meta(url, ids["kept"], bytes(blob))
    elif tamper == "moved":
        _put_meta(url, ids["old"], _meta(url, ids["kept"]))
    else:  # a row for a record the lead never kept, copied from another vault's kind-T blob shape
        _put_meta(url, ids["recent"], b"\x01T" + bytes(16) + b"2099-01-01" + b"L" + bytes(64))
    with pytest.raises(vault.IntegrityError, match="retention override"):
        rv.purge_expired(dry_run=False, today=TODAY)
    assert len(rv) == 4
    (w,) = rv.retention_warnings(today=TODAY)
    assert "retention override" in w and "Karim" not in w
    report = rv.verify()  # the whole-vault check names it too, by kind only
    assert not report.ok and {p.check for p in report.problems} == {"retention"}
    assert "retention override" in str(report) and "Karim" not in str(report)


def test_verify_passes_overrides_as_the_lead_set_them(rv: vault.Vault) -> None:
    ids = _people(rv)
    rv.set_retention(ids["kept"], dt.date(2026, 8, 1))
    rv.set_retention(ids["kept"], dt.date(2030, 1, 1))
    rv.set_retention(ids["old"], dt.date(2030, 1, 1))
    rv.set_retention(ids["old"], None)
    report = rv.verify()
    assert report.ok, str(report)
    assert "retention" not in report.skipped


def test_a_staff_retain_entry_does_not_count(url: str) -> None:
    """Only the lead's (or recovery actor's) retain entries say which overrides are in force:
    an entry that staff could sign themselves is ignored, so the lead's override that a staff
    member deleted from the database is still missed."""
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, schema=_schema(), lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        ids = _people(v)
        v.set_retention(ids["kept"], dt.date(2030, 1, 1))
        oid = v.audit_entries(action="retain")[0]["detail"]["override"]
    with vault.open(url, identity=staff) as v:
        v._audit("retain", "", {"override": None, "replaces": oid})  # what a staff client could sign
    _put_meta(url, ids["kept"], None)
    with vault.open(url, identity=lead) as v:
        with pytest.raises(vault.IntegrityError, match="missing"):
            v.purge_expired(dry_run=False, today=TODAY)


def test_purge_removes_overrides_of_purged_and_hand_shredded_records(rv: vault.Vault, url: str) -> None:
    ids = _people(rv)
    rv.set_retention(ids["old"], dt.date(2026, 12, 1))  # kept a little longer, now over too
    rv.set_retention(ids["recent"], dt.date(2030, 1, 1))
    rv.delete(ids["recent"])  # shredded by hand: its override is an orphan
    report = rv.purge_expired(dry_run=False, today=TODAY)
    assert report.count == 3 and report.by == {"after": 1, "event_end": 1, "override": 1}
    assert _rows(url, "SELECT name FROM dv_meta WHERE name LIKE 'retain:%'") == []
    assert rv.purge_expired(today=TODAY).count == 0  # and the log agrees: nothing is missing
    assert rv.retention_warnings(today=TODAY) == []


def test_a_rule_of_the_event_end_only(url: str) -> None:
    """Without a date field every record counts from the event's end: all expire together."""
    with vault.create(url, PASSPHRASE, schema=_schema("\n[retention]\nevent_end = 2026-06-30\ndays = 0\n")) as v:
        ids = _people(v)
        assert v.purge_expired(today=dt.date(2026, 6, 30)).count == 0  # the last day is still kept
        v.set_retention(ids["kept"], dt.date(2026, 7, 5))
        report = v.purge_expired(dry_run=False, today=dt.date(2026, 7, 1))
        assert report.count == 3 and report.by == {"event_end": 3} and v.ids() == [ids["kept"]]


def test_a_departure_near_the_end_of_the_calendar_is_kept_for_ever(rv: vault.Vault) -> None:
    """add() accepts a departure of 9999-12-31, and the purge then overflowed counting 30 days
    past it (OverflowError): a date past the calendar's end is now the calendar's end, which
    no day is after (kept for ever), in the purge, the status warnings and a subject export."""
    _people(rv)
    before = rv.purge_expired(today=TODAY).count
    far = rv.add({"legal_name": "Far Future", "departure": dt.date(9999, 12, 31)})
    report = rv.purge_expired(today=TODAY)
    assert report.count == before and report.total == 5
    assert rv.retention_warnings(TODAY) == rv.retention_warnings(TODAY)
    assert rv.purge_expired(today=dt.date.max).count == 4  # every other record, not the far one
    data = rv.subject_export(rv.pseudonym(far, "badge"))
    assert data.data["retention"]["keep_until"] == "9999-12-31"
    assert "calendar" in data.data["retention"]["summary"]


@pytest.mark.parametrize("today", [dt.datetime(2030, 1, 1), "2030-01-01", 5, False])
def test_today_must_be_a_date(rv: vault.Vault, today: object) -> None:
    """A datetime, a string or a number as ``today`` failed with TypeError when compared
    with a record's date; it is refused up front."""
    _people(rv)
    with pytest.raises(vault.ValidationError, match="today"):
        rv.purge_expired(today=today, dry_run=False)
    with pytest.raises(vault.ValidationError, match="today"):
        rv.retention_warnings(today)
    assert rv.count() == 4
