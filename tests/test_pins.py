"""Known-vaults file (vault.pins, docs/format.md 8c): where a vault was opened, and the shape of lines."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

import vault
from conftest import PASSPHRASE
from vault import pins as PN
from vault.identity import Identity, PublicIdentity


def _replace_vault(url: str, victim: Identity) -> Identity:
    """What a writer of the database (no keys) can do: remove the vault and build a fresh one
    at the same place, with the victim's public key (it is in dv_users) enrolled."""
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        for p in path.parent.glob(path.name + "*"):
            p.unlink()
    else:
        engine = sa.create_engine(url)
        meta = sa.MetaData()
        meta.reflect(engine, only=lambda name, _m: name.startswith("dv_"))
        meta.drop_all(engine)
        engine.dispose()
    mallory = Identity.generate()
    with vault.create(url, "mallory's own passphrase", lead=mallory) as v:
        v.add_user(victim.public, "sam", "staff")
    return mallory


def test_another_vault_at_a_pinned_location_is_refused(url: str, tmp_path: Path) -> None:
    lead, sam = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(sam.public, "sam", "staff")
    pins = tmp_path / "sam.dvid.vaults"
    with vault.open(url, identity=sam, pins=pins) as v:
        genuine = v.id
    assert any(ln.startswith("at ") and ln.endswith(genuine) for ln in pins.read_text().splitlines())
    _replace_vault(url, sam)
    with pytest.raises(vault.IntegrityError, match="a different vault is at this location"):
        vault.open(url, identity=sam, pins=pins)
    assert genuine in pins.read_text() and len(PN.known(pins)) == 1  # nothing of the new vault recorded


def test_the_location_vector() -> None:
    """format.md 8c spells a location one way (not SQLAlchemy's rendering, which changes
    between its releases: it percent-encoded non-ASCII but not spaces)."""
    import json
    cases = json.loads((Path(__file__).parent / "vectors" / "pin_location_v1.json").read_text())["cases"]
    for case in cases:
        assert PN.location_text(case["url"]) == case["text"]
        assert PN.location_hash(case["url"]) == case["place"]


def test_the_location_has_no_password_and_no_driver(tmp_path: Path) -> None:
    a = PN.location_hash("postgresql+psycopg://sam:secret@DB.example.org:5432/ev?options=-csearch_path%3Dx")
    assert a == PN.location_hash("postgresql://sam@db.example.org:5432/ev?options=-csearch_path%3Dx")
    assert a != PN.location_hash("postgresql://sam@db.example.org:5432/ev?options=-csearch_path%3Dy")


