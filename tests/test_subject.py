"""A person's own data: the subject export holds every stored field of that person and
nothing of anyone else (people who share a hotel, a nationality, dates, even a name);
erasure shreds through delete. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import stat
import time
from pathlib import Path

import pytest
from vault.identity import Identity

import vault
from conftest import PASSPHRASE
from vault import exporter as X
from vault import pseudonym as P
from vault import subject as SJ

AMIRA = {"legal_name": "Amira Haddad", "badge_name": "Amira", "email": "amira@example.org",
         "phone": "+961 1 234 567", "passport_number": "RL-0099-AMIRA", "nationality": "Lebanon",
         "hotel": "Hotel Shared", "arrival": dt.date(2026, 11, 7), "departure": dt.date(2026, 11, 14),
         "dietary": ["vegan"], "photo_consent": True, "pronouns": "she/her"}
# Others share many of her values, and each has values of their own that must not leak.
OTHERS = [
    {"legal_name": "Amira Haddad", "badge_name": "Amira H.", "email": "amira.other@example.net",
     "phone": "+961 1 234 567",
     "passport_number": "SY-7777-OTHER", "nationality": "Syria", "hotel": "Hotel Shared",
     "arrival": dt.date(2026, 11, 7), "departure": dt.date(2026, 11, 14)},
    {"legal_name": "Bilal Nasser", "badge_name": "Bilal", "email": "bilal@example.org",
     "passport_number": "LB-1234-BILAL", "nationality": "Lebanon", "hotel": "Hotel Shared",
     "arrival": dt.date(2026, 11, 7), "departure": dt.date(2026, 11, 14), "dietary": ["vegan"]},
]
OTHER_ONLY = ["amira.other@example.net", "SY-7777-OTHER", "Syria", "Amira H.", "Bilal", "bilal@example.org",
              "LB-1234-BILAL"]


@pytest.fixture
def team(url: str) -> tuple[str, Identity, Identity, str, list[str]]:
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead, lead_name="Leila Lead") as v:
        v.add_user(staff.public, "Sami Staffer", "staff")
        amira = v.add(AMIRA)
        others = [v.add(o) for o in OTHERS]
    with vault.open(url, identity=staff) as v:
        v.set_reason("desk question from Bilal Nasser")  # a reason that names someone else
        found = v.find(phone="+961 1 234 567", fields=["email"])  # her and her namesake share a phone
        assert len(found) == 2
        v.update(amira, {"hotel": "Hotel Shared"})
        v.pseudonym(amira, "badge")
    return url, lead, staff, amira, others


def test_export_holds_every_field_and_nothing_of_anyone_else(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, _, amira, others = team
    with vault.open(url, identity=lead) as v:
        badge = v.pseudonym(amira, "badge")
        other_audit = [v.pseudonym(o, "audit") for o in others]
        other_badge = [v.pseudonym(o, "badge") for o in others]
        v.export(["badge_name"], purpose="badge")  # a bulk read that covered her too
        stored = dict(v.get(amira))
        sd = v.subject_export(badge)
        text_json, text = sd.to_json(), sd.to_text()
        data = json.loads(text_json)
        assert data["fields"] == json.loads(json.dumps({k: (x.isoformat() if isinstance(x, dt.date) else x)
                                                        for k, x in stored.items()}))
        assert set(data["fields"]) == set(AMIRA)  # every field she gave
        assert data["pseudonyms"]["badge"] == badge and set(data["pseudonyms"]) >= {"badge", "audit"}
        for blob in (text_json, text, repr(sd)):
            for value in OTHER_ONLY + other_audit + other_badge + ["Sami Staffer", "Leila Lead", "desk question"]:
                assert value not in blob, value
            for o in others:
                assert o not in blob
            for u in v.users():
                assert u.user_id not in blob
        for value in ("Amira Haddad", "amira@example.org", "RL-0099-AMIRA", "2026-11-14", "vegan"):
            assert value in text
        assert "RL-0099-AMIRA" not in repr(sd)
        acts = data["accesses"]
        assert {"search", "update", "pseudonym"} <= {a["action"] for a in acts}
        assert {a["role"] for a in acts if a["action"] == "search"} == {"staff"}
        assert any(a["action"] == "export" and a.get("scope") == "all records" for a in acts)
        assert all(set(a) <= {"at", "action", "role", "fields", "scope", "verified"} for a in acts)
        assert data["retention"]["keep_until"] == "2027-02-12" and data["retention"]["by"] == "after"
        (entry,) = v.audit_entries(action="subject_export")
        assert entry["target"] == data["pseudonyms"]["audit"] and entry["detail"]["fields"] == sorted(AMIRA)


def test_export_lists_bulk_reads_from_the_records_add_on(url: str) -> None:
    """From a CLI hunt: a staff read of every record's e-mail made after she was added but
    before her record's first entry with a target was left out (add and import entries
    name no target; times were compared to the second). The start is now her add entry,
    found through her row's state (followed back through an update): a bulk read before
    it is still left out, one after it is listed."""
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "Sami Staffer", "staff")
        v.add(OTHERS[1])
    with vault.open(url, identity=staff) as v:
        v.export(["badge_name"])  # before she was added: it did not cover her
    time.sleep(0.01)
    with vault.open(url, identity=lead) as v:
        amira = v.add(AMIRA)
    with vault.open(url, identity=staff) as v:
        v.rows(["email"])  # read_all, no target: it covered her
    time.sleep(1.1)  # her first entry with a target comes a second later
    with vault.open(url, identity=lead) as v:
        v.update(amira, {"hotel": "Hotel Elsewhere"})  # her row's state changes: followed back to the add
        data = v.subject_export(v.pseudonym(amira, "badge")).data
    bulk = [a for a in data["accesses"] if a.get("scope") == "all records"]
    assert [(a["action"], a["role"]) for a in bulk] == [("read_all", "staff")], data["accesses"]
    assert [a["action"] for a in data["accesses"]][:2] == ["read_all", "update"]


def test_files_are_private_never_overwritten_and_both_or_none(team, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, lead, _, amira, _ = team
    with vault.open(url, identity=lead) as v:
        sd = v.subject_export(v.pseudonym(amira, "travel"))
    paths = SJ.write(sd, tmp_path / "amira")
    assert [p.name for p in paths] == ["amira.json", "amira.txt"]
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    before = [p.read_bytes() for p in paths]
    with pytest.raises(vault.VaultExists, match="refusing to overwrite"):
        SJ.write(sd, tmp_path / "amira")
    assert [p.read_bytes() for p in paths] == before
    (tmp_path / "b.txt").write_text("someone else's file")
    with pytest.raises(vault.VaultExists):
        SJ.write(sd, tmp_path / "b")
    assert not (tmp_path / "b.json").exists() and (tmp_path / "b.txt").read_text() == "someone else's file"


def test_sealed_export_opens_for_its_recipient_only(team, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, lead, _, amira, _ = team
    amira_id = Identity.generate()
    with vault.open(url, identity=lead) as v:
        sd = v.subject_export(v.pseudonym(amira, "badge"))
        vid = v.id
    (path,) = SJ.write(sd, tmp_path / "amira.sealed", seal_with=lambda data, fields: X.seal(
        data, amira_id.public, lead, vault_id=vid, purpose=None, fields=fields, fmt="json", rows=1))
    blob = path.read_bytes()
    assert b"RL-0099-AMIRA" not in blob and stat.S_IMODE(path.stat().st_mode) == 0o600
    opened = X.open_sealed(blob, amira_id)
    got = json.loads(opened.data)
    assert got["fields"]["passport_number"] == "RL-0099-AMIRA" and "Who accessed your record" in got["text"]
    assert opened.sender is not None and opened.sender.raw == lead.public.raw
    with pytest.raises(vault.IntegrityError):
        X.open_sealed(blob, Identity.generate())


def test_only_the_lead_exports_or_erases(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, amira, _ = team
    with vault.open(url, identity=staff) as v:
        badge = v.pseudonym(amira, "badge")
        with pytest.raises(vault.AccessDenied):
            v.subject_export(badge)
        with pytest.raises(vault.AccessDenied):
            v.subject_erase(badge)
        assert len(v) == 3
    with vault.open(url, identity=lead) as v:
        assert [e["detail"]["op"] for e in v.audit_entries(action="denied")] == ["subject_export", "subject_erase"]
        assert v.audit_entries(action="subject_export") == []


def test_erase_shreds_through_delete_and_is_audited(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, _, amira, others = team
    with vault.open(url, identity=lead) as v:
        badge = v.pseudonym(amira, "badge")
        audit_pn = v.pseudonym(amira, "audit")
        v.set_retention(amira, dt.date(2030, 1, 1))
        v.subject_erase(badge)
        with pytest.raises(vault.NotFound):
            v.get(amira)
        with pytest.raises(vault.NotFound):
            v.resolve(badge)
        with pytest.raises(vault.NotFound):
            v.subject_export(badge)
        assert v.find(email="amira@example.org") == [] and sorted(v.ids()) == sorted(others)
        actions = [e["action"] for e in v.audit_entries(target=audit_pn)]
        assert actions[-3:] == ["retain", "subject_erase", "shred"]
        assert v.purge_expired(today=dt.date(2026, 12, 1)).count == 0  # no override is missing, none left behind


def test_unknown_pseudonym_is_not_found(v: vault.Vault) -> None:
    v.add({"legal_name": "Someone"})
    with pytest.raises(vault.NotFound):
        v.subject_export(P.format(12345, "BA"))  # well formed, names no one
    with pytest.raises(vault.VaultError, match="pseudonym"):
        v.subject_export("not a pseudonym")
