"""The lead's view of a break-glass request and what the requester can change (review1 R06):
the badge name the view shows is the requester's to edit. The view now names every recent
update of what it shows (and of the requested field), by whom and when; and one malformed
request row no longer hides every other request from the lead."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from vault.identity import Identity

import vault
from conftest import PASSPHRASE
from vault import _format as F

REASON = "Amira H. was admitted to hospital; the insurer needs her legal name"


@pytest.fixture
def team(url: str):  # type: ignore[no-untyped-def]
    lead, sam, noor = Identity.generate(), Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(sam.public, "sam", "staff")
        v.add_user(noor.public, "noor", "staff")
        v.add({"legal_name": "Amira Haddad", "badge_name": "Amira H.", "email": "amira@example.org"})
        target = v.add({"legal_name": "Secret Person", "badge_name": "Dana", "email": "dana@example.org"})
    return url, lead, sam, noor, target


def _view(url: str, lead: Identity, req: str):  # type: ignore[no-untyped-def]
    with vault.open(url, identity=lead) as v:
        return next(r for r in v.reveal_requests() if r.req_id == req)


def test_a_badge_name_the_requester_changed_is_named_in_the_leads_view(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, sam, noor, target = team
    with vault.open(url, identity=sam) as s:
        s.set_reason("fixing a typo on a badge")
        s.update(target, {"badge_name": "Amira H."})
        req = s.request_reveal(target, "legal_name", REASON)
    r = _view(url, lead, req)
    assert r.badge_name == "Amira H."
    assert [f for f in r.flags if f.startswith("badge_name of this record was changed by the requester")], r.flags
    assert "audit entry" in r.flags[-1] and "make sure the record is the person the reason means" in r.flags[-1]


def test_a_recent_change_by_anyone_is_named_an_old_one_not(team, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    url, lead, sam, noor, target = team
    real = time.time
    with vault.open(url, identity=noor) as s:  # long ago, by someone else: not worth a flag
        monkeypatch.setattr(time, "time", lambda: real() - F.REVEAL_WATCH_S - 3600)
        s.update(target, {"badge_name": "Dana K."})
        monkeypatch.setattr(time, "time", real)
    with vault.open(url, identity=sam) as s:
        s.update(target, {"dietary": ["halal"]})  # a field the view does not show
        req = s.request_reveal(target, "legal_name", REASON)
    assert _view(url, lead, req).flags == ()
    with vault.open(url, identity=noor) as s:  # recently, by someone else: named
        s.update(target, {"badge_name": "Amira H."})
    flags = _view(url, lead, req).flags
    assert len(flags) == 1 and flags[0].startswith("badge_name of this record was changed by noor 0 h ago")


def test_a_forged_update_entry_raises_no_flag(team) -> None:  # type: ignore[no-untyped-def]
    """Only entries that pass their own check count: one in a colleague's name says nothing."""
    from test_audit_rows import _insert, _signed
    url, lead, sam, noor, target = team
    with vault.open(url, identity=sam) as s:
        req = s.request_reveal(target, "legal_name", REASON)
        audit = s._journal.target(target)
        from vault import audit as A
        seq, h = A.head(s._ses.store())
    row = list(_signed(noor, seq + 1, h, "update", '{"fields":["badge_name"]}'))
    row[5] = audit
    row[9] = bytes(64)  # not noor's signature
    _insert(url, *row)
    assert _view(url, lead, req).flags == ()


def test_a_malformed_request_row_hides_no_other_request(team) -> None:  # type: ignore[no-untyped-def]
    """A row the staff login inserted (req_id 'zz') made the lead's requests and approve
    fail for every request; it is now left out, with a warning."""
    url, lead, sam, noor, target = team
    with vault.open(url, identity=sam) as s:
        req = s.request_reveal(target, "legal_name", REASON)
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO dv_reveals (req_id, requester, record_id, field, reason, created) "
                          "VALUES ('zz', 'zz', :r, 'legal_name', :x, 1)"), {"r": bytes(16), "x": b""})
    engine.dispose()
    with vault.open(url, identity=lead) as v:
        listed = v.reveal_requests()
        assert [r.req_id for r in listed] == [req]
        assert any("break-glass request row(s) are malformed" in w for w in v.warnings)
        v.approve_reveal(req, record=listed[0].record, field="legal_name")
    with vault.open(url, identity=sam) as s:
        assert [r.req_id for r in s.reveal_requests()] == [req]
