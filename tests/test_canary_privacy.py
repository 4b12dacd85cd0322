"""Nothing a non-lead can read tells a decoy from a participant (threat model 3.5, 10): the
lead's own listings, reads and moves wrote an ``alarm`` entry naming each canary's audit
pseudonym in clear, and staff hold the audit purpose's key (review1 R04)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from vault.identity import Identity

import vault
from conftest import PASSPHRASE
from vault import pseudonym as P


def _targets(url: str) -> set[str]:
    """What the staff login reads: every entry's target."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return {str(r[0]) for r in c.exec_driver_sql("SELECT target FROM dv_audit WHERE target <> ''")}
    finally:
        engine.dispose()


def test_the_leads_own_touches_name_no_canary(url: str, url2: str) -> None:
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        people = [v.add({"badge_name": f"Person {i}", "email": f"p{i}@example.org"}) for i in range(5)]
        canary = v.plant_canary({"badge_name": "Decoy", "email": "decoy@example.org"})
    with vault.open(url, identity=lead) as v:  # routine work of the lead, every kind of touch
        v.set_reason("badge print run")
        v.rows(["badge_name"])
        list(v.records(["badge_name"]))
        v.export(["badge_name"])
        v.get(canary)
        v.find(email="decoy@example.org")
        v.update(canary, {"badge_name": "Decoy B"})
    with vault.open(url, PASSPHRASE) as v:  # the recovery passphrase: its touches are alarms ...
        v.get(canary)
        vault.move(v, url2, "a new recovery passphrase here", lead=Identity.generate()).vault.close()
    with vault.open(url, identity=staff) as s:  # what staff can compute from their keyring
        key = s._access.purposes["audit"]
        names = {P.format(key.value(bytes.fromhex(r)), P.purpose_prefix("audit")): r for r in s.ids()}
    assert canary in names.values() and set(people) <= set(names.values())
    with vault.open(url, identity=lead) as v:
        assert v.audit_entries(action="alarm") == []
        touched = [(a["actor"], a["detail"]["op"]) for a in v.alarms()]
        target = v._journal.target(canary)
    # ... found in its entries by the lead's client (written in clear, as any read, by the opener)
    assert touched and {op for _, op in touched} <= {"read", "export"} and lead.public.user_id not in dict(touched)
    # the only canary-named targets are the lead's own read and update and the recovery read,
    # entries of actions every record gets: none written because the record is a canary
    counts: dict[str, int] = {}
    engine = sa.create_engine(url)
    with engine.connect() as c:
        for action, t in c.exec_driver_sql("SELECT action, target FROM dv_audit WHERE target <> ''"):
            counts[t] = counts.get(t, 0) + (action == "alarm")
    engine.dispose()
    assert counts.get(target, 0) == 0 and sum(counts.values()) == 0
    assert target in _targets(url)  # (named by the lead's read: any record the lead reads is)


@pytest.mark.parametrize("via", ["rows", "records", "export"])
def test_a_leads_listing_writes_one_entry_whatever_the_canaries(url: str, via: str) -> None:
    """The number of entries a listing writes was one plus one per canary."""
    lead = Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        for i in range(3):
            v.add({"badge_name": f"Person {i}"})
        v.plant_canary({"badge_name": "Decoy"})
        v.plant_canary({"badge_name": "Decoy 2"})
        from vault import audit as A
        before = A.head(v._ses.store())[0]
        {"rows": lambda: v.rows(["badge_name"]), "records": lambda: list(v.records(["badge_name"])),
         "export": lambda: v.export(["badge_name"])}[via]()
        assert A.head(v._ses.store())[0] == before + 1


def test_canaries_carried_over_by_the_upgrade_raise_no_alarm_for_the_past(url: str) -> None:
    """The upgrade to v8 planted each carried-over canary "since entry 0": the lead's first
    look after it counted every earlier listing by staff as a touch of every canary."""
    from rawdb import as_release_v7
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        decoy = v._records.add_many([{"badge_name": "decoy"}])[0]
        v.add({"badge_name": "real"})
        as_release_v7(v, [decoy])
    with vault.open(url, identity=staff) as s:  # before the upgrade (staff work at v7)
        s.rows(["badge_name"])
    with vault.open(url, identity=lead) as v:  # the upgrade
        assert v._canaries.live() == {decoy}
        assert v.alarms() == []
    with vault.open(url, identity=staff) as s:  # after it: a touch
        s.rows(["badge_name"])
    with vault.open(url, identity=lead) as v:
        assert [a["detail"]["op"] for a in v.alarms()] == ["read_all"]
