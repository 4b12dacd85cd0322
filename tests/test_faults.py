"""Faults under a write: a full disk, a read-only database, a PostgreSQL connection ended
mid-transaction, an unreadable identity file, a vault folder that goes away. Each is one
clear error (vault.Unavailable; exit 6 from the CLI), nothing is half-written, and the vault
opens afterwards and verifies with every record committed before the fault intact.

A real full or read-only file system needs a small tmpfs, which only root with
CAP_SYS_ADMIN may mount: those cases are skipped elsewhere, and SQLite's own size limit
(``PRAGMA max_page_count``, the same SQLITE_FULL a full disk gives) runs everywhere."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from vault.store import SQLITE_PAGE_SIZE, Store

import vault
from conftest import PASSPHRASE, run_dvault

PERSON = {"legal_name": "Amira Haddad", "passport_number": "P83526008", "risk_level": "high",
          "risk_notes": "followed to the hotel " * 8, "badge_name": "Amira", "email": "amira@example.org",
          "phone": "+961 1 234 567", "dietary": ["vegan"], "pronouns": "she/her"}


def people(n: int, tag: str = "p") -> list[dict[str, Any]]:
    return [{**PERSON, "email": f"{tag}{i}@example.org", "badge_name": f"{tag}{i}"} for i in range(n)]


def snapshot(url: str) -> dict[str, dict[str, Any]]:
    with vault.open(url, PASSPHRASE) as v:
        return {r.id: dict(r) for r in v.records()}


def intact(url: str, before: dict[str, dict[str, Any]]) -> None:
    """The vault opens, verifies, and holds exactly what was committed before the fault."""
    with vault.open(url, PASSPHRASE) as v:
        report = v.verify()
        assert report.ok, str(report)
    assert snapshot(url) == before


def dvault(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("DVAULT_RECOVERY_PASSPHRASE", PASSPHRASE)  # consumed at each read
    return run_dvault(monkeypatch, capsys, *args)


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for k in [k for k in os.environ if k.startswith("DVAULT_") and k != "DVAULT_TEST_PG_URL"]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("dvault: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- a size-limited SQLite database (runs everywhere) -------------------------------------------
@contextlib.contextmanager
def page_limit(extra_pages: int) -> Iterator[None]:
    """Every SQLite connection made inside may grow its database by ``extra_pages`` pages
    only: past that, writes fail with SQLITE_FULL, as on a full disk."""
    def limit(dbapi_conn: Any, _record: Any) -> None:
        if type(dbapi_conn).__module__.startswith("sqlite3"):
            cur = dbapi_conn.cursor()
            pages = cur.execute("PRAGMA page_count").fetchone()[0]
            cur.execute(f"PRAGMA max_page_count = {pages + extra_pages}")
            cur.close()
    sa.event.listen(sa.engine.Engine, "connect", limit)
    try:
        yield
    finally:
        sa.event.remove(sa.engine.Engine, "connect", limit)


def test_size_limit_during_add_many(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'full.vault'}"
    with vault.create(url, PASSPHRASE) as v:
        v.add_many(people(20))
    before = snapshot(url)
    with page_limit(8), vault.open(url, PASSPHRASE) as v:
        with pytest.raises(vault.Unavailable, match="the disk is full") as e:
            v.add_many(people(400, "q"))
        assert "amira" not in str(e.value).lower()
        assert v.count() == 20  # the same handle goes on reading
    intact(url, before)


def test_size_limit_during_import_cli(tmp_path: Path, cli_env: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'full.vault'}"
    with vault.create(url, PASSPHRASE) as v:
        v.add_many(people(10))
    before = snapshot(url)
    rows = ["Name,Badge,Notes"] + [f"Person {i},P{i},{'notes ' * 30}" for i in range(600)]
    (tmp_path / "forms.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "map.toml").write_text('[columns]\n"Name" = "legal_name"\n"Badge" = "badge_name"\n'
                                       '"Notes" = "risk_notes"\n')
    with page_limit(8):
        code, out, err = dvault(monkeypatch, capsys, "import", "forms.csv", "--mapping", "map.toml", "--vault", url,
                                "--recovery", "--reason", "registration import")
    assert code == 6, err
    assert "the disk is full" in one_error_line(err) and "Person" not in out + err
    intact(url, before)


# -- a real small file system: root with CAP_SYS_ADMIN only -------------------------------------
@contextlib.contextmanager
def small_fs(kib: int) -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="dvault-fs-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k,mode=0700", "tmpfs", str(where)],
                          capture_output=True)
    if done.returncode != 0:
        where.rmdir()
        pytest.skip("mounting a small tmpfs needs root with CAP_SYS_ADMIN (the page-limit tests cover SQLITE_FULL)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def fill(where: Path, leave_kib: int) -> Path:
    """A filler file taking all but about ``leave_kib`` of the file system."""
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize - leave_kib * 1024
    filler = where / "filler"
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):
            f.write(b"\0" * max(0, free))
    return filler


def test_disk_full_during_add_many_and_rotate(tmp_path: Path) -> None:
    with small_fs(4096) as where:
        url = f"sqlite:///{where / 'v.vault'}"
        with vault.create(url, PASSPHRASE) as v:
            v.add_many(people(60))
        before = snapshot(url)
        # room for twelve pages: an open's audit entry fits (each commit writes whole pages
        # to the WAL), 500 new people do not
        filler = fill(where, 12 * SQLITE_PAGE_SIZE // 1024)
        with vault.open(url, PASSPHRASE) as v:
            with pytest.raises(vault.Unavailable, match="disk is full"):
                v.add_many(people(500, "q"))
            with pytest.raises(vault.Unavailable, match="disk is full"):
                v.rotate(reencrypt=True, batch=20)
        filler.unlink()
        intact(url, before)
        with vault.open(url, PASSPHRASE) as v:  # the interrupted rotation resumes and finishes
            v.rotate(reencrypt=True, batch=20)
        intact(url, before)


def test_read_only_file_system(tmp_path: Path, cli_env: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """The file system goes read-only (remounted; Linux refuses that while a file on it is
    open for writing, so between commands): every open writes its audit entry, so each is
    refused, plainly, and nothing changes."""
    with small_fs(4096) as where:
        url = f"sqlite:///{where / 'v.vault'}"
        with vault.create(url, PASSPHRASE) as v:
            v.add_many(people(10))
        before = snapshot(url)
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        try:
            with pytest.raises(vault.Unavailable, match="read-only"):
                vault.open(url, PASSPHRASE).close()
            code, _out, err = dvault(monkeypatch, capsys, "list", "--fields", "badge_name", "--vault", url,
                                     "--recovery", "--reason", "desk check")
            assert code == 6 and "read-only" in one_error_line(err), err
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(where)], check=True)
        intact(url, before)


# -- the vault's folder goes away ---------------------------------------------------------------
def test_vault_folder_disappears(tmp_path: Path, cli_env: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """An open handle keeps its file (SQLite holds it open), so what it commits is kept; a
    new open at the path finds nothing (exit 2), and nothing is created there; once the
    folder is back (a remounted drive), the vault opens and verifies with all of it."""
    folder = tmp_path / "stick"
    folder.mkdir()
    url = f"sqlite:///{folder / 'v.vault'}"
    with vault.create(url, PASSPHRASE) as v:
        v.add_many(people(5))
    away = tmp_path / "unplugged"
    with vault.open(url, PASSPHRASE) as v:
        folder.rename(away)
        v.add(PERSON)  # committed into the file the handle holds
        code, _out, err = dvault(monkeypatch, capsys, "list", "--fields", "badge_name", "--vault",
                                 str(folder / "v.vault"), "--recovery", "--reason", "desk check")
        assert code == 2 and "no vault at" in one_error_line(err), err
        with pytest.raises(vault.NotFound):
            vault.open(url, PASSPHRASE)
        assert not folder.exists()
    away.rename(folder)
    with vault.open(url, PASSPHRASE) as v:
        assert v.count() == 6 and v.verify().ok


# -- PostgreSQL: the connection ended mid-transaction -------------------------------------------
def _pg_only(url: str) -> None:
    if url.startswith("sqlite"):
        pytest.skip("a connection ended by the server is PostgreSQL's fault (SQLite: the size-limit and "
                    "read-only tests)")


@contextlib.contextmanager
def kill_at(url: str, method: str, call: int = 1) -> Iterator[list[int]]:
    """Patch Store.<method>: on its ``call``-th use, a second connection ends this one's
    backend (pg_terminate_backend) before the statement runs."""
    real = getattr(Store, method)
    seen: list[int] = []
    admin = sa.create_engine(url)

    def patched(self: Store, conn: Any, *a: Any, **kw: Any) -> Any:
        seen.append(1)
        if len(seen) == call:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with admin.begin() as c:
                c.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        return real(self, conn, *a, **kw)
    setattr(Store, method, patched)
    try:
        yield seen
    finally:
        setattr(Store, method, real)
        admin.dispose()


def test_pg_connection_killed_during_add_many(url: str) -> None:
    _pg_only(url)
    with vault.create(url, PASSPHRASE) as v:
        v.add_many(people(8))
    before = snapshot(url)
    with vault.open(url, PASSPHRASE) as v:
        with kill_at(url, "insert_index_groups"), pytest.raises(vault.Unavailable, match="connection was lost"):
            v.add_many(people(30, "q"))
        assert v.count() == 8  # the handle reconnects for its next transaction
    intact(url, before)


@pytest.mark.parametrize("method", ["insert_records", "insert_index_groups", "put_meta"])
def test_pg_connection_killed_during_a_single_add(url: str, method: str) -> None:
    """A single add writes its rows on the DB-API cursor (Store.raw): a connection lost
    there is Unavailable too, not a rollback's error on the dead connection."""
    _pg_only(url)
    with vault.create(url, PASSPHRASE) as v:
        v.add_many(people(3))
    before = snapshot(url)
    with vault.open(url, PASSPHRASE) as v:
        with kill_at(url, method), pytest.raises(vault.Unavailable, match="connection was lost"):
            v.add(people(1, "q")[0])
        assert v.count() == 3  # the handle reconnects for its next transaction
    intact(url, before)


