"""Exports: pseudonymous rows, role limits, 0600 files, sealed exports, CSV injection."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import vault
from conftest import PASSPHRASE
from rawdb import audit_actions
from vault import exporter as X
from vault import pins as PN
from vault.identity import Identity, PublicIdentity


def test_export_rows_and_audit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.vault'}"
    with vault.create(url, PASSPHRASE) as v:
        ids = v.import_rows([{"badge_name": "Amira", "email": "a@example.org"}, {"badge_name": "Kofi"}])
        rows = v.export(["badge_name"], purpose="badge")
        assert sorted(r["badge_name"] for r in rows) == ["Amira", "Kofi"]
        assert all(set(r) == {"pseudonym", "badge_name"} and r["pseudonym"].startswith("BA-") for r in rows)
        assert {v.resolve(r["pseudonym"]).id for r in rows} == set(ids)
        plain = v.export(["email"])
        assert plain and "pseudonym" not in plain[0]
        with pytest.raises(vault.ValidationError):
            v.export([])
    acts = audit_actions(url)
    assert "import" in acts and acts.count("export") == 2


def test_export_respects_roles(tmp_path: Path) -> None:
    lead, tool = Identity.generate(), Identity.generate()
    url = f"sqlite:///{tmp_path / 'r.vault'}"
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(tool.public, "printer", "tool")
        v.add({"badge_name": "Amira", "legal_name": "Amira Haddad"})
    with vault.open(url, identity=tool) as v:
        assert v.export(["badge_name"], purpose="badge")[0]["badge_name"] == "Amira"
        with pytest.raises(vault.AccessDenied):
            v.export(["legal_name"])
        with pytest.raises(vault.AccessDenied):
            v.export(["badge_name"], purpose="travel")


def test_private_files_and_sealing(tmp_path: Path) -> None:
    p = X.write_private(tmp_path / "out.csv", b"x")
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    with pytest.raises(vault.VaultExists):
        X.write_private(p, b"y")
    assert p.read_bytes() == b"x"
    alice, eve, sender = Identity.generate(), Identity.generate(), Identity.generate()
    data = X.to_csv([{"name": "Amira", "phone": "+961"}], ["name", "phone"]).encode()
    blob = X.seal(data, alice.public, sender, vault_id="ab" * 16, purpose=None, fields=["name", "phone"], fmt="csv",
                  rows=1)
    assert b"Amira" not in blob
    assert X.open_sealed(blob, alice).data == data
    with pytest.raises(vault.IntegrityError):
        X.open_sealed(blob, eve)


def test_csv_injection_defused() -> None:
    text = X.to_csv([{"a": "=HYPERLINK(\"x\")", "b": "-3", "c": "+44 20"}], ["a", "b", "c"])
    assert "'=HYPERLINK" in text and ',"-3",' in text and "'+44 20" in text
    text = X.to_csv([{"a": "\t=1+2", "b": "\r=1+2"}], ["a", "b"])
    assert text == '"a","b"\r\n"\'\t=1+2","\'\r=1+2"\r\n'


@pytest.mark.parametrize("sep", [";", ",", "\t"])
def test_no_cell_starts_a_formula_whatever_the_spreadsheet_splits_on(sep: str) -> None:
    """Excel and LibreOffice in many locales split CSV on ";": a value holding ";=" must not
    open as a second cell that is a formula. Every cell is quoted, so a reader splitting the
    same bytes on any of these separators never starts a cell inside a value."""
    import csv
    import io
    value = "Ana;=cmd|' /C calc'!A0\t=1+1"
    text = X.to_csv([{"a": value, "b": "x"}], ["a", "b"])
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=sep))
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row), rows
    if sep == ",":
        assert rows[1] == [value, "x"]


@pytest.mark.parametrize("value", ["line\rbreak", "line\nbreak", "a\r\nb", "x\r", 'quote " and, comma'])
def test_csv_values_with_line_breaks_stay_one_row(value: str) -> None:
    """Whatever a value holds, a CSV reader (or a spreadsheet) gets the same rows back."""
    import csv
    import io
    text = X.to_csv([{"a": value, "b": "next"}, {"a": "x", "b": "y"}], ["a", "b"])
    assert list(csv.reader(io.StringIO(text, newline=""))) == [["a", "b"], [value, "next"], ["x", "y"]]


def test_replace_private_is_atomic(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An identity file re-encrypted under a new passphrase replaces the old one whole: 0600,
    no temporary file left, and the old file intact if the rename fails."""
    import os
    import stat
    from vault import _files
    p = tmp_path / "id.dvid"
    p.write_bytes(b"old")
    _files.replace_private(p, b"new")
    assert p.read_bytes() == b"new" and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert [f.name for f in tmp_path.iterdir()] == ["id.dvid"]

    def broken(src, dst):  # type: ignore[no-untyped-def]
        raise OSError("disk gone")
    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(vault.VaultError, match=r"^cannot replace .*id\.dvid") as e:
        _files.replace_private(p, b"newer")
    assert not isinstance(e.value, OSError) and e.value.__cause__ is None
    assert p.read_bytes() == b"new" and [f.name for f in tmp_path.iterdir()] == ["id.dvid"]


