"""Break-glass requests are bound to what their requester signed; the lead approves an
explicit (request, record, field) after seeing who the record is; other roles see only
their own requests, without record ids (docs/threat-model.md 3.5, docs/format.md 8b)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import vault
from conftest import PASSPHRASE
from rawdb import RawDB, as_release_v7
from vault import _format as F
from vault import migrations
from vault.identity import Identity

AMIRA = {"legal_name": "Amira Haddad", "badge_name": "Amira", "passport_number": "P83526008",
         "email": "amira@example.org"}
SAMIRA = {"legal_name": "Samira Mansour", "badge_name": "Samira", "passport_number": "X11223344",
          "email": "samira@example.org"}


@pytest.fixture
def team(url: str):  # type: ignore[no-untyped-def]
    lead, staff, tool = Identity.generate(), Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        v.add_user(tool.public, "badge-printer", "tool")
        a, b = v.add(AMIRA), v.add(SAMIRA)
        names = {rid: {p: v.pseudonym(rid, p) for p in ("badge", "audit")} for rid in (a, b)}
    return url, lead, staff, tool, a, b, names


def _sql(url: str, query: str, **params: object) -> None:
    raw = RawDB(url)
    with raw.engine.begin() as c:
        c.execute(sa.text(query), params)
    raw.close()


def _grants(url: str) -> list[object]:
    raw = RawDB(url)
    with raw.engine.begin() as c:
        out = [r[0] for r in c.execute(sa.text('SELECT "grant" FROM dv_reveals ORDER BY req_id'))]
    raw.close()
    return out


def _view(url: str, lead: Identity, req: str):  # type: ignore[no-untyped-def]
    with vault.open(url, identity=lead) as v:
        return next(r for r in v.reveal_requests() if r.req_id == req)


def test_the_lead_sees_who_the_record_is_and_a_reason_naming_someone_else(team) -> None:  # type: ignore[no-untyped-def]
    """The social attack: sam wants Samira's legal name and gives a reason about Amira
    ("hospital admission for participant BA-..."). The lead's view names the requested
    record (Samira's audit pseudonym and badge name, decrypted on the lead's side) and flags
    the reason; a reason naming the record's own pseudonym, or an ordinary long word, is not
    flagged."""
    url, lead, staff, tool, a, b, names = team
    with vault.open(url, identity=staff) as v:
        lure = v.request_reveal(b, "legal_name", f"hospital admission for participant {names[a]['badge']}")
        typed = v.request_reveal(b, "legal_name", "hospital, for " + names[a]["badge"].replace("-", " ").lower())
        honest = v.request_reveal(b, "legal_name", f"travel authorisation for {names[b]['badge']}")
    view = _view(url, lead, lure)
    assert (view.record, view.badge_name, view.field, view.record_id) == (names[b]["audit"], "Samira", "legal_name", b)
    assert view.requester_name == "sam" and view.problem is None
    assert len(view.flags) == 1 and names[a]["badge"] in view.flags[0] and "not the requested record" in view.flags[0]
    assert len(_view(url, lead, typed).flags) == 1  # as typed: lower case, spaces
    assert _view(url, lead, honest).flags == ()
    assert "Samira" not in repr(view) and "hospital" not in repr(view)


@pytest.mark.parametrize("edit", ["record_id", "field", "requester", "reason"])
def test_an_edited_request_is_refused_and_nothing_is_sealed(team, edit: str) -> None:  # type: ignore[no-untyped-def]
    """A database writer points sam's request for Amira's legal name at Samira's record (or
    another field, requester or reason). The lead, shown the edited row, approves what it
    shows: refused as not what sam signed, nothing is sealed, the attempt is logged."""
    url, lead, staff, tool, a, b, names = team
    with vault.open(url, identity=staff) as v:
        req = v.request_reveal(a, "legal_name", "hospital admission for Amira")
        other = v.request_reveal(b, "legal_name", "a different, longer reason")
    with vault.open(url, identity=tool) as v:
        tools = v.request_reveal(a, "legal_name", "badge reprint for Amira")
    set_to = {"record_id": ("record_id = :x", bytes.fromhex(b)), "field": ("field = :x", "passport_number"),
              "requester": ("requester = :x", tool.public.user_id),
              "reason": ("reason = (SELECT reason FROM dv_reveals WHERE req_id = :x)", other)}[edit]
    _sql(url, f"UPDATE dv_reveals SET {set_to[0]} WHERE req_id = :r", x=set_to[1], r=req)
    view = _view(url, lead, req)
    assert view.problem is not None and "not what its requester signed" in view.problem
    with vault.open(url, identity=lead) as v:
        with pytest.raises(vault.IntegrityError, match="not what its requester signed"):
            v.approve_reveal(req, ttl_seconds=3600, record=view.record, field=view.field)
        (entry,) = [e for e in v.audit_entries(action="reveal_approve")]
        v.approve_reveal(tools, ttl_seconds=3600, record=names[a]["audit"], field="legal_name")  # untouched: fine
    assert entry["target"] == "" and entry["detail"]["refused"] == "IntegrityError"
    grants = dict(zip(sorted([req, other, tools]), _grants(url)))
    assert grants[req] is None and grants[other] is None and grants[tools] is not None
    with vault.open(url, identity=tool) as v:
        assert v.reveal(tools) == "Amira Haddad"


def test_the_lead_approves_an_explicit_record_and_field(team) -> None:  # type: ignore[no-untyped-def]
    """approve_reveal takes the record (any pseudonym of it, or its id) and field the lead
    was shown; anything else is refused before anything is sealed."""
    url, lead, staff, tool, a, b, names = team
    with vault.open(url, identity=staff) as v:
        req = v.request_reveal(a, "legal_name", "hospital admission for Amira")
    with vault.open(url, identity=lead) as v:
        for record, field in ((names[b]["audit"], "legal_name"), (names[b]["badge"], "legal_name"), (b, "legal_name"),
                              (names[a]["audit"], "passport_number"), ("AU-0000-0000-000", "legal_name"),
                              ("not a pseudonym", "legal_name")):
            with pytest.raises(vault.ValidationError, match="nothing approved"):
                v.approve_reveal(req, ttl_seconds=3600, record=record, field=field)
        assert _grants(url) == [None]
        with pytest.raises(TypeError):
            v.approve_reveal(req, ttl_seconds=3600)  # type: ignore[call-arg]  # by id alone: no
        v.approve_reveal(req, ttl_seconds=3600, record=names[a]["badge"], field="legal_name")
    with vault.open(url, identity=staff) as v:
        assert v.reveal(req) == "Amira Haddad"


def test_an_unsigned_request_is_refused_with_advice(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, tool, a, b, names = team
    with vault.open(url, identity=staff) as v:
        req = v.request_reveal(a, "legal_name", "hospital admission for Amira")
    _sql(url, "UPDATE dv_reveals SET sig = NULL WHERE req_id = :r", r=req)
    assert "ask them to request again" in (_view(url, lead, req).problem or "")
    with vault.open(url, identity=lead) as v:
        with pytest.raises(vault.AccessDenied, match="ask them to request again"):
            v.approve_reveal(req, ttl_seconds=3600, record=names[a]["audit"], field="legal_name")
    assert _grants(url) == [None]


@pytest.mark.parametrize("req_id", ["abc\ndvault: ok: approved", "ABCDEF0123456789", "\x1b[2J0123456789abcdef", ""])
def test_a_malformed_request_id_is_not_found_and_not_echoed(team, req_id: str) -> None:  # type: ignore[no-untyped-def]
    """From a CLI hunt: a request id was looked up and echoed as typed ("no break-glass
    request abc<newline>dvault: ok: approved"), forging a second line on the terminal."""
    url, lead, staff, _tool, a, _b, names = team
    with vault.open(url, identity=lead) as v:
        with pytest.raises(vault.NotFound, match="a request id is 16 hex digits") as e:
            v.approve_reveal(req_id, 3600, record=names[a]["audit"], field="email")
        assert not req_id or req_id not in str(e.value)
    with vault.open(url, identity=staff) as v:
        with pytest.raises(vault.NotFound, match="a request id is 16 hex digits") as e:
            v.reveal(req_id)
        assert not req_id or req_id not in str(e.value)


def test_non_leads_see_only_their_own_requests_and_no_record_ids(team) -> None:  # type: ignore[no-untyped-def]
    url, lead, staff, tool, a, b, names = team
    with vault.open(url, identity=staff) as v:
        mine = v.request_reveal(a, "legal_name", "hospital admission for Amira")
    with vault.open(url, identity=tool) as v:
        theirs = v.request_reveal(b, "passport_number", "visa letter for Samira")
        (seen,) = v.reveal_requests()
    assert (seen.req_id, seen.record_id, seen.record, seen.reason, seen.badge_name) == \
        (theirs, None, names[b]["audit"], None, None)
    with vault.open(url, identity=staff) as v:
        (seen,) = v.reveal_requests()
        assert (seen.req_id, seen.record_id, seen.record) == (mine, None, names[a]["audit"])
        v._access.purposes.pop("audit")  # a role without the audit purpose key: the record is not named at all
        assert [(r.req_id, r.record, r.record_id) for r in v.reveal_requests()] == [(mine, None, None)]
        entries = v.audit_entries(action="reveal_list")
    assert [e["detail"] for e in entries] == [{"requests": 1}, {"requests": 1}]
    with vault.open(url, identity=lead) as v:
        assert sorted(r.req_id for r in v.reveal_requests()) == sorted([mine, theirs])
        (entry,) = v.audit_entries(action="reveal_list", actor=lead.public.user_id)
    assert entry["detail"] == {"requests": 2, "fields": ["badge_name"],
                               "targets": sorted([names[a]["audit"], names[b]["audit"]])}


def _cli(tmp_path: Path, url: str, ident: Path, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    from vault_cli.main import cli  # type: ignore[import-not-found]
    # the variable per command: dvault removes a passphrase variable from its environment once read
    return CliRunner().invoke(cli, [*args, "--vault", url, "--identity", str(ident)], input=input,
                              env={"DVAULT_IDENTITY_PASSPHRASE": "identity pass"})


def test_cli_requests_and_approve_show_who_and_ask(team, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`dvault requests` and `dvault approve` show the lead the record's audit pseudonym and
    badge name and the flags; approve asks, or with --yes needs --record and --field;
    a staff member's `dvault requests` lists their own requests only."""
    url, lead, staff, tool, a, b, names = team
    monkeypatch.setenv("DVAULT_IDENTITY_PASSPHRASE", "identity pass")
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "no-config.toml"))
    lead_file, staff_file = lead.save(tmp_path / "lead.dvid", "identity pass"), staff.save(tmp_path / "s.dvid", "identity pass")
    with vault.open(url, identity=staff) as v:
        lure = v.request_reveal(b, "legal_name", f"hospital admission for participant {names[a]['badge']}")
    with vault.open(url, identity=tool) as v:
        v.request_reveal(a, "passport_number", "visa letter for Amira")
    r = _cli(tmp_path, url, lead_file, "requests")
    assert r.exit_code == 0, r.output
    assert names[b]["audit"] in r.output and "Samira" in r.output and "WARNING" in r.output
    assert f"request {lure}" in r.output and names[a]["badge"] in r.output
    r = _cli(tmp_path, url, staff_file, "requests")
    assert r.exit_code == 0 and lure in r.output and names[b]["audit"] in r.output
    assert "passport_number" not in r.output and b not in r.output  # not tool's, no record id
    r = _cli(tmp_path, url, lead_file, "approve", lure, "--yes")
    assert r.exit_code != 0 and "--record and --field" in r.output  # a usage error (dvault: exit 1)
    r = _cli(tmp_path, url, lead_file, "approve", lure, input="n\n")
    assert r.exit_code == 1 and "Samira" in r.output and names[b]["audit"] in r.output and "aborted" not in r.stdout
    assert _grants(url) == [None, None]  # declined: nothing sealed
    r = _cli(tmp_path, url, lead_file, "approve", lure, "--yes", "--record", names[a]["audit"], "--field", "legal_name")
    assert isinstance(r.exception, vault.ValidationError) and "another record" in str(r.exception)
    assert _grants(url) == [None, None]
    r = _cli(tmp_path, url, lead_file, "approve", lure, "--yes", "--record", names[b]["audit"], "--field", "legal_name")
    assert r.exit_code == 0, r.output
    with vault.open(url, identity=staff) as v:
        assert v.reveal(lure) == "Samira Mansour"


def test_requests_of_an_older_release_are_refused_after_the_upgrade(url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A vault at database schema version 7 (no dv_reveals.sig, audit entries of the older
    form) opens with this release: the lead's open upgrades it to 8, the old request is
    refused with advice to ask again, a new one is signed and approved, and the log of both
    forms verifies."""
    lead, staff = Identity.generate(), Identity.generate()
    from vault import breakglass as B
    with monkeypatch.context() as m:  # what a release at version 7 made
        m.setattr(F, "DB_SCHEMA_VERSION", 7)
        m.delitem(migrations.MIGRATIONS, 8)
        m.setattr(migrations.upgrade, "__defaults__", (7,))
        m.setattr(B, "SIGNED_FROM", 7)
        with monkeypatch.context() as m7:
            m7.setattr(F, "STATEMENT_V3_FROM", 7)
            with vault.create(url, PASSPHRASE, lead=lead) as v:
                v.add_user(staff.public, "sam", "staff")
                rid = v.add(AMIRA)
                au = v.pseudonym(rid, "audit")
                as_release_v7(v)  # and the key statement and canary list that release wrote
        with vault.open(url, identity=staff) as v:
            old = v.request_reveal(rid, "legal_name", "hospital admission for Amira")
    _sql(url, "ALTER TABLE dv_reveals DROP COLUMN sig")
    raw = RawDB(url)
    assert raw.meta("db_schema_version") == b"7"
    raw.close()
    with vault.open(url, identity=lead) as v:
        assert v.audit_verify().ok
        with pytest.raises(vault.AccessDenied, match="ask them to request again"):
            v.approve_reveal(old, ttl_seconds=3600, record=au, field="legal_name")
    raw = RawDB(url)
    assert raw.meta("db_schema_version") == str(F.DB_SCHEMA_VERSION).encode()
    raw.close()
    with vault.open(url, identity=staff) as v:
        new = v.request_reveal(rid, "legal_name", "hospital admission for Amira, again")
    with vault.open(url, identity=lead) as v:
        v.approve_reveal(new, ttl_seconds=3600, record=au, field="legal_name")
        assert v.audit_verify().ok
    with vault.open(url, identity=staff) as v:
        assert v.reveal(new) == "Amira Haddad"


@pytest.mark.parametrize("req_id", ["a\ud800", 5, None])
def test_approve_refuses_a_malformed_request_id_before_the_database_or_the_log(team, req_id: object) -> None:  # type: ignore[no-untyped-def]
    """A lone surrogate reached the database driver (UnicodeEncodeError) and a refused
    attempt's entry kept the typed text; the id's form is now checked first, as reveal() does."""
    url, lead, _staff, _tool, a, _b, names = team
    with vault.open(url, identity=lead) as v:
        before = len(v.audit_entries(action="reveal_approve"))
        with pytest.raises(vault.NotFound, match="a request id is 16 hex digits"):
            v.approve_reveal(req_id, 3600, record=names[a]["audit"], field="email")  # type: ignore[arg-type]
        assert len(v.audit_entries(action="reveal_approve")) == before


def test_an_approval_whose_request_went_meanwhile_says_so(team, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The record is shredded (its requests go with it) between the approval's checks and
    its write: the call says nothing was granted, instead of reporting success."""
    url, lead, staff, tool, a, b, names = team
    with vault.open(url, identity=staff) as v:
        req = v.request_reveal(a, "legal_name", "hospital admission for Amira")
    with vault.open(url, identity=lead) as v:
        real = v._records.get

        def read_then_withdrawn(*args, **kw):  # type: ignore[no-untyped-def]
            out = real(*args, **kw)
            _sql(url, "DELETE FROM dv_reveals WHERE req_id = :r", r=req)  # what a concurrent shred does
            return out
        monkeypatch.setattr(v._records, "get", read_then_withdrawn)
        with pytest.raises(vault.NotFound, match="nothing granted"):
            v.approve_reveal(req, ttl_seconds=3600, record=names[a]["badge"], field="legal_name")
    assert _grants(url) == []
