"""Bulk work on several cores (vault._parallel): same results as in-process, same
all-or-nothing behaviour, nothing but ciphertext and index terms crossing processes."""

from __future__ import annotations

import pytest

import vault
from conftest import PASSPHRASE
from vault import _parallel as PAR


def _rows(n: int) -> list[dict]:
    return [{"legal_name": f"Amira Haddad {i}", "email": f"amira{i}@example.org", "phone": f"+44 20 7946 {i:04d}",
             "badge_name": f"A{i}", "risk_notes": "x" * (i % 50)} for i in range(n)]


@pytest.fixture
def forked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the forked path on small batches, in several chunks, with two workers."""
    if PAR.worker_count() < 2:
        monkeypatch.setattr(PAR, "worker_count", lambda: 2)
    monkeypatch.setattr(PAR, "MIN_ITEMS", 0)
    monkeypatch.setattr(PAR, "CHUNK", 7)


def test_forked_add_many_matches_in_process(url: str, forked: None, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _rows(40)
    seen: list[tuple[int, int]] = []
    with vault.create(url, PASSPHRASE) as v:
        ids = v._records.add_many(rows, lambda done, total: seen.append((done, total)))
        assert len(set(ids)) == 40
        assert seen[-1] == (40, 40) and [d for d, _ in seen] == sorted(d for d, _ in seen)
        for rid, row in zip(ids, rows):  # ids come back in row order, each record is its row
            rec = v.get(rid)
            assert {k: rec[k] for k in row} == row
        assert [r.id for r in v.find(email="amira17@example.org")] == [ids[17]]
        assert [r.id for r in v.find_tokens(legal_name="haddad 23")] == [ids[23]]
        monkeypatch.setattr(PAR, "MIN_ITEMS", 10**9)  # the same rows in-process: same searches
        more = v.add_many(_rows(3))
        assert {r.id for r in v.find(email="amira2@example.org")} == {ids[2], more[2]}


def test_forked_add_many_is_all_or_nothing(url: str, forked: None) -> None:
    rows = _rows(30)
    rows[25]["date_of_birth"] = "not a date"
    rows[26]["no_such_field"] = "x"
    with vault.create(url, PASSPHRASE) as v:
        with pytest.raises(vault.ValidationError, match=r"^row 26: .*date_of_birth"):
            v.add_many(rows)
        assert v.count() == 0
        assert v.find(email="amira1@example.org") == []


def test_workers_really_fork(url: str, forked: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunks are sealed in other processes (so the parallel path is what ran)."""
    import os
    pids: set[int] = set()
    with vault.create(url, PASSPHRASE) as v:
        real = v._records.row_sealer

        def spying(*a, **kw):  # type: ignore[no-untyped-def]
            one = real(*a, **kw)

            def spy(values, where):  # type: ignore[no-untyped-def]
                if os.getpid() == parent:
                    pids.add(os.getpid())
                return one(values, where)
            return spy
        parent = os.getpid()
        monkeypatch.setattr(v._records, "row_sealer", spying)
        v.add_many(_rows(21))
        assert pids == set()  # no row was sealed in this process
        assert v.count() == 21


def test_one_core_means_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PAR.os, "sched_getaffinity", lambda _pid: {0})
    assert PAR.worker_count() == 1
    with PAR.pool(lambda x: x * 2, items=10**9) as p:
        assert isinstance(p, PAR.InProcess) and list(p.imap([1, 2])) == [2, 4]