def test_write_private_failure_is_one_error_and_no_file(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A full disk while writing an export or identity file: a VaultError (the caller's
    class) naming the file, and no half-written file left behind."""
    from vault import _files
    from vault.identity import IdentityError

    def full(fd):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(_files.os, "fsync", full)
    with pytest.raises(IdentityError, match=r"^cannot write .*out\.dvid: No space left on device$"):
        _files.write_private(tmp_path / "out.dvid", b"secret", error=IdentityError)
    assert list(tmp_path.iterdir()) == []


# -- the formula guard and telephone numbers ------------------------------------------------------
@pytest.mark.parametrize("value", ["+93 70 123 4567", "+1 (555) 123-4567", "+41.22.555.0100", "+961 3 123456"])
def test_a_phone_number_is_not_a_formula(value: str) -> None:
    """A registration's phone number opened with a stray apostrophe in every row; it holds no
    letter, quote, colon or '|', so no spreadsheet finds a function, reference or link in it."""
    assert X.guard_cell(value) == value
    assert X.to_csv([{"phone": value}], ["phone"]) == f'"phone"\r\n"{value}"\r\n'


@pytest.mark.parametrize("value", ['=HYPERLINK("http://x","y")', "@SUM(A1:A2)", "-2+3", "+cmd|' /C calc'!A0",
                                   "+2-3", "+44 20", "+1 555 CALL NOW", "-inf", "+nan", "\t+93 70 123 4567",
                                   "=+93 70 123 4567", "+93 70 123 4567 890 123 45"])
def test_what_could_be_a_formula_stays_guarded(value: str) -> None:
    assert X.guard_cell(value) == "'" + value
    assert X.guard_cell(X.guard_cell(value)) == "'" + value  # idempotent: guarded again, unchanged


# -- signed, bound sealed exports (docs/format.md 8d) ---------------------------------------------
VID_A, VID_B = "aa" * 16, "bb" * 16


def _sealed(sender: Identity, to: Identity, *, vault_id: str = VID_A, purpose: str | None = "travel",
            rows: list[dict[str, str]] | None = None, now: int = 1_795_000_000) -> tuple[bytes, bytes]:
    rows = rows if rows is not None else [{"pseudonym": "TR-0000-0000-00", "arrival": "2026-11-20"}]
    data = X.to_csv(rows, ["pseudonym", "arrival"]).encode()
    return data, X.seal(data, to.public, sender, vault_id=vault_id, purpose=purpose, fields=["pseudonym", "arrival"],
                        fmt="csv", rows=len(rows), now=now)


def test_a_sealed_export_says_who_sent_what_from_where_and_when() -> None:
    sam, agent = Identity.generate(), Identity.generate()
    data, blob = _sealed(sam, agent)
    opened = X.open_sealed(blob, agent)
    assert opened.data == data and opened.sender == sam.public and opened.recipient == agent.public
    assert (opened.vault_id, opened.purpose, opened.fields, opened.format, opened.rows) == (
        VID_A, "travel", ("pseudonym", "arrival"), "csv", 1)
    assert opened.created_text == "2026-11-18 11:06:40 UTC"
    assert "2026-11-20" not in repr(opened)
    assert X.check_sender(opened, fingerprints=[sam.public.fingerprint().replace(" ", "").upper()]).startswith(
        "its fingerprint was given")
    assert X.check_sender(opened, fingerprints=[sam.public.to_line()])  # the public line is as good
    with pytest.raises(vault.IntegrityError, match=f"unknown sender: user {sam.public.user_id}"):
        X.check_sender(opened)
    with pytest.raises(vault.IntegrityError, match="unknown sender"):
        X.check_sender(opened, fingerprints=[Identity.generate().public.fingerprint()])


def test_an_export_forged_with_only_the_recipients_public_line_is_refused() -> None:
    """Everything a forger needs for the old format is the recipient's public line (clear in
    dv_users): an unsigned box is refused; one they sign themselves verifies but names them,
    an unknown sender; one claiming a staff member's key does not verify."""
    from vault import _crypto as C
    sam, agent, mallory = Identity.generate(), Identity.generate(), Identity.generate()
    rows = X.to_csv([{"arrival": '=HYPERLINK("http://evil.example/x","Click for your visa")'}], ["arrival"]).encode()
    unsigned = (f"{X.ARMOR}\nrecipient: {agent.public.user_id}\n\n".encode()
                + __import__("base64").encodebytes(C.seal_to(agent.public.x25519, b"dvault-export-v1\n" + rows))
                + f"{X.ARMOR_END}\n".encode())
    with pytest.raises(vault.IntegrityError, match="not signed"):
        X.open_sealed(unsigned, agent)
    assert X.open_sealed(unsigned, agent, allow_unsigned=True).sender is None  # asked for: shown as unsigned
    _, own = _sealed(mallory, agent)
    with pytest.raises(vault.IntegrityError, match="unknown sender"):
        X.check_sender(X.open_sealed(own, agent), fingerprints=[sam.public.fingerprint()])
    # a manifest naming Sam as the sender, signed with Mallory's key
    claimed = _forge_sender(own, agent, mallory, sam.public)
    with pytest.raises(vault.IntegrityError, match="signature does not verify"):
        X.open_sealed(claimed, agent)