def test_pg_connection_killed_during_import_cli(url: str, tmp_path: Path, cli_env: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _pg_only(url)
    with vault.create(url, PASSPHRASE) as v:
        v.add_many(people(4))
    before = snapshot(url)
    (tmp_path / "forms.csv").write_text("Name,Badge\n" + "".join(f"Person {i},P{i}\n" for i in range(40)))
    (tmp_path / "map.toml").write_text('[columns]\n"Name" = "legal_name"\n"Badge" = "badge_name"\n')
    with kill_at(url, "insert_records"):
        code, out, err = dvault(monkeypatch, capsys, "import", "forms.csv", "--mapping", "map.toml", "--vault", url,
                                "--recovery", "--reason", "registration import")
    assert code == 6 and "connection was lost" in one_error_line(err), err
    assert "Person" not in out + err
    intact(url, before)


def test_pg_connection_killed_during_rotate(url: str) -> None:
    _pg_only(url)
    with vault.create(url, PASSPHRASE) as v:
        v.add_many(people(12))
    before = snapshot(url)
    with vault.open(url, PASSPHRASE) as v:
        with kill_at(url, "put_records", call=2), pytest.raises(vault.Unavailable, match="connection was lost"):
            v.rotate(reencrypt=True, batch=5)
    intact(url, before)  # half rotated: every record opens, under old or new key versions
    with vault.open(url, PASSPHRASE) as v:
        v.rotate(reencrypt=True, batch=5)  # resumes
    intact(url, before)


# -- an identity file the operating system will not let us read --------------------------------
def test_identity_file_without_read_permission(tmp_path: Path) -> None:
    """Root reads a mode-000 file anyway (CAP_DAC_OVERRIDE), so as root the command runs in
    a child without the two capabilities that bypass file modes (capsh --drop), where the
    mode stops the read as it stops any other user's."""
    from vault.identity import Identity
    wrap: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("capsh") is None:
            pytest.skip("as root a mode-000 file stays readable, and capsh (to drop CAP_DAC_OVERRIDE) is missing")
        wrap = ["capsh", "--drop=cap_dac_override,cap_dac_read_search", "--", "-c", '"$0" "$@"']
    home = tmp_path
    path = Identity.generate().save(home / "me.dvid", "identity pass words")
    (home / "me.pass").write_text("identity pass words\n")
    os.chmod(home / "me.pass", 0o600)
    vault.create(f"sqlite:///{home / 'v.vault'}", PASSPHRASE).close()  # the command gets as far as the identity
    os.chmod(path, 0o000)
    env = {**os.environ, "DVAULT_CONFIG": str(home / "none.toml")}

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(wrap + args, capture_output=True, text=True, cwd=home, env=env, timeout=120)
    lib = run([sys.executable, "-c", "import sys, vault.identity as I\n"
               "try:\n I.Identity.load(sys.argv[1], 'identity pass words')\n"
               "except I.IdentityUnreadable as e:\n print(type(e).__name__, e); sys.exit(7)\n", str(path)])
    assert lib.returncode == 7 and "cannot read identity file" in lib.stdout, lib.stdout + lib.stderr
    cli = run([sys.executable, "-m", "vault_cli.main", "list", "--fields", "badge_name", "--vault",
               str(home / "v.vault"), "--identity", str(path), "--passphrase-file", str(home / "me.pass"),
               "--reason", "check"])
    assert cli.returncode == 6, cli.stderr
    assert cli.stderr.strip().splitlines() == [f"dvault: error: cannot read identity file {path}: Permission denied"]
    os.chmod(path, 0o600)
    assert Identity.load(path, "identity pass words")  # the file itself was never touched


# -- a backup written to a full disk --------------------------------------------------------------
def _no_backup_left(where: Path) -> None:
    """Nothing of a backup is left in ``where`` (the filler only): no file at the name, no temporary."""
    names = sorted(p.name for p in where.iterdir())
    assert [n for n in names if not n.startswith("filler")] == [], names


def test_disk_full_during_backup(url: str, tmp_path: Path, cli_env: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The vault lives elsewhere (SQLite in tmp_path, or PostgreSQL); its backup goes to a
    small file system that fills up part-way: one Unavailable (CLI: one line, exit 6), no
    file left at the backup's name or beside it, and the vault verifies unchanged."""
    with vault.create(url, PASSPHRASE) as v:
        v.add_many(people(150))
    before = snapshot(url)
    with small_fs(2048) as where:
        with vault.open(url, PASSPHRASE) as v:
            size = v.backup(tmp_path / "probe.dvbak")["bytes"]
        filler = fill(where, max(16, size // 1024 // 3))  # room for a third of the backup
        with vault.open(url, PASSPHRASE) as v:
            with pytest.raises(vault.Unavailable, match="disk is full") as e:
                v.backup(where / "b.dvbak")
            assert "amira" not in str(e.value).lower()
            _no_backup_left(where)
            with open(where / "filler2", "wb") as f, contextlib.suppress(OSError):  # not a byte left
                f.write(b"\0" * (4 << 20))
            with pytest.raises(vault.Unavailable, match="disk is full"):  # the ledger file, on the full disk
                v.backup(tmp_path / "b2.dvbak", ledger=where / "b2.dvledger")
            assert not (tmp_path / "b2.dvbak").exists()  # all or nothing: no backup without its ledger
            _no_backup_left(where)
        code, out, err = dvault(monkeypatch, capsys, "backup", str(where / "c.dvbak"), "--vault", url,
                                "--recovery")
        assert code == 6, err
        assert "disk is full" in one_error_line(err) and "Amira" not in out + err
        _no_backup_left(where)
        filler.unlink()
        (where / "filler2").unlink()
        intact(url, before)
        with vault.open(url, PASSPHRASE) as v:  # with room again the same backup is written, and restores
            v.backup(where / "b.dvbak")
        assert vault.restore(url, where / "b.dvbak", passphrase=PASSPHRASE).records == 150
        intact(url, before)
