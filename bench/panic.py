"""How long ``dvault panic`` takes on a laptop holding a 10k-record vault, and what it removes.

A benchmark, not a test: it prints figures and asserts nothing about time. It does check
that each run exits 0 and leaves none of the files behind.

    python bench/panic.py [--n 10000] [--reps 5] [--seed 1] [--tmpdir DIR]

Steps (everything under a fresh temporary directory, which also serves as the laptop's
HOME, XDG_DATA_HOME, XDG_CONFIG_HOME, XDG_CACHE_HOME and TMPDIR):

 build  with the library: a lead identity at the default place (the per-user data folder),
        a SQLite vault in HOME made with it, ``--n`` synthetic participants
        (bench/_synth.py) added with ``add_many``, the vault pinned beside the identity, a
        config file naming both, and a CSV export of badge names and e-mail addresses
        written to HOME and recorded in the written-files list, as ``dvault export --out``
        does. The laptop is then moved aside, and each repetition starts from a fresh copy
        of it, in the same place (the config and the list name their files by path).
 panic  ``--reps`` runs of ``dvault panic -v`` as the installed entry point starts it
        (vault_cli.run: the fast path that loads neither SQLAlchemy nor the crypto
        libraries), timed wall-clock from this process (start to exit), and the time panic
        reports for its own work (ending shells, finding, overwriting, flushing and
        unlinking); then the same through ``python -m vault_cli.main panic`` (every module
        loaded), for comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

FAST = "import sys; sys.argv = ['dvault', 'panic', '-v']; from vault_cli import run; run()"


def laptop_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVAULT_", "XDG_"))}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local/share"), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"), TMPDIR=str(home / "tmp"), PYTHONPATH=str(ROOT))
    return env


def build(home: Path, n: int, seed: int) -> dict[str, int]:
    for k, v in laptop_env(home).items():
        os.environ[k] = v
    (home / "tmp").mkdir(parents=True)
    from _synth import participants
    from vault.identity import Identity

    import vault
    from vault import exporter as X
    from vault import local as L

    lead = Identity.generate()
    ident = L.data_dir() / "identity.dvid"
    lead.save(ident, "bench lead passphrase")
    db = home / "desk.vault"
    rows = participants(n, seed=seed)
    with vault.create(f"sqlite:///{db}", "bench recovery passphrase", lead=lead, population=n) as v:
        for i in range(0, n, 2000):
            v.add_many(rows[i:i + 2000])
        v.pin(f"{ident}.vaults")
        v.set_reason("bench")
        out = v.export(["badge_name", "email"])
    L.config_file().parent.mkdir(parents=True)
    L.config_file().write_text(f'vault = "{db}"\nidentity = "{ident}"\n')
    export = home / "contacts.csv"
    X.write_private(export, X.to_csv(out, ["badge_name", "email"]).encode("utf-8"))
    L.remember(export, "export")
    return {p.name: p.stat().st_size for p in home.rglob("*") if p.is_file()}


def run_once(home: Path, code: list[str]) -> tuple[float, float, list[str]]:
    start = time.perf_counter()
    res = subprocess.run([sys.executable, *code], env=laptop_env(home), capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"panic failed ({res.returncode}): {res.stdout}{res.stderr}")
    left = [str(p) for p in home.rglob("*") if p.is_file()]
    if left:
        raise SystemExit(f"panic left files behind: {left}")
    lines = res.stdout.splitlines()
    inner = float(lines[-1].split(" in ")[-1].split()[0])
    return wall, inner, [ln for ln in lines if ln.startswith("removed")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tmpdir", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dvault-bench-panic-", dir=args.tmpdir) as tmp:
        home, stash = Path(tmp) / "laptop", Path(tmp) / "stash"  # the files name their paths: always one home
        t0 = time.perf_counter()
        sizes = build(home, args.n, args.seed)
        home.rename(stash)
        print(f"built a laptop with a {args.n}-record vault in {time.perf_counter() - t0:.1f} s: "
              f"{sum(sizes.values()) / 1e6:.1f} MB in {len(sizes)} files "
              f"(vault {sizes.get('desk.vault', 0) / 1e6:.1f} MB, -wal {sizes.get('desk.vault-wal', 0) / 1e6:.1f} MB)")
        for label, code in (("dvault panic (entry point)", ["-c", FAST]),
                            ("python -m vault_cli.main panic", ["-m", "vault_cli.main", "panic", "-v"])):
            walls, inners = [], []
            removed: list[str] = []
            for _rep in range(args.reps):
                shutil.copytree(stash, home, symlinks=True)
                wall, inner, removed = run_once(home, code)
                shutil.rmtree(home)
                walls.append(wall)
                inners.append(inner)
            print(f"{label}: wall median {statistics.median(walls):.3f} s (min {min(walls):.3f}, max "
                  f"{max(walls):.3f}); panic's own work median {statistics.median(inners):.3f} s "
                  f"(min {min(inners):.3f}), {args.reps} runs")
        print(f"files removed ({len(removed)}), each overwritten, flushed and unlinked:")
        for line in removed:
            print(f"  {line.removeprefix('removed').strip()}")


if __name__ == "__main__":
    main()