def _forge_sender(blob: bytes, to: Identity, signer: Identity, claim: "PublicIdentity") -> bytes:
    """Re-make ``blob`` (opened with the recipient's key) with the manifest's sender replaced."""
    import base64
    import json
    from vault import _crypto as C
    raw = base64.b64decode(blob.decode().split("\n\n", 1)[1].split(X.ARMOR_END)[0])
    header, inner = raw[:10], to.unseal(raw[10:])
    n = int.from_bytes(inner[10:14], "big")
    m = json.loads(inner[14:14 + n])
    m["sender"] = claim.raw.hex()
    manifest = json.dumps(m, sort_keys=True, separators=(",", ":")).encode()
    body = header + len(manifest).to_bytes(4, "big") + manifest + inner[14 + n:-64]
    sealed = header + C.seal_to(to.public.x25519, body + signer.sign(b"dvault/v1/export-sig" + body))
    return (f"{X.ARMOR}\nrecipient: {to.public.user_id}\n\n".encode() + base64.encodebytes(sealed)
            + f"{X.ARMOR_END}\n".encode())


def test_an_export_sealed_to_someone_else_or_forwarded_is_refused() -> None:
    """Bob received Sam's export; re-sealed to Carol it is refused, whether Bob keeps the
    header naming him (sealed to someone else) or rewrites it (the signature covers it)."""
    import base64
    from vault import _crypto as C
    sam, bob, carol = Identity.generate(), Identity.generate(), Identity.generate()
    _, blob = _sealed(sam, bob)
    with pytest.raises(vault.IntegrityError, match=f"sealed to user {bob.public.user_id}, not to you"):
        X.open_sealed(blob, carol)
    raw = base64.b64decode(blob.decode().split("\n\n", 1)[1].split(X.ARMOR_END)[0])
    inner = bob.unseal(raw[10:])
    for header in (raw[:10], raw[:2] + bytes.fromhex(carol.public.user_id)):
        forwarded = (f"{X.ARMOR}\nrecipient: {carol.public.user_id}\n\n".encode()
                     + base64.encodebytes(header + C.seal_to(carol.public.x25519, header + inner[10:]))
                     + f"{X.ARMOR_END}\n".encode())
        with pytest.raises(vault.IntegrityError):
            X.open_sealed(forwarded, carol)


@pytest.mark.parametrize("where", [0, 1, 5, 12, 40, -60, -1])
def test_any_flipped_byte_is_refused(where: int) -> None:
    import base64
    sam, agent = Identity.generate(), Identity.generate()
    _, blob = _sealed(sam, agent)
    raw = bytearray(base64.b64decode(blob.decode().split("\n\n", 1)[1].split(X.ARMOR_END)[0]))
    raw[where] ^= 1
    bad = (f"{X.ARMOR}\nrecipient: {agent.public.user_id}\n\n".encode() + base64.encodebytes(bytes(raw))
           + f"{X.ARMOR_END}\n".encode())
    with pytest.raises(vault.VaultError):
        X.open_sealed(bad, agent)


