"""What the faster write paths (issue 22, "fast writes") must still do: the checks a write
skips doing twice still refuse edited bytes, a small add follows a plan changed elsewhere,
and the forked add_many keeps only a few chunks in flight."""

from __future__ import annotations

import pytest

import vault
from conftest import PASSPHRASE
from rawdb import RawDB
from vault import _crypto as C
from vault import _parallel as PAR


def _rows(n: int, tag: str = "p") -> list[dict]:
    return [{"badge_name": f"{tag}{i}", "email": f"{tag}{i}@example.org", "legal_name": f"Person {tag} {i}"}
            for i in range(n)]


def test_a_remembered_signature_is_only_for_the_same_bytes() -> None:
    seed = C.random_bytes(32)
    pk, sign = C.ed25519_public(seed), C.Signer(seed)
    msg = b"dvault test statement"
    sig = sign(msg)
    C.ed25519_verify_again(pk, msg, sig)  # remembered now
    C.ed25519_verify_again(pk, msg, sig)
    for other in [(pk, msg + b"!", sig), (pk, msg, bytes([sig[0] ^ 1]) + sig[1:]),
                  (C.ed25519_public(C.random_bytes(32)), msg, sig)]:
        for _ in range(2):  # a failure is not remembered either
            with pytest.raises(C.AuthFailure):
                C.ed25519_verify_again(*other)
    assert all(key == (pk, msg, sig) or C.ed25519_verify(*key) is None for key in C._VERIFIED)


def test_the_verified_cache_is_bounded() -> None:
    seed = C.random_bytes(32)
    pk, sign = C.ed25519_public(seed), C.Signer(seed)
    for i in range(3 * C._VERIFIED_MAX):
        m = b"m%d" % i
        C.ed25519_verify_again(pk, m, sign(m))
    assert len(C._VERIFIED) <= C._VERIFIED_MAX


def test_an_edited_statement_is_refused_by_the_next_add_after_good_ones(url: str) -> None:
    """The lead's adds re-check the key statement and user table every time; the
    signature check remembered from the previous add must not vouch for edited bytes."""
    v = vault.create(url, PASSPHRASE)
    raw = RawDB(url)
    try:
        v.add_many(_rows(3))
        v.add({"badge_name": "x", "email": "x@example.org"})  # the statement, checked and signed again
        stmt = raw.meta("keys_stmt")
        raw.set_meta("keys_stmt", stmt.replace(b"\ndb ", b"\ndb 1", 1))
        with pytest.raises(vault.IntegrityError):
            v.add({"badge_name": "y", "email": "y@example.org"})
        raw.set_meta("keys_stmt", stmt)
        v.add({"badge_name": "z", "email": "z@example.org"})
        sig = raw.meta("keys_stmt_sig")
        raw.set_meta("keys_stmt_sig", sig[:-1] + bytes([sig[-1] ^ 1]))
        with pytest.raises(vault.IntegrityError):
            v.add({"badge_name": "w", "email": "w@example.org"})
        assert v.count() == 5  # neither refused add wrote anything
    finally:
        raw.close()
        v.close()


def test_a_small_add_follows_a_reindex_run_elsewhere(url: str) -> None:
    """A small add reads the plan once, in its write transaction (no read before it): a
    plan another handle changed since is followed there, not written under the old one."""
    with vault.create(url, PASSPHRASE) as v:
        v.add_many(_rows(5))
    a = vault.open(url, PASSPHRASE)
    try:
        with vault.open(url, PASSPHRASE) as b:
            b.reindex(population=5000)
        new = a.add({"badge_name": "new", "email": "new@example.org"})  # A's first call since
        assert [r.id for r in a.find(email="new@example.org")] == [new]
    finally:
        a.close()
    with vault.open(url, PASSPHRASE) as v:
        assert [r.id for r in v.find(email="new@example.org")] == [new]


def test_forked_imap_keeps_a_bounded_window(monkeypatch: pytest.MonkeyPatch) -> None:
    if PAR.worker_count() < 2:
        monkeypatch.setattr(PAR, "worker_count", lambda: 2)
    with PAR.pool(lambda x: x * 3, items=10**6) as p:
        assert isinstance(p, PAR.Forked)
        submitted: list[int] = []
        real = p._executor.submit

        def counting(fn, *args):  # type: ignore[no-untyped-def]
            submitted.append(args[0])
            return real(fn, *args)
        monkeypatch.setattr(p._executor, "submit", counting)
        it = p.imap(range(40))
        assert len(submitted) == p.size * PAR.AHEAD  # started before the first next()
        got = []
        for x in it:
            got.append(x)
            assert len(submitted) - len(got) <= p.size * PAR.AHEAD  # never more in flight
        assert got == [x * 3 for x in range(40)] and submitted == list(range(40))


def test_forked_add_many_with_a_small_window_writes_every_row(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if PAR.worker_count() < 2:
        monkeypatch.setattr(PAR, "worker_count", lambda: 2)
    monkeypatch.setattr(PAR, "MIN_ITEMS", 0)
    monkeypatch.setattr(PAR, "CHUNK", 3)
    monkeypatch.setattr(PAR, "AHEAD", 1)
    with vault.create(url, PASSPHRASE) as v:
        ids = v.add_many(_rows(31))
        assert len(set(ids)) == 31 and v.count() == 31
        assert [r.id for r in v.find(email="p29@example.org")] == [ids[29]]
        assert v.get(ids[30])["badge_name"] == "p30"


@pytest.mark.parametrize("multiline", [False, True])
@pytest.mark.parametrize("max_length", [4, 1000])
def test_the_ascii_fast_path_of_a_text_value_is_clean_text(multiline: bool, max_length: int) -> None:
    """Field.canonical's shortcut for printable ASCII gives clean_text's answer (the value,
    or the same error) for every ASCII string, control characters, tab and line feed too."""
    import random

    from vault.schema import Field

    from vault import values as VAL
    rng = random.Random(max_length + multiline)
    f = Field(name="x", cls="public", type="text", max_length=max_length, multiline=multiline)

    def outcome(fn, s: str):  # type: ignore[no-untyped-def]
        try:
            return fn(s)
        except vault.ValidationError as e:
            return ("refused", str(e))
    samples = [chr(i) for i in range(128)] + ["Amira Haddad", "a\tb", "a\nb", "x" * 5, "x" * 1001]
    samples += ["".join(chr(rng.randrange(128)) for _ in range(rng.randrange(9))) for _ in range(3000)]
    for s in samples:
        want = outcome(lambda t: VAL.clean_text("x", t, multiline=multiline, max_length=max_length), s)
        assert outcome(f.canonical, s) == want, repr(s)
