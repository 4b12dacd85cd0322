"""Two handles on one vault, one acting between another's check and its write: what the
second finds must be the vault as it is, not as it was when it looked. Found by a
concurrency hunt on 2026-12; each test failed before its fix (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pytest
from vault.schema import default_schema_text

import vault
from conftest import PASSPHRASE
from vault import retention as RT

TODAY = dt.date(2027, 1, 10)
_SCHEMA = default_schema_text().replace('[retention]\nafter = "departure"\ndays = 90\n', "") \
    + '\n[retention]\nafter = "departure"\nevent_end = 2026-06-30\ndays = 30\n'


def _between_plan_and_shred(monkeypatch: pytest.MonkeyPatch, step) -> None:  # type: ignore[no-untyped-def]
    """Run ``step`` once, after a purge has decided what expired and before it shreds."""
    plan = RT.plan

    def planned(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = plan(*args, **kwargs)
        step()
        return out
    monkeypatch.setattr(RT, "plan", planned)


@pytest.mark.parametrize("change", ["update", "override"])
def test_a_purge_spares_a_record_kept_meanwhile(url: str, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """The lead purges while a desk client records that a participant stays longer (their
    departure updated) or the lead's other client sets them an override: the purge shredded
    them all the same, from what it had read before (an irreversible shred of a record the
    rule keeps). Each record is now checked again under its row lock, in the shred's
    transaction."""
    with vault.create(url, PASSPHRASE, schema=_SCHEMA) as v:
        stays = v.add({"legal_name": "Sami Stays", "departure": dt.date(2026, 7, 1)})
        goes = v.add({"legal_name": "Gita Goes", "departure": dt.date(2026, 7, 1)})
        with vault.open(url, PASSPHRASE) as desk:
            def keep() -> None:
                if change == "update":
                    desk.update(stays, {"departure": dt.date(2027, 1, 5)})
                else:
                    desk.set_retention(stays, dt.date(2030, 1, 1))
            _between_plan_and_shred(monkeypatch, keep)
            report = v.purge_expired(dry_run=False, today=TODAY)
        assert report.count == 1
        assert v.get(stays)["legal_name"] == "Sami Stays"
        with pytest.raises(vault.NotFound):
            v.get(goes)
        assert v.audit_verify().ok and v.check_records().ok


def _rows(n: int) -> list[dict[str, str]]:
    return [{"badge_name": f"p{i}", "email": f"p{i}@example.org", "legal_name": f"Person {i}"} for i in range(n)]


def test_a_reindex_overtaken_elsewhere_does_not_switch_its_old_plan_back_in(url: str) -> None:
    """A re-indexes; B joins and finishes that re-index, then re-plans (population 200000)
    and finishes that too. A, still in its batches, then switched its own plan back in
    (and deleted B's generation): the lead's new plan was silently undone. A now sees
    that its plan is no longer the pending one and stops with a clear KeysChanged."""
    with vault.create(url, PASSPHRASE) as v:
        ids = v.add_many(_rows(60))
    a, b = vault.open(url, PASSPHRASE), vault.open(url, PASSPHRASE)
    try:
        def overtaken(done: int, total: int) -> None:
            if done == 10:
                b.reindex()
                b.reindex(population=200000)
        with pytest.raises(vault.KeysChanged, match="re-index elsewhere"):
            a.reindex(population=5000, batch=10, progress=overtaken)
        assert a.status()["index"]["population"] == 200000
    finally:
        a.close()
        b.close()
    with vault.open(url, PASSPHRASE) as v:
        assert v.status()["index"]["population"] == 200000 and not v.status()["index"]["reindex_pending"]
        assert all([r.id for r in v.find(email=f"p{i}@example.org")] == [ids[i]] for i in range(60))
        assert v.verify().ok and v.audit_verify().ok


def test_a_reindex_finished_elsewhere_ends_quietly(url: str) -> None:
    """A's re-index finished by B while A was between batches: A's call ends, nothing undone."""
    with vault.create(url, PASSPHRASE) as v:
        ids = v.add_many(_rows(40))
    a, b = vault.open(url, PASSPHRASE), vault.open(url, PASSPHRASE)
    try:
        def finished(done: int, total: int) -> None:
            if done == 10:
                b.reindex()
        a.reindex(population=5000, batch=10, progress=finished)
        assert a.status()["index"]["population"] == 5000
    finally:
        a.close()
        b.close()
    with vault.open(url, PASSPHRASE) as v:
        assert not v.status()["index"]["reindex_pending"]
        assert all([r.id for r in v.find(email=f"p{i}@example.org")] == [ids[i]] for i in range(40))
        assert v.verify().ok


def test_a_revoked_users_open_handle_can_neither_shred_nor_request(url: str) -> None:
    """Staff whose handle stayed open while the lead revoked them (rotate=False) could still
    shred a record, and the lead's record check then flagged that shred as a deletion behind
    the vault's back; a break-glass request went in too. Both now find the slot gone."""
    from vault.identity import Identity
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        ids = v.add_many(_rows(3))
        sam = v.add_user(staff.public, "sam", "staff")
    with vault.open(url, identity=staff) as s:
        with vault.open(url, identity=lead) as v:
            v.remove_user(sam.user_id, rotate=False)
        with pytest.raises(vault.AccessDenied, match="slot is gone"):
            s.delete(ids[0])
        with pytest.raises(vault.AccessDenied, match="slot is gone"):
            s.request_reveal(ids[1], "passport_number", "checking in at the desk")
    with vault.open(url, identity=lead) as v:
        assert v.count() == 3 and v.reveal_requests() == []
        assert v.audit_verify().ok and v.check_records().ok