def test_what_is_opened_is_formula_guarded_again() -> None:
    """The payload is the sender's: a trusted but careless (or compromised) sender's CSV with a
    live formula comes out guarded; a genuine export comes out byte for byte."""
    import base64
    import json
    from vault import _crypto as C
    sam, agent = Identity.generate(), Identity.generate()
    data, blob = _sealed(sam, agent, rows=[{"pseudonym": "+93 70 123 4567", "arrival": "@SUM(1+1)"}])
    assert X.open_sealed(blob, agent).data == data
    live = b'"pseudonym","arrival"\r\n"TR-1","=HYPERLINK(""http://x"",""y"")"\r\n=cmd|\' /C calc\'!A0,-2+3\r\n'
    manifest = json.dumps({"created": 1, "fields": ["pseudonym", "arrival"], "format": "csv", "purpose": None,
                           "recipient": agent.public.raw.hex(), "rows": 2, "sender": sam.public.raw.hex(),
                           "vault": VID_A}, sort_keys=True, separators=(",", ":")).encode()
    header = b"\x01O" + bytes.fromhex(agent.public.user_id)
    body = header + len(manifest).to_bytes(4, "big") + manifest + live
    sealed = header + C.seal_to(agent.public.x25519, body + sam.sign(b"dvault/v1/export-sig" + body))
    armoured = (f"{X.ARMOR}\nrecipient: {agent.public.user_id}\n\n".encode() + base64.encodebytes(sealed)
                + f"{X.ARMOR_END}\n".encode())
    out = X.open_sealed(armoured, agent).data.decode()
    assert out == ('"pseudonym","arrival"\r\n"TR-1","\'=HYPERLINK(""http://x"",""y"")"\r\n'
                   '"\'=cmd|\' /C calc\'!A0","\'-2+3"\r\n')


# -- dvault export --to / open-export -------------------------------------------------------------
from test_cli_errors import LEAD, RECOVERY, STAFF, run, setup  # noqa: E402,F401 - the CLI fixture


def _agent(tmp: Path) -> Identity:
    agent = Identity.generate()
    agent.save(tmp / "agent.dvid", "agent pass words")
    (tmp / "agent.pass").write_text("agent pass words\n")
    return agent


AGENT = ("--identity", "agent.dvid", "--passphrase-file", "agent.pass")


def test_export_to_shows_the_recipient_and_asks(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """`export --to` names the recipient by fingerprint and by the vault's signed user table
    (or says they are not enrolled), under -q too, and asks before anything is decrypted."""
    tmp, url, _ = setup
    agent = _agent(tmp)
    args = ("export", "--fields", "badge_name", "--purpose", "travel", "--to", agent.public.to_line())
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("n\n"))
    code, out, err = run(monkeypatch, capsys, "-q", *args, "--out", "t.sealed", *STAFF)
    assert code == 1 and not (tmp / "t.sealed").exists(), err
    assert f"sealing to user {agent.public.user_id}, fingerprint {agent.public.fingerprint()}: NOT enrolled" in err
    with vault.open(url, RECOVERY) as v:
        exports = [e for e in v.audit_entries() if e["action"] == "export"]
    assert exports == []  # refused before the export
    (tmp / "recovery.pass").write_text(RECOVERY + "\n")
    code, out, err = run(monkeypatch, capsys, *args, "--out", "t.sealed", "--yes", "--recovery",
                         "--passphrase-file", "recovery.pass")
    assert code == 1 and "signed by its sender" in err  # the recovery passphrase signs as no one
    with vault.open(url, identity=Identity.load(tmp / "lead.dvid", "lead pass words")) as v:
        v.add_user(agent.public, "travel-agent", "tool")
    code, out, err = run(monkeypatch, capsys, *args, "--out", "t.sealed", "--yes", *STAFF)
    assert code == 0 and "travel-agent (tool) in this vault" in err, err
    assert (tmp / "t.sealed").read_bytes().startswith(X.ARMOR.encode())
    with vault.open(url, identity=Identity.load(tmp / "lead.dvid", "lead pass words")) as v:
        v.remove_user(agent.public.user_id)
    code, out, err = run(monkeypatch, capsys, *args, "--out", "u.sealed", "--yes", *STAFF)
    assert code == 1 and "refusing to seal to travel-agent" in err and "revoked" in err and not (tmp / "u.sealed").exists()


