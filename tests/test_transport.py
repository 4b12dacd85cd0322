"""A PostgreSQL URL to another machine must ask for verified TLS (sslmode=verify-full), or
carry the explicit opt-out insecure_transport=1, which status then shows. No TLS server
is needed: the refusal comes before any connection."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

import vault
from conftest import PASSPHRASE, PG_URL
from vault.postgres import OPT_OUT, TransportError, check_transport

REMOTE = "postgresql+psycopg://dvault@db.example.org:5432/ev"


@pytest.fixture(autouse=True)
def no_libpq_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("PGHOST", "PGHOSTADDR", "PGSSLMODE", "PGSERVICE"):
        monkeypatch.delenv(k, raising=False)


@pytest.mark.parametrize("url", [
    REMOTE,
    REMOTE + "?sslmode=require",  # encrypted, but any server's certificate is taken
    REMOTE + "?sslmode=verify-ca",  # a CA's certificate, for any name
    REMOTE + "?sslmode=prefer&insecure_transport=0",
    "postgresql+psycopg://dvault@10.0.0.5/ev",
    "postgresql+psycopg://dvault@[2001:db8::1]/ev",
    "postgresql+psycopg://dvault@/ev?host=db.example.org",
    "postgresql+psycopg://dvault@/ev?host=/var/run/postgresql&host=db.example.org:5433",
    "postgresql+psycopg://dvault@localhost/ev?hostaddr=192.0.2.7",  # hostaddr is where it goes
    "postgresql+psycopg://dvault@/ev?service=ev",  # a service file decides the host
])
def test_a_remote_host_without_verified_tls_is_refused(url: str) -> None:
    with pytest.raises(TransportError) as e:
        check_transport(url)
    msg = str(e.value)
    assert msg.startswith("refusing to connect to ") and "sslmode=verify-full" in msg and f"{OPT_OUT}=1" in msg
    with pytest.raises(TransportError):  # before any connection is tried (none could succeed here)
        vault.open(url, PASSPHRASE)
    with pytest.raises(TransportError):
        vault.create(url, PASSPHRASE)


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://dvault@localhost/ev",
    "postgresql+psycopg://dvault@127.0.0.1:5432/ev",
    "postgresql+psycopg://dvault@127.8.9.10/ev",
    "postgresql+psycopg://dvault@[::1]/ev",
    "postgresql+psycopg://dvault@/ev",  # the default Unix socket
    "postgresql+psycopg://dvault@/ev?host=/var/run/postgresql",
    "postgresql+psycopg://dvault@/ev?host=localhost:5432&host=127.0.0.1:5433",
])
def test_this_machine_needs_no_tls(url: str) -> None:
    clean, how = check_transport(url)
    assert how == "local connection (this machine: no TLS needed)"
    assert clean == sa.engine.make_url(url)


def test_verify_full_is_accepted_and_the_opt_out_is_explicit_and_stripped() -> None:
    clean, how = check_transport(REMOTE + "?sslmode=verify-full&sslrootcert=/etc/ca.pem")
    assert how.startswith("TLS, server certificate and name verified")
    clean, how = check_transport(REMOTE + f"?sslmode=require&{OPT_OUT}=1")
    assert how.startswith(f"NOT PROTECTED: {OPT_OUT}=1") and "db.example.org" in how
    assert OPT_OUT not in clean.render_as_string() and clean.query == {"sslmode": "require"}  # libpq never sees it
    for bad in ("maybe", f"1&{OPT_OUT}=1"):
        with pytest.raises(TransportError, match=f"{OPT_OUT} takes 1"):
            check_transport(REMOTE + f"?{OPT_OUT}={bad}")


def test_libpq_environment_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """libpq reads PGHOST and PGSSLMODE when the URL names neither: they count."""
    monkeypatch.setenv("PGHOST", "db.example.org")
    with pytest.raises(TransportError):
        check_transport("postgresql+psycopg://dvault@/ev")
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    assert check_transport("postgresql+psycopg://dvault@/ev")[1].startswith("TLS")


def test_roles_setup_checks_the_transport_too() -> None:
    from vault.postgres import check_roles
    with pytest.raises(TransportError):
        check_roles(REMOTE, ["dvault_staff"])


def _unverified(url: str) -> str:
    """``url`` (a local test server) reached under a remote host name: hostaddr says where
    libpq connects, the name is only what TLS would check, and the check counts it."""
    u = sa.engine.make_url(url)
    return u.set(host="db.example.org", query={**u.query, "hostaddr": u.host or "127.0.0.1"}).render_as_string(
        hide_password=False)


@pytest.mark.skipif(not PG_URL, reason="PostgreSQL tests need DVAULT_TEST_PG_URL")
def test_the_opt_out_connects_and_status_shows_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    from conftest import _pg_schema
    from test_cli_errors import run

    with _pg_schema() as url:
        vault.create(url, PASSPHRASE).close()
        far = _unverified(url)
        with pytest.raises(TransportError):
            vault.open(far, PASSPHRASE)
        insecure = far + f"&{OPT_OUT}=1"
        with vault.open(insecure, PASSPHRASE) as v:
            st = v.status()
        assert st["transport"].startswith(f"NOT PROTECTED: {OPT_OUT}=1")
        assert st["transport"] in st["warnings"]
        with vault.open(url, PASSPHRASE) as v:
            assert v.status()["transport"].startswith("local")
            assert not [w for w in v.status()["warnings"] if "NOT PROTECTED" in w]
        for k in ("DVAULT_URL", "DVAULT_IDENTITY"):
            monkeypatch.delenv(k, raising=False)
        monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
        (tmp_path / "rec.pass").write_text(PASSPHRASE + "\n")
        code, out, err = run(monkeypatch, capsys, "status", "--vault", insecure, "--recovery",
                             "--passphrase-file", str(tmp_path / "rec.pass"))
        assert code == 0, err
        assert f"NOT PROTECTED: {OPT_OUT}=1" in out and f"dvault: warning: NOT PROTECTED: {OPT_OUT}=1" in err
        code, out, err = run(monkeypatch, capsys, "status", "--vault", far, "--recovery",
                             "--passphrase-file", str(tmp_path / "rec.pass"))
        assert code == 1 and err.startswith("dvault: error: refusing to connect to db.example.org without verified TLS")


def test_status_of_a_sqlite_vault_says_local_file(tmp_path: Path) -> None:
    with vault.create(tmp_path / "v.vault", PASSPHRASE) as v:
        assert v.status()["transport"] == "local file"