@pytest.mark.parametrize("reencrypt", [False, True])
def test_forked_rotation_and_reindex(url: str, forked: None, reencrypt: bool,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    from vault import rotation
    rows = _rows(30)
    parent, in_parent = os.getpid(), []

    def here(fn):  # type: ignore[no-untyped-def]
        def spy(*a, **kw):  # type: ignore[no-untyped-def]
            if os.getpid() == parent:
                in_parent.append(fn.__name__)
            return fn(*a, **kw)
        return spy
    with vault.create(url, PASSPHRASE) as v:
        ids = v.add_many(rows)
        monkeypatch.setattr(rotation, "_refreshed", here(rotation._refreshed))
        monkeypatch.setattr(v._search, "index_terms", here(v._search.index_terms))
        stats = v.rotate(reencrypt=reencrypt, batch=11)  # batches split over two workers
        assert stats["reencrypted" if reencrypt else "rewrapped"] == 30
        for rid, row in zip(ids, rows):
            rec = v.get(rid)
            assert {k: rec[k] for k in row} == row
        assert [r.id for r in v.find(phone="+442079460012")] == [ids[12]]
        assert v.reindex(population=1000, batch=4) == 30
        assert [r.id for r in v.find_tokens(legal_name="Haddad 29")] == [ids[29]]
        assert in_parent == []  # every rewrap and every index term was computed in a worker


def test_forked_rotation_leaves_a_tampered_record(url: str, forked: None) -> None:
    """A worker's authentication failure reaches the parent: the envelope is left as it is
    (not laundered), the rest of its row rewrapped, and the row counted."""
    from rawdb import RawDB
    with vault.create(url, PASSPHRASE) as v:
        ids = v.add_many(_rows(20))
        raw = RawDB(url)
        envs_a, envs_b = raw.envs(ids[3]), raw.envs(ids[17])
        envs_b["identity"] = envs_a["identity"]
        raw.set_envs(ids[17], envs_b)
        assert v.rotate(batch=20)["unreadable"] == 1
        assert raw.envs(ids[17])["identity"] == envs_b["identity"]  # not laundered into a fresh wrap
        with pytest.raises(vault.IntegrityError) as info:
            v.get(ids[17])
        assert info.value.record_id == ids[17]
        assert all(v.get(i) for i in ids if i != ids[17])
        raw.close()


def test_a_failed_task_is_rerun_in_the_parent(forked: None) -> None:
    """A worker's failure never crosses the pipe: the parent runs that arg itself, so a
    deterministic error is raised here as it would be without workers, and a failure
    that only happens over there (say, memory) costs a re-run, not the job."""
    import os
    parent = os.getpid()

    def flaky(x: int) -> int:
        if os.getpid() != parent and x % 3 == 0:
            raise MemoryError("worker only")
        return x * 10

    with PAR.pool(flaky, items=10) as p:
        assert isinstance(p, PAR.Forked)
        assert list(p.imap(range(10))) == [x * 10 for x in range(10)]

    raised_here: list[int] = []  # a worker's appends stay in the worker's copy of this list

    def bad(x: int) -> int:
        if x == 4:
            raised_here.append(os.getpid())
            raise vault.ValidationError("row 5: field 'age' is not an integer")
        return x

    with PAR.pool(bad, items=10) as p, pytest.raises(vault.ValidationError, match="^row 5: "):
        list(p.imap(range(10)))
    assert raised_here == [parent]  # raised by the parent's re-run, not sent back through the pipe


def test_a_multithreaded_process_never_forks(forked: None) -> None:
    """Another thread could hold a lock at the moment of a fork, and the child would then
    wait on it forever: with other threads running, the work stays in this process."""
    import threading
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        with PAR.pool(lambda x: x * 2, items=10**6) as p:
            assert isinstance(p, PAR.InProcess) and list(p.imap([1, 2])) == [2, 4]
    finally:
        release.set()
        other.join()
    with PAR.pool(lambda x: x * 2, items=10**6) as p:  # alone again: forks
        assert isinstance(p, PAR.Forked) and list(p.imap([1, 2])) == [2, 4]


@pytest.mark.timeout(60)
def test_a_worker_killed_mid_chunk_raises_instead_of_waiting_forever(forked: None) -> None:
    """A worker that dies (SIGKILL, the OOM killer) while it holds a chunk: the pool must
    raise, not wait for an answer that never comes (multiprocessing.Pool waited forever)."""
    import os
    import signal
    parent = os.getpid()

    def task(x: int) -> int:
        if os.getpid() != parent and x == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    with pytest.raises(PAR.WorkerDied):
        with PAR.pool(task, items=10) as p:
            assert isinstance(p, PAR.Forked)
            list(p.imap(range(10)))
    assert isinstance(PAR.WorkerDied("x"), vault.VaultError)


@pytest.mark.timeout(120)
def test_add_many_with_a_killed_worker_writes_nothing(url: str, forked: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal
    parent = os.getpid()
    with vault.create(url, PASSPHRASE) as v:
        real = v._records.row_sealer

        def dying(*a, **kw):  # type: ignore[no-untyped-def]
            one = real(*a, **kw)

            def dies(values, where):  # type: ignore[no-untyped-def]
                if os.getpid() != parent and values.get("badge_name") == "A23":
                    os.kill(os.getpid(), signal.SIGKILL)
                return one(values, where)
            return dies
        monkeypatch.setattr(v._records, "row_sealer", dying)
        with pytest.raises(PAR.WorkerDied):
            v.add_many(_rows(40))
        monkeypatch.undo()
        assert v.count() == 0 and v.find(email="amira1@example.org") == []
        assert len(v.add_many(_rows(3))) == 3  # the handle still works