def test_open_export_verifies_and_shows_the_origin(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """Who sent it, from which vault, for which purpose, when; an unknown sender is refused
    (exit 5, nothing written) unless their fingerprint is given or they are enrolled in a vault
    the opener pinned; the wrong vault is refused with both ids."""
    tmp, url, _ = setup
    agent = _agent(tmp)
    with vault.open(url, identity=Identity.load(tmp / "lead.dvid", "lead pass words")) as v:
        v.add_user(agent.public, "travel-agent", "tool")
        vid = v.id
    staff = Identity.load(tmp / "staff.dvid", "staff pass words")
    code, out, err = run(monkeypatch, capsys, "export", "--fields", "badge_name", "--purpose", "travel", "--to",
                         agent.public.to_line(), "--yes", "--out", "t.sealed", *STAFF)
    assert code == 0, err
    code, out, err = run(monkeypatch, capsys, "open-export", "t.sealed", *AGENT, "--out", "t.csv")
    assert code == 5 and f"unknown sender: user {staff.public.user_id}" in err and not (tmp / "t.csv").exists()
    code, out, err = run(monkeypatch, capsys, "-q", "open-export", "t.sealed", *AGENT, "--out", "t.csv",
                         "--trust-sender", staff.public.fingerprint())
    assert code == 0, err
    assert f"from user {staff.public.user_id}, fingerprint {staff.public.fingerprint()}" in err
    assert f"vault {vid}, purpose travel, 1 row(s) of pseudonym,badge_name (csv), sealed 20" in err
    assert (tmp / "t.csv").read_text().splitlines()[0] == '"pseudonym","badge_name"'
    code, out, err = run(monkeypatch, capsys, "open-export", "t.sealed", *AGENT, "--vault", url)
    assert code == 5 and "not pinned for your identity" in err  # a vault first seen now vouches for nothing
    PN.add(tmp / "agent.dvid.vaults", _pin_line(url), url)
    code, out, err = run(monkeypatch, capsys, "open-export", "t.sealed", *AGENT, "--vault", url)
    assert code == 0 and f"enrolled in vault {vid} as sam (staff)" in err and "Amira" in out, err
    other = tmp / "other.vault"  # the same sender, enrolled in another vault, pinned too
    with vault.create(other, RECOVERY, lead=Identity.load(tmp / "lead.dvid", "lead pass words")) as v2:
        v2.add_user(agent.public, "travel-agent", "tool")
        v2.add_user(staff.public, "sam", "staff")
        PN.add(tmp / "agent.dvid.vaults", v2.pin_line, str(other))
        other_id = v2.id
    code, out, err = run(monkeypatch, capsys, "open-export", "t.sealed", *AGENT, "--vault", str(other))
    assert code == 5 and f"comes from vault {vid}, not from the vault you named ({other_id})" in err, err


def _pin_line(url: str) -> str:
    with vault.open(url, RECOVERY) as v:
        return v.pin_line


def test_an_export_replayed_from_another_vault_or_purpose_shows_its_true_origin(setup, monkeypatch,  # type: ignore[no-untyped-def]
                                                                                capsys) -> None:
    """A badge list of another vault passed off as this vault's travel list: what the opener
    is shown is where it really came from."""
    tmp, url, _ = setup
    agent = _agent(tmp)
    sam = Identity.load(tmp / "staff.dvid", "staff pass words")
    _, blob = _sealed(sam, agent, vault_id=VID_B, purpose="badge")
    (tmp / "replayed.sealed").write_bytes(blob)
    code, out, err = run(monkeypatch, capsys, "open-export", "replayed.sealed", *AGENT, "--trust-sender",
                         sam.public.fingerprint())
    assert code == 0 and f"vault {VID_B}, purpose badge, 1 row(s)" in err, err


def test_open_export_refuses_an_unsigned_export_unless_asked(setup, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import base64
    from vault import _crypto as C
    tmp, url, _ = setup
    agent = _agent(tmp)
    live = b'"arrival"\r\n"=HYPERLINK(""http://evil.example"",""visa"")"\r\n'
    (tmp / "forged.sealed").write_bytes(
        f"{X.ARMOR}\nrecipient: {agent.public.user_id}\n\n".encode()
        + base64.encodebytes(C.seal_to(agent.public.x25519, b"dvault-export-v1\n" + live))
        + f"{X.ARMOR_END}\n".encode())
    code, out, err = run(monkeypatch, capsys, "open-export", "forged.sealed", *AGENT)
    assert code == 5 and "not signed" in err and out == ""
    code, out, err = run(monkeypatch, capsys, "-q", "open-export", "forged.sealed", *AGENT, "--allow-unsigned")
    assert code == 0 and "NOT signed" in err and "'=HYPERLINK" in out and '"=HYPERLINK' not in out


def test_a_genuine_csv_comes_back_byte_for_byte() -> None:
    """guard_csv of what to_csv wrote is the identity, whatever the values (open-export
    re-guards every sealed CSV: a genuine one must not change)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(st.text(), st.text()), max_size=5))
    def check(rows: list[tuple[str, str]]) -> None:
        text = X.to_csv([{"a": a, "b": b} for a, b in rows], ["a", "b"]).encode()
        assert X.guard_csv(text) == text
    check()
