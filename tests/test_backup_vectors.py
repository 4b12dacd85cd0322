"""docs/format.md 16 and 16a: the library writes and reads exactly the committed bytes, which
tests/vectors/generate.py builds from the spec alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import vault
from vault import _crypto as C
from vault import backup as BK
from vault import ledger as LG

VEC = Path(__file__).resolve().parent / "vectors"


def load(name: str) -> dict[str, Any]:
    return json.loads((VEC / name).read_text("utf-8"))


def b(x: str) -> bytes:
    return bytes.fromhex(x)


def _value(cell: dict[str, Any] | None) -> Any:
    if cell is None:
        return None
    if "int" in cell:
        return cell["int"]
    if "text" in cell:
        return cell["text"]
    return b(cell["blob"])


def test_shred_ledger_entries_and_file() -> None:
    v = load("shred_ledger_v1.json")
    signer = C.Signer(b(v["signer_ed25519_seed"]))
    vid, actor = b(v["vault_id"]), b(v["actor"])
    got = [LG.make(vid, b(r), actor, signer, at=v["at"]).encode() for r in v["record_ids"]]
    assert got == [b(e) for e in v["entries"]]
    assert LG.encode_file(vid, got) == b(v["ledger_file"])
    fid, blobs = LG.decode_file(b(v["ledger_file"]))
    assert fid == vid and sorted(blobs) == sorted(got)
    assert set(LG.verify(blobs, vid, {actor})) == {b(r) for r in v["record_ids"]}
    with pytest.raises(vault.BadBackup):
        LG.verify(blobs, vid, set())  # a signer the vault does not know
    with pytest.raises(vault.BadBackup):
        LG.verify([blobs[0][:-1] + bytes([blobs[0][-1] ^ 1])], vid, {actor})
    data = b(v["ledger_file"])
    for bad in (data[:-1], data[:20], data[:30] + bytes([data[30] ^ 1]) + data[31:]):
        with pytest.raises(vault.BadBackup):
            LG.decode_file(bad)


def test_backup_file() -> None:
    v = load("backup_v1.json")
    signer = C.Signer(b(v["signer_ed25519_seed"]))
    tables = [BK.Table(t["name"], tuple(t["columns"]), [tuple(_value(c) for c in row) for row in t["rows"]])
              for t in v["tables"]]
    data = BK.encode(b(v["vault_id"]), v["made_at"], v["audit_seq"], b(v["audit_head"]), tables, b(v["actor"]), signer)
    assert data == b(v["file"])
    got = BK.decode(data)
    assert got.vault_id == b(v["vault_id"]) and got.audit_seq == v["audit_seq"] and got.made_at == v["made_at"]
    assert {t.name: t.rows for t in got.tables.values()} == {t.name: t.rows for t in tables}
    BK.check_signature(got, {b(v["actor"])})
    with pytest.raises(vault.BadBackup):
        BK.check_signature(got, set())
    with pytest.raises(vault.BadBackup):
        BK.decode(data[:-1])
