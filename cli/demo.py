"""``dvault demo``: an end-to-end run on the embedded SQLite default, in a temp dir."""

from __future__ import annotations

import os
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click

import vault

from .synth import participants


def run_demo(n: int, echo: Callable[[str], object] = click.echo) -> None:
    rows = participants(n)
    with tempfile.TemporaryDirectory(prefix="dvault-demo-") as tmp:
        path = Path(tmp) / "demo.vault"
        # A demo passphrase, generated, never printed in full and never on argv.
        passphrase = os.urandom(16).hex()
        echo(f"1. Creating a vault at {path} (Argon2id t=3, m=64 MiB, p=4) ...")
        t0 = time.perf_counter()
        with vault.create(path, passphrase) as v:
            echo(f"   created in {time.perf_counter() - t0:.2f}s; vault id {v.id}")
            t0 = time.perf_counter()
            ids = v.add_many(rows)
            echo(f"2. Added {len(ids)} synthetic participants in one transaction "
                 f"({time.perf_counter() - t0:.2f}s)")
        echo("3. Re-opening with the passphrase and reading back ...")
        with vault.open(path, passphrase) as v:
            badges = [r["badge_name"] for r in v.records(fields=["badge_name"])]
            echo(f"   badge names only (public class): {', '.join(badges[:8])}, ...")
            rec = v.get(ids[0])
            echo(f"   one full record, {rec!r}:")
            for name in sorted(rec):
                echo(f"     {name:22} {rec[name]}")
            ok = all(dict(v.get(i)) == row for i, row in zip(ids[:20], rows[:20], strict=True))
            echo(f"   first 20 records decrypt to exactly what was stored: {ok}")
            import sqlite3

            con = sqlite3.connect(path)
            (before,) = con.execute("SELECT data FROM dv_records WHERE id = ?", (bytes.fromhex(ids[1]),)).fetchone()
            con.close()
            v.update(ids[1], {"email": "new-address@example.org"})
            v.delete(ids[2])
            echo(f"   updated one e-mail, crypto-shredded one record; {v.count()} records remain")
        try:
            vault.open(path, passphrase + "x")
        except vault.WrongPassphrase as e:
            echo(f"4. A wrong passphrase is refused: {e}")
        echo("5. What is on disk:")
        for f in sorted(Path(tmp).iterdir()):
            echo(f"     {f.name:16} {f.stat().st_size:>9} bytes  mode {stat.filemode(f.stat().st_mode)}")
        blob = b"".join(f.read_bytes() for f in Path(tmp).iterdir())
        probes = [rows[0]["legal_name"], rows[0]["passport_number"], rows[0]["email"], rows[0]["risk_notes"]]
        for p in probes:
            found = any(p.encode(enc) in blob for enc in ("utf-8", "utf-16-le"))
            echo(f"     searching every byte for a stored value ({len(p)} chars): "
                 f"{'FOUND (bug!)' if found else 'not found'}")
        import sqlite3

        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        rid, data = con.execute("SELECT id, data FROM dv_records LIMIT 1").fetchone()
        con.close()
        echo(f"     a raw row: id={bytes(rid).hex()} data[:48]={bytes(data)[:48].hex()}... ({len(data)} bytes)")
        echo("6. Someone with the database file puts the updated record's older row back ...")
        con = sqlite3.connect(path)
        con.execute("UPDATE dv_records SET data = ? WHERE id = ?", (before, bytes.fromhex(ids[1])))
        con.commit()
        con.close()
        with vault.open(path, passphrase) as v:
            old = v.get(ids[1], fields=["email"])["email"] != "new-address@example.org"
            echo(f"   it decrypts and authenticates like any row (the old e-mail is back: {old}),")
            check = v.check_records()
            echo(f"   but the record check against the audit log names it: {check}")
            echo(f"     rolled back: {', '.join(check.rolled_back)}")
    echo("Done. The temporary vault has been deleted.")
