"""Pins bound to a place, not to one spelling of it (docs/format.md 8c; review1, low items):
a pin added with one spelling of a location and a lookalike opened through another met no
location line, and a vault with a new id was then a warned first sight even while the pin
was waiting for its first open."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from vault.identity import Identity

import vault
from conftest import PASSPHRASE
from vault import pins as PN


def test_an_unknown_vault_is_refused_while_a_pin_waits_for_its_first_open(tmp_path: Path) -> None:
    lead, sam, mallory = Identity.generate(), Identity.generate(), Identity.generate()
    real, fake = tmp_path / "dd.vault", tmp_path / "elsewhere" / "dd.vault"
    fake.parent.mkdir()
    with vault.create(str(real), PASSPHRASE, lead=lead) as v:
        v.add_user(sam.public, "sam", "staff")
        line, genuine = v.pin_line, v.id
    with vault.create(str(fake), "mallory's own passphrase", lead=mallory) as v:
        v.add_user(sam.public, "sam", "staff")
        fake_id = v.id
    pins = tmp_path / "sam.dvid.vaults"
    PN.add(pins, line, str(real))
    assert PN.unopened(pins) == {genuine}
    before = pins.read_text()
    with pytest.raises(vault.IntegrityError, match=f"vault {fake_id} is not one you know.*{genuine}.*not been opened"):
        vault.open(str(fake), identity=sam, pins=pins)
    assert pins.read_text() == before
    with vault.open(str(real), identity=sam, pins=pins):
        pass
    assert PN.unopened(pins) == set() and "\nnew " not in pins.read_text()
    with vault.open(str(fake), identity=sam, pins=pins) as v:  # from then on: a first sight, as before
        assert v.id == fake_id


def test_a_pin_binds_the_file_behind_any_spelling_of_its_path(tmp_path: Path) -> None:
    """The location is the file's real path: another spelling (a symbolic link, '..') of
    the pinned place meets its location line."""
    lead, sam = Identity.generate(), Identity.generate()
    real = tmp_path / "data" / "dd.vault"
    real.parent.mkdir()
    with vault.create(str(real), PASSPHRASE, lead=lead) as v:
        v.add_user(sam.public, "sam", "staff")
        line = v.pin_line
    link = tmp_path / "link"
    os.symlink(real.parent, link)
    for spelling in (link / "dd.vault", tmp_path / "data" / ".." / "data" / "dd.vault"):
        assert PN.location_hash(str(spelling)) == PN.location_hash(str(real))
        assert PN.location_hash(f"sqlite:///{spelling}") == PN.location_hash(str(real))
    pins = tmp_path / "sam.dvid.vaults"
    PN.add(pins, line, str(link / "dd.vault"))
    os.rename(real, real.with_name("moved.vault"))
    with vault.create(str(real), "mallory's own passphrase", lead=Identity.generate()) as v:
        v.add_user(sam.public, "sam", "staff")
    with pytest.raises(vault.IntegrityError, match="a different vault is at this location"):
        vault.open(str(real), identity=sam, pins=pins)


def test_a_postgresql_place_is_the_same_whatever_login_tls_or_loopback_spelling() -> None:
    same = ["postgresql+psycopg://lead:pw@localhost/ev?options=-csearch_path%3Dev",
            "postgresql://owner@127.0.0.1:5432/ev?options=-c%20search_path%3Dev&sslmode=require",
            "postgresql://staff@[::1]/ev?options=-csearch_path%3Dev&application_name=dvault"]
    assert len({PN.location_hash(u) for u in same}) == 1
    other = ["postgresql://lead@localhost/ev?options=-csearch_path%3Dother",
             "postgresql://lead@localhost:5433/ev?options=-csearch_path%3Dev",
             "postgresql://lead@db.example.org/ev?options=-csearch_path%3Dev",
             "postgresql://lead@localhost/ev2?options=-csearch_path%3Dev"]
    assert len({PN.location_hash(u) for u in same[:1] + other}) == 5
    # without a search_path the login picks the schema (its own, if there is one): it stays
    assert PN.location_hash("postgresql://sam@localhost/ev") != PN.location_hash("postgresql://noor@localhost/ev")
