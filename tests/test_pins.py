"""Known-vaults file (vault.pins, docs/format.md 8c): where a vault was opened, and the shape of lines."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

import vault
from conftest import PASSPHRASE
from vault import pins as PN
from vault.identity import Identity


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
