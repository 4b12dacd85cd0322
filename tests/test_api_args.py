"""The public API's argument checks: a wrong type, size or a closed handle is a VaultError
subclass naming the argument, raised before anything is written (never a TypeError,
AttributeError or AssertionError from deep inside, and never after part of the work committed)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from vault.identity import Identity

import vault
from conftest import PASSPHRASE


def _misfits(calls: dict[str, Callable[[], object]], expected: type[BaseException],
             wrong_text: Callable[[BaseException], bool] = lambda e: False) -> dict[str, str]:
    """Name -> what went wrong, for each call that did not raise ``expected`` (or raised it
    with a text ``wrong_text`` refuses): empty when every call was refused as it should be."""
    wrong = {}
    for name, call in calls.items():
        try:
            call()
            wrong[name] = "no error"
        except expected as e:
            if wrong_text(e):
                wrong[name] = str(e)
        except Exception as e:
            wrong[name] = type(e).__name__
    return wrong


def _tables(url: str) -> dict[str, list[str]]:
    """Every dv_* table but the audit log, as rows: what a refused call must leave unchanged."""
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            names = [t for t in sa.inspect(c).get_table_names() if t.startswith("dv_") and t != "dv_audit"]
            return {t: sorted(map(repr, c.exec_driver_sql(f"SELECT * FROM {t}").fetchall())) for t in names}
    finally:
        eng.dispose()


@pytest.fixture
def lv(url: str) -> Iterator[vault.Vault]:
    """A vault created with a lead identity, opened by the lead, holding one record (``lv.rid``)."""
    lead = Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.rid = v.add({"legal_name": "Amira Haddad", "email": "a@example.org",  # type: ignore[attr-defined]
                       "departure": "2026-01-01"})
        yield v


# -- a closed handle ---------------------------------------------------------------------------------
def test_closed_handle_lifecycle_calls_raise_vault_closed(url: str) -> None:
    v = vault.create(url, PASSPHRASE)
    rid = v.add({"legal_name": "Amira Haddad"})
    ps = v.pseudonym(rid, "badge")
    v.close()
    calls = {
        "change_passphrase": lambda: v.change_passphrase("another long passphrase"),
        "split_recovery": lambda: v.split_recovery(2, 3),
        "recovery_shares": lambda: v.recovery_shares(),
        "set_retention": lambda: v.set_retention(rid, dt.date(2030, 1, 1)),
        "purge_expired": lambda: v.purge_expired(),
        "retention_warnings": lambda: v.retention_warnings(),
        "subject_export": lambda: v.subject_export(ps),
        "subject_erase": lambda: v.subject_erase(ps),
        "recovery_actor_id": lambda: v.recovery_actor_id,
        "canary_count": lambda: v.canary_count(),
    }
    assert _misfits(calls, vault.VaultClosed) == {}


# -- progress callbacks --------------------------------------------------------------------------------
@pytest.mark.parametrize("call", ["rotate", "reindex"])
def test_non_callable_progress_refused_before_anything_is_written(url: str, call: str) -> None:
    with vault.create(url, PASSPHRASE) as v:
        v.add({"legal_name": "Amira Haddad", "email": "a@example.org"})
        before = _tables(url)
        with pytest.raises(vault.ValidationError, match="progress"):
            getattr(v, call)(progress=5)
        assert _tables(url) == before
        assert v.status()["index"]["reindex_pending"] is False


def test_non_callable_progress_refused_by_every_call_that_takes_one(v: vault.Vault, tmp_path: Path,
                                                                     url2: str) -> None:
    v.add({"legal_name": "Amira Haddad"})
    calls = {
        "export": lambda: v.export(["badge_name"], progress=5),
        "import_rows": lambda: v.import_rows([{"legal_name": "X"}], progress=5),
        "backup": lambda: v.backup(tmp_path / "b.dvb", progress=5),
        "verify": lambda: v.verify(progress=5),
        "move": lambda: vault.move(v, url2, PASSPHRASE, lead=Identity.generate(), progress=5),
    }
    for name, call in calls.items():
        with pytest.raises(vault.ValidationError, match="progress"):
            call()
    assert v.count() == 1
    assert not (tmp_path / "b.dvb").exists()


# -- batch sizes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("call", ["rotate", "reindex"])
@pytest.mark.parametrize("batch", [2**63, 1_000_001, 0, True, 2.0])
def test_batch_out_of_range_refused_before_anything_is_written(url: str, call: str, batch: object) -> None:
    with vault.create(url, PASSPHRASE) as v:
        v.add({"legal_name": "Amira Haddad", "email": "a@example.org"})
        before = _tables(url)
        with pytest.raises(vault.ValidationError, match="batch"):
            getattr(v, call)(batch=batch)
        assert _tables(url) == before
        assert v.status()["index"]["reindex_pending"] is False


def test_largest_batch_is_accepted(v: vault.Vault) -> None:
    v.add({"legal_name": "Amira Haddad"})
    assert v.reindex(batch=1_000_000) == 1


# -- path arguments ---------------------------------------------------------------------------------------
def test_path_arguments_are_checked(url: str, tmp_path: Path) -> None:
    """None, a NUL and a lone surrogate in a path escaped as TypeError, ValueError and
    UnicodeEncodeError (the last quoting the path); each is a ValidationError naming the argument."""
    lead = Identity.generate()
    nul, surrogate = str(tmp_path / "a\x00b"), str(tmp_path / "a\ud800b")
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add({"legal_name": "Amira Haddad"})
        before = _tables(url)
        calls = {
            "backup(None)": (lambda: v.backup(None), "path"),  # type: ignore[arg-type]
            "backup(NUL)": (lambda: v.backup(nul), "path"),
            "backup(surrogate)": (lambda: v.backup(surrogate), "path"),
            "backup(ledger=5)": (lambda: v.backup(tmp_path / "b.dvb", ledger=5), "ledger"),  # type: ignore[arg-type]
            "pin(None)": (lambda: v.pin(None), "path"),  # type: ignore[arg-type]
            "witness(None)": (lambda: v.witness(None), "path"),  # type: ignore[arg-type]
            "witness(NUL)": (lambda: v.witness(nul), "path"),
            "restore(path=None)": (lambda: vault.restore(f"sqlite:///{tmp_path / 'r.vault'}", None,  # type: ignore
                                                         passphrase=PASSPHRASE), "path"),
            "restore(url=None)": (lambda: vault.restore(None, tmp_path / "x.dvb",  # type: ignore[arg-type]
                                                        passphrase=PASSPHRASE), "location"),
            "restore(ledger=NUL)": (lambda: vault.restore(url, tmp_path / "x.dvb", passphrase=PASSPHRASE,
                                                          ledger=nul), "ledger"),
            "open(pins=5)": (lambda: vault.open(url, identity=lead, pins=5), "pins"),  # type: ignore[arg-type]
            "open(pins=NUL)": (lambda: vault.open(url, identity=lead, pins=nul), "pins"),
            "create(NUL path)": (lambda: vault.create(nul + ".vault", PASSPHRASE), "location"),
            "create(surrogate path)": (lambda: vault.create(surrogate + ".vault", PASSPHRASE), "location"),
            "open(surrogate URL)": (lambda: vault.open("sqlite:///" + surrogate, PASSPHRASE), "location"),
            "Identity.load(None)": (lambda: Identity.load(None, "pw"), "path"),  # type: ignore[arg-type]
            "Identity.load(surrogate)": (lambda: Identity.load(surrogate, "pw"), "path"),
            "Identity.save(None)": (lambda: Identity.generate().save(None, "pw pw pw"), "path"),  # type: ignore
            "Identity.save(NUL)": (lambda: Identity.generate().save(nul, "pw pw pw"), "path"),
        }
        wrong = {}
        for name, (call, arg) in calls.items():
            wrong.update(_misfits({name: call}, vault.ValidationError,
                                  lambda e, arg=arg: arg not in str(e) or "\ud800" in str(e)))
        assert wrong == {}
        assert _tables(url) == before
        assert not (tmp_path / "b.dvb").exists()


# -- identity and schema objects --------------------------------------------------------------------------
def test_identity_arguments_of_the_wrong_type(url: str, url2: str) -> None:
    """A name where an Identity belongs failed with AttributeError deep inside (after create
    had begun); a missing source vault likewise."""
    with pytest.raises(vault.ValidationError, match="lead"):
        vault.create(url, PASSPHRASE, lead="lead")  # type: ignore[arg-type]
    with pytest.raises(vault.ValidationError, match="lead"):
        vault.create(url, PASSPHRASE, lead=Identity.generate().public)  # type: ignore[arg-type]
    vault.create(url, PASSPHRASE).close()  # nothing was left behind by the refusals
    with pytest.raises(vault.ValidationError, match="identity"):
        vault.open(url, identity="lead")  # type: ignore[arg-type]
    with vault.open(url, PASSPHRASE) as v:
        with pytest.raises(vault.ValidationError, match="lead"):
            vault.move(v, url2, PASSPHRASE, lead="lead")  # type: ignore[arg-type]
    with pytest.raises(vault.ValidationError, match="src"):
        vault.move(None, url2, PASSPHRASE, lead=Identity.generate())  # type: ignore[arg-type]
    with pytest.raises(vault.NotFound):
        vault.open(url2, PASSPHRASE)  # no vault was made at the destination


def test_public_identity_identity_and_schema_text_of_the_wrong_type() -> None:
    from vault.identity import IdentityError, PublicIdentity

    with pytest.raises(IdentityError):
        PublicIdentity.from_line(None)  # type: ignore[arg-type]
    with pytest.raises(IdentityError):
        PublicIdentity.from_line(b"dvault1abc")  # type: ignore[arg-type]
    with pytest.raises(IdentityError):
        Identity(b"short", b"short")
    with pytest.raises(IdentityError):
        Identity("x" * 32, "y" * 32)  # type: ignore[arg-type]
    with pytest.raises(vault.SchemaError):
        vault.load_schema(5)  # type: ignore[arg-type]
    with pytest.raises(vault.SchemaError):
        vault.load_schema(b"[schema]")  # type: ignore[arg-type]


# -- collections and names ----------------------------------------------------------------------------------
def test_collection_and_name_arguments_of_the_wrong_type(lv: vault.Vault, url: str) -> None:
    before, users = _tables(url), len(lv.users())
    calls = {
        "import_rows(None)": lambda: lv.import_rows(None),  # type: ignore[arg-type]
        "import_rows(a record)": lambda: lv.import_rows({"legal_name": "X"}),  # type: ignore[arg-type]
        "add_many(5)": lambda: lv.add_many(5),  # type: ignore[arg-type]
        "require_writable([add])": lambda: lv.require_writable(["add"]),  # type: ignore[arg-type]
        "rotate(5)": lambda: lv.rotate(5),  # type: ignore[arg-type]
        "rotate([5])": lambda: lv.rotate([5]),  # type: ignore[list-item]
        "rotate(str)": lambda: lv.rotate("identity"),
        "add_user(None)": lambda: lv.add_user(None, "noor", "staff"),  # type: ignore[arg-type]
        "add_user(Identity)": lambda: lv.add_user(Identity.generate(), "noor", "staff"),  # type: ignore
        "add_user(role=[staff])": lambda: lv.add_user(Identity.generate().public, "noor", ["staff"]),  # type: ignore
        "add_user(name=5)": lambda: lv.add_user(Identity.generate().public, 5, "staff"),  # type: ignore[arg-type]
    }
    assert _misfits(calls, vault.ValidationError) == {}
    assert _tables(url) == before and len(lv.users()) == users


# -- scalar arguments ------------------------------------------------------------------------------------
@pytest.mark.parametrize("against", [5, b"dvcp1:1:abc", 0, ["dvcp1"]])
def test_audit_verify_refuses_a_checkpoint_that_is_not_text(v: vault.Vault, against: object) -> None:
    from vault.audit import AuditError

    with pytest.raises(AuditError, match="not a checkpoint"):
        v.audit_verify(against)  # type: ignore[arg-type]
    assert v.audit_verify().ok and v.audit_verify("").ok  # none given


@pytest.mark.parametrize("kdf", [5, "t=3", (3, 65536, 4), 0])
def test_kdf_of_the_wrong_type(url: str, kdf: object, tmp_path: Path) -> None:
    """kdf=5 failed with AttributeError in the floor check (and a falsy one was taken for the default)."""
    with pytest.raises(vault.ValidationError, match="kdf"):
        vault.create(url, PASSPHRASE, kdf=kdf)  # type: ignore[arg-type]
    with vault.create(url, PASSPHRASE) as v:
        with pytest.raises(vault.ValidationError, match="kdf"):
            v.change_passphrase("another long passphrase", kdf=kdf)  # type: ignore[arg-type]
        with pytest.raises(vault.ValidationError, match="kdf"):
            v.split_recovery(2, 3, kdf=kdf)  # type: ignore[arg-type]
        assert v.recovery_shares() is None
    with pytest.raises(vault.ValidationError, match="kdf"):
        Identity.generate().save(tmp_path / "id.dvid", "pw pw pw pw", kdf=kdf)  # type: ignore[arg-type]
    with pytest.raises(vault.ValidationError, match="kdf"):
        vault.create(url, PASSPHRASE, kdf=vault.KdfParams(t=True, m_kib=65536, p=4))  # checked before the place
    with vault.open(url, PASSPHRASE) as v:  # the passphrase is unchanged
        assert v.count() == 0


def test_plan_sizes_refuse_bool(url: str) -> None:
    """True was taken as a population (or k) of 1."""
    for sizes in ({"population": True}, {"k": True}, {"population": False}):
        with pytest.raises(vault.ValidationError, match="population and k"):
            vault.create(url, PASSPHRASE, **sizes)  # type: ignore[arg-type]
    with vault.create(url, PASSPHRASE) as v:
        v.add({"legal_name": "Amira Haddad"})
        before = _tables(url)
        for sizes in ({"population": True}, {"k": True}):
            with pytest.raises(vault.ValidationError, match="population and k"):
                v.reindex(**sizes)  # type: ignore[arg-type]
        assert _tables(url) == before


# -- messages ------------------------------------------------------------------------------------------------
def test_an_unknown_purpose_is_named_only_when_it_is_short_text(v: vault.Vault) -> None:
    """The message echoed the argument as given: a record's values passed by mistake, or all
    of a 100 KB string."""
    rid = v.add({"legal_name": "Amira Haddad"})
    with pytest.raises(vault.ValidationError) as info:
        v.pseudonym(rid, {"legal_name": "Amira Haddad"})  # type: ignore[arg-type]
    assert "Amira" not in str(info.value) and "known: badge" in str(info.value)
    with pytest.raises(vault.ValidationError) as info:
        v.export(["badge_name"], purpose="x" * 100_000)
    assert len(str(info.value)) < 500
    with pytest.raises(vault.ValidationError) as info:
        v.pseudonym(rid, "line\nforged")
    assert "\n" not in str(info.value)
    with pytest.raises(vault.ValidationError, match="unknown purpose 'bdage'"):
        v.pseudonym(rid, "bdage")
