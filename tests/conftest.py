"""Shared fixtures: fast Argon2 for tests only, and one ``url`` fixture per backend.

Every test that takes ``url`` runs on SQLite and, when DVAULT_TEST_PG_URL is set, on
PostgreSQL too (each test in its own fresh PostgreSQL schema). Without the variable the
PostgreSQL cases are skipped with a visible reason.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import urllib.parse
from pathlib import Path
from typing import Iterator

import pytest

import vault
from vault import _format as F

PG_URL = os.environ.get("DVAULT_TEST_PG_URL")
FAST_KDF = F.KdfParams(t=1, m_kib=8, p=1)
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> F.KdfParams:
    """Lower Argon2id cost (and the floor) for the test process only; never in production."""
    monkeypatch.setattr(F, "KDF_FLOOR", FAST_KDF)
    monkeypatch.setattr(F, "KDF_DEFAULT", FAST_KDF)
    return FAST_KDF


@pytest.fixture(autouse=True)
def private_data_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A per-user data folder of the test's own (XDG_DATA_HOME, inherited by the processes
    it starts): the CLI records there what it writes (vault.local), and shells mark
    themselves there; a test must not add to the real one's list, which the user's own
    ``dvault panic`` acts on."""
    folder = tmp_path_factory.mktemp("xdg-data")
    monkeypatch.setenv("XDG_DATA_HOME", str(folder))
    return folder


def _pg_schema_url(schema: str) -> str:
    assert PG_URL is not None
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options={urllib.parse.quote('-csearch_path=' + schema)}"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL where no vault exists yet, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.vault'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL tests need DVAULT_TEST_PG_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    with _pg_schema() as fresh:
        yield fresh


@pytest.fixture
def url2(url: str, tmp_path: Path) -> Iterator[str]:
    """A second empty place on the same backend as ``url`` (where a vault is moved to)."""
    if url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'second.vault'}"
        return
    with _pg_schema() as fresh:
        yield fresh


@contextlib.contextmanager
def _pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped afterwards, and the URL that works in it."""
    import sqlalchemy as sa

    schema = "dvt_" + secrets.token_hex(6)
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def v(url: str) -> Iterator[vault.Vault]:
    with vault.create(url, PASSPHRASE) as opened:
        yield opened


def run_dvault(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str,
               stdin: str | None = None) -> tuple[int, str, str]:
    """``dvault ARGS`` in this process, as the console script runs it (main's error mapping):
    (exit code, stdout, stderr). ``stdin``: what it reads, if given."""
    import io
    import sys

    from vault_cli.main import main
    monkeypatch.setattr(sys, "argv", ["dvault", *args])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def raw_engine(url: str):  # type: ignore[no-untyped-def]
    """A plain SQLAlchemy engine on the vault's database: what an attacker with DB access has."""
    import sqlalchemy as sa

    return sa.create_engine(url)
