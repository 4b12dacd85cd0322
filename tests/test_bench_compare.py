"""bench/compare.py runs end to end at a tiny size and writes its report.

No figure is checked (the benchmark's numbers are for people, never for asserts): only
that every side ran, read back what it wrote, and that the document and the plot exist
and say what they must. Skipped without the bench extra (pip install -e '.[bench]').
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy_utils")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "compare.py"
PG_URL = os.environ.get("DVAULT_TEST_PG_URL")


def _compare_module():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import compare
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return compare


@pytest.mark.timeout(600)
def test_compare_runs_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--n", "200", "--repeat", "1", "--out", str(out), "--gets", "20",
           "--finds", "10", "--resolves", "10", "--adds", "10", "--tmpdir", str(tmp_path)]
    cmd += ["--postgres", PG_URL] if PG_URL else ["--no-postgres"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, check=False)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "CHECK FAILED" not in p.stdout
    doc = (out / "benchmarks.md").read_text(encoding="utf-8")
    png = (out / "benchmarks.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert "## Results at N = 200" in doc and "## What each side protects" in doc
    assert "## Machine" in doc and "bench/compare.py --n 200" in doc
    for label in ("plain SQLite", "sqlalchemy-utils AES-GCM (peer)", "vault (SQLite)"):
        assert label in doc
    results = doc.split("## Results at N = 200", 1)[1].split("\n\n", 2)[1]
    header, _sep, *lines = results.splitlines()
    assert "vault (SQLite)" in header
    measures = {line.split(" | ")[0].lstrip("| ") for line in lines}
    for m in ("bulk insert (rec/s)", "get by id", "exact find by e-mail", "resolve a pseudonym",
              "unlock (open with passphrase)", "one-shot process find", "bytes per record on disk (B)"):
        assert m in measures
    if PG_URL:
        assert "vault (PostgreSQL)" in header
    # nothing left behind: the scratch directory is removed (PostgreSQL: the schema is dropped)
    assert [x.name for x in tmp_path.iterdir()] == ["out"]


def test_a_missing_side_is_skipped_and_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compare = _compare_module()
    monkeypatch.setitem(sys.modules, "sqlcipher3", None)  # import sqlcipher3 now raises ImportError
    args = compare.argparse.Namespace(no_one_process=False, postgres=None, out=str(tmp_path), seed=1,
                                      repeat=1, gets=1, finds=1, scans=1, resolves=1, adds=1)
    sides = compare.build_sides(args)
    cipher = next(s for s in sides if s.key == "sqlcipher")
    assert "sqlcipher3" in cipher.skip
    for s in sides:
        if not s.skip:
            s.add_sample(10, "insert", 1000.0)
            s.add_sample(10, "bytes", 500.0)
    path = compare.write_doc(args, sides, [10], {"CPU": "test"}, "start", "end",
                             {"command": "x", "plaintext": 300.0, "small": [], "done": 1, "loads": [0.5]})
    doc = Path(path).read_text(encoding="utf-8")
    assert "Not run:" in doc and "- SQLCipher: sqlcipher3 cannot be imported here" in doc
    table = doc.split("## Results at N = 10", 1)[1].split("\n\n", 2)[1]
    assert "SQLCipher" not in table and "plain SQLite" in table