def test_the_cli_refuses_a_replaced_vault_and_notes_a_first_pin(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from test_cli_errors import run

    url = f"sqlite:///{tmp_path / 'v.vault'}"
    lead, sam = Identity.generate(), Identity.generate()
    sam.save(tmp_path / "sam.dvid", "sam pass words")
    (tmp_path / "sam.pass").write_text("sam pass words\n")
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(sam.public, "sam", "staff")
        v.add({"badge_name": "A."})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
    args = ["list", "--fields", "badge_name", "--vault", url, "--identity", "sam.dvid", "--passphrase-file", "sam.pass",
            "--reason", "desk check"]
    code, out, err = run(monkeypatch, capsys, *args)
    assert code == 0 and "first open of vault" in err and "pinned in sam.dvid.vaults" in err, err
    code, out, err = run(monkeypatch, capsys, *args)
    assert code == 0 and "first open" not in err, err
    _replace_vault(url, sam)
    code, out, err = run(monkeypatch, capsys, *args)
    assert code == 5 and err.startswith("dvault: error: a different vault is at this location"), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, out, err = run(monkeypatch, capsys, "pin", "add", *PN.known(tmp_path / "sam.dvid.vaults"), "0" * 32,
                         "--identity", "sam.dvid")
    assert code != 0 and "Traceback" not in err  # two fields: the signers are required


@pytest.mark.parametrize("edit", ["upper", "duplicate", "duplicate_place"])
def test_a_file_with_lines_that_could_never_match_is_refused(tmp_path: Path, edit: str) -> None:
    """Upper-case hex was read but never matched (the pin was skipped); a vault named twice
    was taken last-wins. Both are refused as malformed, as the spec says."""
    vid, fp, signers = "ab" * 16, "cd" * 16, "ef" * 16
    lines = {"upper": [f"{vid.upper()} {fp} {signers}"],
             "duplicate": [f"{vid} {fp} {signers}", f"{vid} {'00' * 16} {signers}"],
             "duplicate_place": [f"{vid} {fp} {signers}", f"at {'11' * 16} {vid}", f"at {'11' * 16} {'22' * 16}"]}[edit]
    path = tmp_path / "known.vaults"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(vault.VaultError, match="known-vaults file"):
        PN.check(path, bytes.fromhex(vid), b"k" * 32, signers)


def test_a_file_of_an_older_release_still_reads_and_gains_the_location(url: str, tmp_path: Path) -> None:
    lead, sam = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(sam.public, "sam", "staff")
        vid, fp, _signers = v.pin_line.split()
    old = tmp_path / "old.vaults"
    old.write_text(f"# written by an earlier release\n{vid} {fp}\n")
    with vault.open(url, identity=sam, pins=old):
        pass
    body = old.read_text().splitlines()[1:]
    assert len(body) == 2 and body[0].startswith(f"{vid} {fp} ") and body[1].startswith("at ")
    assert body[1].endswith(vid)


# -- the first open of a pinned vault is bound to the place it was pinned for -------------------------
@pytest.fixture
def away(url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Where the attacker moves the real vault to (same backend as ``url``; dropped afterwards)."""
    if url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'moved-away.vault'}"
        return
    from conftest import _pg_schema
    with _pg_schema() as fresh:
        yield fresh


def _public_from_dv_users(url: str, name: str) -> PublicIdentity:
    """What the attacker copies: the victim's public key, in clear in dv_users."""
    engine = sa.create_engine(url)
    with engine.begin() as c:
        raw = bytes(c.execute(sa.text("SELECT public FROM dv_users WHERE name = :n"), {"n": name}).scalar_one())
    engine.dispose()
    return PublicIdentity(raw[:32], raw[32:])


def _schema_of(url: str) -> str:
    return sa.engine.make_url(url).query["options"].split("=", 1)[1]


def _rebuild_elsewhere(url: str, away: str) -> Identity:
    """The attack of the review: the real vault moved away to ``away`` (SQLite: the file renamed;
    PostgreSQL: its tables moved to another schema), a lookalike built at the same place with a
    new id, the attacker as its lead, the victim's public key (copied from the real dv_users)
    enrolled. Returns the attacker."""
    victim = _public_from_dv_users(url, "sam")
    if url.startswith("sqlite"):
        path, to = Path(url.removeprefix("sqlite:///")), Path(away.removeprefix("sqlite:///"))
        for p in path.parent.glob(path.name + "*"):  # the file, and any -wal or -shm beside it
            p.rename(to.with_name(to.name + p.name[len(path.name):]))
    else:
        engine = sa.create_engine(url)
        with engine.begin() as c:
            names = [n for n in sa.inspect(c).get_table_names() if n.startswith("dv_")]
            for n in names:
                c.exec_driver_sql(f'ALTER TABLE "{_schema_of(url)}"."{n}" SET SCHEMA "{_schema_of(away)}"')
        engine.dispose()
    mallory = Identity.generate()
    with vault.create(url, "mallory's own passphrase", lead=mallory) as v:
        v.add_user(victim, "sam", "staff")
    return mallory


def test_a_vault_rebuilt_before_the_first_open_of_a_pinned_vault_is_refused(url: str, away: str, tmp_path: Path) -> None:
    """Sam records the lead's pin line (pins.add, with the place he will open the vault at).
    Before his first open an attacker who can write the database moves the real vault away
    and builds a lookalike there: a new id, the attacker as lead, Sam's public key copied
    from dv_users. Sam's first open is refused, naming both ids, and records nothing of the
    fake; the real vault, put back, opens. (Before: the pin was found by the id the database
    presents, so the new id was an unknown vault, trusted as a first sight.)"""
    lead, sam = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(sam.public, "sam", "staff")
        line, genuine = v.pin_line, v.id
    pins = tmp_path / "sam.dvid.vaults"
    assert PN.add(pins, line, url) is None
    _rebuild_elsewhere(url, away)
    with vault.open(url, "mallory's own passphrase") as fake:
        fake_id = fake.id
    before = pins.read_text()
    with pytest.raises(vault.IntegrityError, match="a different vault is at this location") as e:
        vault.open(url, identity=sam, pins=pins)
    assert genuine in str(e.value) and fake_id in str(e.value)
    assert pins.read_text() == before and fake_id not in before
    with vault.open(away, identity=sam, pins=tmp_path / "elsewhere.vaults") as v:  # the real one is intact
        assert v.id == genuine


def test_the_cli_refuses_the_reviews_attack_even_under_quiet(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """The review's steps through dvault: `pin add` (the location from --vault), the real file
    moved away, a lookalike at the same path, Sam's first open: exit 5, one line naming both
    ids, under -q too."""
    from test_cli_errors import run

    path = tmp_path / "dd2026.vault"
    lead, sam = Identity.generate(), Identity.generate()
    sam.save(tmp_path / "sam.dvid", "sam pass words")
    (tmp_path / "sam.pass").write_text("sam pass words\n")
    with vault.create(path, PASSPHRASE, lead=lead) as v:
        v.add_user(sam.public, "sam", "staff")
        line, genuine = v.pin_line, v.id
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("DVAULT_URL", raising=False)
    code, out, err = run(monkeypatch, capsys, "pin", "add", *line.split(), "--identity", "sam.dvid")
    assert code == 1 and "no vault given" in err  # the place is part of the pin: none, no pin
    code, out, err = run(monkeypatch, capsys, "pin", "add", *line.split(), "--vault", "dd2026.vault",
                         "--identity", "sam.dvid")
    assert code == 0 and out.strip() == f"vault {genuine} pinned in sam.dvid.vaults", err
    _rebuild_elsewhere(f"sqlite:///{path}", f"sqlite:///{tmp_path / 'moved-away.vault'}")
    code, out, err = run(monkeypatch, capsys, "-q", "add", "--vault", "dd2026.vault", "--identity", "sam.dvid",
                         "--passphrase-file", "sam.pass", "--reason", "registration")
    assert code == 5 and err.startswith("dvault: error: a different vault is at this location"), err
    assert genuine in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_first_sight_is_said_even_under_quiet(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """An un-pinned first open is a trust decision: --quiet silences progress, not that."""
    from test_cli_errors import run

    url = f"sqlite:///{tmp_path / 'v.vault'}"
    lead, sam = Identity.generate(), Identity.generate()
    sam.save(tmp_path / "sam.dvid", "sam pass words")
    (tmp_path / "sam.pass").write_text("sam pass words\n")
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(sam.public, "sam", "staff")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
    args = ["-q", "list", "--fields", "badge_name", "--vault", url, "--identity", "sam.dvid", "--passphrase-file",
            "sam.pass", "--reason", "desk check"]
    code, out, err = run(monkeypatch, capsys, *args)
    assert code == 0 and "first open of vault" in err and "trusted as found" in err, err


def test_pin_add_takes_over_a_location_and_says_so(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """The user's explicit pin for a place replaces the vault recorded there (the lead replaced
    it), and says which; an open never does."""
    from test_cli_errors import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
    a, b = ("ab" * 16, "cd" * 16, "ef" * 16), ("12" * 16, "34" * 16, "56" * 16)
    Identity.generate().save(tmp_path / "sam.dvid", "x" * 12)
    code, out, err = run(monkeypatch, capsys, "pin", "add", *a, "--vault", "v.vault", "--identity", "sam.dvid")
    assert code == 0 and "replaces" not in err
    code, out, err = run(monkeypatch, capsys, "pin", "add", *b, "--vault", "v.vault", "--identity", "sam.dvid")
    assert code == 0 and f"this replaces vault {a[0]}" in err, err
    places = [ln.split()[2] for ln in (tmp_path / "sam.dvid.vaults").read_text().splitlines() if ln.startswith("at ")]
    assert places == [b[0]]
    with pytest.raises(vault.IntegrityError, match=f"expected vault {b[0]}, found vault {a[0]}"):
        PN.check(tmp_path / "sam.dvid.vaults", bytes.fromhex(a[0]), b"k" * 32, a[2], location="v.vault")


def test_move_hands_out_the_pin_line_and_the_location(url: str, url2: str, away: str, tmp_path: Path) -> None:
    """The new vault after a move: its pin line and location come with it, and a user who
    records them before the first open refuses a vault rebuilt at the new place."""
    lead, sam, nadia = Identity.generate(), Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(sam.public, "sam", "staff")
        v.add({"badge_name": "A."})
    with vault.open(url, PASSPHRASE) as src:
        src.set_reason("lead laptop seized")
        moved = vault.move(src, url2, "a new recovery passphrase", lead=nadia)
    with moved.vault as dest:
        assert moved.pin_line == dest.pin_line and moved.location == PN.location_text(url2)
        dest.add_user(sam.public, "sam", "staff")
        new_id = dest.id
    pins = tmp_path / "sam.dvid.vaults"
    PN.add(pins, moved.pin_line, url2)
    _rebuild_elsewhere(url2, away)
    with pytest.raises(vault.IntegrityError, match=f"expected vault {new_id}"):
        vault.open(url2, identity=sam, pins=pins)


def test_dvault_move_prints_the_new_pin_line_and_location(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """`dvault move` says on stdout (and so under -q too) what each user pins before their first
    open of the new vault; pinned as printed, a vault rebuilt at the new place is refused."""
    from test_cli_errors import run

    lead, sam = Identity.generate(), Identity.generate()
    with vault.create(tmp_path / "old.vault", PASSPHRASE, lead=lead) as v:
        v.add_user(sam.public, "sam", "staff")
        v.add({"badge_name": "A."})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "recovery.pass").write_text(PASSPHRASE + "\n")
    (tmp_path / "new.pass").write_text("a brand new recovery phrase\n")
    (tmp_path / "nadia.pass").write_text("nadia's identity phrase\n")
    code, out, err = run(monkeypatch, capsys, "-q", "move", "--vault", "old.vault", "--to", "new.vault",
                         "--identity", "nadia.dvid", "--passphrase-file", "recovery.pass", "--new-passphrase-file",
                         "new.pass", "--identity-passphrase-file", "nadia.pass", "--reason", "seized")
    assert code == 0, err
    lines = dict(ln.split(": ", 1) for ln in out.splitlines() if ln.startswith(("pin line: ", "location: ")))
    with vault.open(tmp_path / "new.vault", "a brand new recovery phrase") as v:
        assert lines == {"pin line": v.pin_line, "location": f"sqlite:{tmp_path / 'new.vault'}"}
        new_id = v.id
    PN.add(tmp_path / "sam.vaults", lines["pin line"], "new.vault")
    _rebuild_elsewhere_as_lead(tmp_path / "new.vault", sam)
    with pytest.raises(vault.IntegrityError, match=f"expected vault {new_id}"):
        vault.open(tmp_path / "new.vault", identity=sam, pins=tmp_path / "sam.vaults")


def _rebuild_elsewhere_as_lead(path: Path, victim: Identity) -> None:
    """A lookalike at ``path`` after the real file was moved away (no user table to copy from
    in a fresh move: the victim's public line is no secret either)."""
    path.rename(path.with_name("moved-away.vault"))
    with vault.create(path, "mallory's own passphrase", lead=Identity.generate()) as v:
        v.add_user(victim.public, "sam", "staff")
