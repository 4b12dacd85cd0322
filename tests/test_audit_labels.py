"""Audit entries are signed under their own label, with the form marked inside the hash
(docs/format.md 13a): entries of older releases still verify, an entry of the older form
after a labelled one is refused, and a signed checkpoint must come from a known actor."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import vault
from conftest import PASSPHRASE
from rawdb import RawDB
from vault import _crypto as C
from vault import audit as A
from vault.identity import Identity


@pytest.fixture
def logged(url: str):  # type: ignore[no-untyped-def]
    lead = Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        rid = v.add({"legal_name": "Amira Haddad", "email": "amira@example.org"})
    with vault.open(url, identity=lead) as v:
        v.get(rid)  # the last entry: the lead's
    return url, lead


def _entries(url: str) -> list[A.Entry]:
    raw = RawDB(url)
    with raw.engine.begin() as c:
        rows = c.exec_driver_sql("SELECT seq, prev, at, actor, action, target, detail, reason, hash, sig "
                                 "FROM dv_audit ORDER BY seq").all()
    raw.close()
    return [A.Entry(*[bytes(x) if isinstance(x, memoryview) else x for x in r]) for r in rows]


def _verify(url: str, lead: Identity, cp: str | None = None) -> A.Verdict:
    with vault.open(url, identity=lead) as v:
        return v.audit_verify(cp)


def test_new_entries_are_signed_under_the_audit_label(logged) -> None:  # type: ignore[no-untyped-def]
    url, lead = logged
    entries = _entries(url)
    signed = [e for e in entries if e.sig != bytes(64)]
    assert signed and all(A.entry_form(e) is True for e in entries)
    for e in signed:
        C.ed25519_verify(e.actor[32:], b"dvault/v1/audit-sig" + e.hash, e.sig)
        with pytest.raises(C.AuthFailure):
            C.ed25519_verify(e.actor[32:], e.hash, e.sig)  # not a signature over the bare hash
    assert _verify(url, lead).ok


def test_an_entry_of_the_older_form_after_labelled_ones_is_refused(logged) -> None:  # type: ignore[no-untyped-def]
    """The lead's own last entry, rewritten in the older form with a genuine bare signature
    (what a release before the label wrote, or what someone who got the lead's key to sign
    a bare hash elsewhere could make): verify names it, though hash and signature match."""
    url, lead = logged
    last = _entries(url)[-1]
    assert last.actor == lead.public.raw
    h = A.entry_hash(last.seq, last.prev, last.at, last.actor, last.action, last.target, last.detail, last.reason)
    raw = RawDB(url)
    with raw.engine.begin() as c:
        c.execute(sa.text("UPDATE dv_audit SET hash = :h, sig = :s WHERE seq = :q"),
                  {"h": h, "s": lead.sign(h), "q": last.seq})
    raw.close()
    verdict = _verify(url, lead)
    assert not verdict.ok and verdict.first_bad == last.seq and "older, unlabelled form" in verdict.problem


def test_a_labelled_entry_signed_over_the_bare_hash_is_refused(logged) -> None:  # type: ignore[no-untyped-def]
    url, lead = logged
    last = _entries(url)[-1]
    raw = RawDB(url)
    with raw.engine.begin() as c:
        c.execute(sa.text("UPDATE dv_audit SET sig = :s WHERE seq = :q"), {"s": lead.sign(last.hash), "q": last.seq})
    raw.close()
    verdict = _verify(url, lead)
    assert not verdict.ok and verdict.first_bad == last.seq and "signature" in verdict.problem


def test_a_checkpoint_signed_by_an_unknown_key_is_refused(logged) -> None:  # type: ignore[no-untyped-def]
    """A checkpoint carries its signer's key; someone who rewrote the log signs a checkpoint
    of the rewritten head with a key of their own. Its signature verifies, but the signer
    is neither an enrolled user nor the recovery actor: refused."""
    url, lead = logged
    seq, h = _entries(url)[-1].seq, _entries(url)[-1].hash
    eve = Identity.generate()
    forged = str(A.make_checkpoint(seq, h, eve.public.raw, eve.sign))
    assert A.Checkpoint.parse(forged).sig  # the signature itself is fine
    verdict = _verify(url, lead, forged)
    assert not verdict.ok and "checkpoint signed by a key" in verdict.problem
    with vault.open(url, identity=lead) as v:
        real = v.audit_checkpoint()
    assert _verify(url, lead, real).ok
    with vault.open(url, PASSPHRASE) as v:  # the recovery actor's checkpoint is a known actor's too
        by_recovery = v.audit_checkpoint()
    assert _verify(url, lead, by_recovery).ok
