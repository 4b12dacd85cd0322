"""Child process for the stress tests (tests/test_stress.py): lowers Argon2 exactly like the
test fixture, then plays one part until killed or until its time is up.

    stress_child.py URL PASSPHRASE rotate|reindex       one long job in tiny batches
    stress_child.py URL PASSPHRASE purge                purge_expired(dry_run=False), as of today
    stress_child.py URL PASSPHRASE ROLE SECONDS DIR     one of the four concurrent parts

ROLE is writer (staff identity: adds, updates, shreds), reader (staff identity, revoked
mid-run: reads and searches until refused), rotator (recovery passphrase: rotations) or
revoker (lead identity: revokes the reader, then verifies). Each prints what it committed,
one JSON line per fact, so the test can check that nothing committed was lost."""

import json
import random
import sys
import time
from pathlib import Path

from vault.identity import Identity
from vault.store import VaultBusy

import vault
from vault import _format as F

F.KDF_FLOOR = F.KDF_DEFAULT = F.KdfParams(t=1, m_kib=8, p=1)
ID_PASS = "identity pass words"


def say(**fact: object) -> None:
    print(json.dumps(fact), flush=True)


def person(i: int, tag: str) -> dict[str, object]:
    return {"legal_name": f"Person {tag} {i}", "badge_name": f"{tag}{i}", "email": f"{tag}{i}@example.org",
            "risk_notes": "note " * 10}


def job(url: str, passphrase: str, what: str) -> None:
    with vault.open(url, passphrase) as v:
        say(started=True)
        def batch(done: int, total: int) -> None:  # the parent aims some kills from the first batch on
            say(batch=done)
        if what == "rotate":
            v.rotate(reencrypt=True, batch=3, progress=batch)
        elif what == "purge":
            v.purge_expired(dry_run=False)
        else:
            v.reindex(population=5000, batch=3, progress=batch)
    say(finished=True)


def _open(url: str, who: str, home: Path, passphrase: str) -> vault.Vault:
    if who == "recovery":
        return vault.open(url, passphrase)
    return vault.open(url, identity=Identity.load(home / f"{who}.dvid", ID_PASS))


def part(url: str, passphrase: str, role: str, seconds: float, home: Path) -> None:
    rng = random.Random(role)
    who = {"writer": "writer", "reader": "reader", "rotator": "recovery", "revoker": "lead"}[role]
    end = time.monotonic() + seconds
    v = _open(url, who, home, passphrase)
    mine: list[str] = []
    i = 0
    say(started=True)
    while time.monotonic() < end:
        i += 1
        try:
            if role == "writer":
                _write(v, rng, i, mine)
                time.sleep(0.002)  # a busy desk, not a bulk import: the others get the lock too
            elif role == "reader":
                _read(v, rng)
            elif role == "rotator":
                # a plain rotation first, then re-encrypting ones in turn: a re-encryption of
                # every row the writer has added by then may not finish before the revoker's
                # rotation cuts it short, and the run must see rotations complete
                v.rotate(reencrypt=not i % 2, batch=4)
                say(rotated=i)
            elif role == "revoker":
                if time.monotonic() > end - seconds / 2:
                    end = max(end, time.monotonic() + seconds)  # keep trying past the others' end
                    reader = next((u for u in v.users() if u.name == "reader"), None)
                    if reader is not None:
                        v.remove_user(reader.user_id)
                    else:  # revoked, but its rotation was cut short by another's: finish it
                        v.rotate(["public", "logistics", "contact"])
                    say(revoked=True)
                    break
                time.sleep(0.2)
            continue
        except (vault.KeysChanged, VaultBusy) as e:
            say(retry=type(e).__name__, why=str(e)[:120])
            v.close()
        except vault.AccessDenied:
            if role != "reader":
                raise
            say(refused=True)  # revoked: its slot is gone, nothing more to do
            break
        try:
            v = _open(url, who, home, passphrase)
        except vault.AccessDenied:  # revoked between two of its reads
            if role != "reader":
                raise
            say(refused=True)
            break
    v.close()
    say(done=True)


def _write(v: vault.Vault, rng: random.Random, i: int, mine: list[str]) -> None:
    choice = rng.random()
    if choice < 0.6 or not mine:
        ids = v.add_many([person(i * 10 + k, "w") for k in range(rng.randint(1, 5))])
        mine += ids
        say(added=ids)
    elif choice < 0.85:
        rid = rng.choice(mine)
        v.update(rid, {"email": f"changed{i}@example.org"})
        say(updated=rid, email=f"changed{i}@example.org")
    else:
        rid = mine.pop(rng.randrange(len(mine)))
        v.delete(rid)
        say(shredded=rid)


def _read(v: vault.Vault, rng: random.Random) -> None:
    v.set_reason("stress read")
    ids = v.ids()
    if ids:
        try:
            v.get(rng.choice(ids), fields=["badge_name", "email"])
        except vault.NotFound:  # shredded by the writer since ids() listed it
            pass
    v.find(email=f"w{rng.randint(0, 200)}@example.org")


if __name__ == "__main__":
    if len(sys.argv) == 4:
        job(*sys.argv[1:4])
    else:
        part(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), Path(sys.argv[5]))
