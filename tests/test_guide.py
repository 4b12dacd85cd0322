"""docs/guide.md, run as written: every shell block, in order, with real dvault processes
(real Argon2 costs), on SQLite and on PostgreSQL. A line ending in ``# exit N`` must exit
with N; every other line must succeed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide.md"


def guide_script() -> str:
    blocks = re.findall(r"```sh\n(.*?)```", GUIDE.read_text("utf-8"), re.S)
    out = ["set -euo pipefail", 'dvault() { "$DVAULT_PYTHON" -m vault_cli.main "$@" <<< "y"; }']
    for block in blocks:
        for line in block.splitlines():
            m = re.match(r"^(.*?)\s+#\s*exit (\d+)\s*$", line)
            if m:
                cmd, code = m.group(1), m.group(2)
                out.append(f"set +e; {cmd} 2>>errors.log; rc=$?; set -e; "
                           f"if [ $rc -ne {code} ]; then echo \"expected exit {code}, got $rc: {cmd[:60]}\" >&2; exit 99; fi")
            elif line.strip():
                out.append(line)
    return "\n".join(out) + "\n"


def test_guide_has_every_step() -> None:
    text = guide_script()
    for needle in ("dvault init", "dvault user add", "dvault import", "dvault find", "dvault export",
                   "dvault user remove", "dvault shred", "dvault audit verify", "keygen",
                   "dvault passphrase identity", "dvault passphrase recovery", "dvault move",
                   "dvault audit show --target", "dvault pin add", "dvault export --fields arrival --purpose travel --to",
                   "dvault open-export", "--trust-sender", "dvault travel", "--copy-to", "dvault panic"):
        assert needle in text, needle


def test_guide_runs_end_to_end(url: str, tmp_path: Path) -> None:
    # HOME is the folder: the per-user data and config folders (the config file, the list
    # of written files) are under it, as on a fresh laptop; section 11 moves HOME.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVAULT_", "XDG_"))}
    env.update({"DVAULT_PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "DVAULT_DOCS": str(ROOT / "docs"),
                "HOME": str(tmp_path), "TMPDIR": str(tmp_path)})
    if url.startswith("postgresql"):
        env["DVAULT_URL"] = url
    res = subprocess.run(["bash", "-c", guide_script()], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "imported 150 participant(s)" in res.stdout
    assert "audit log verified" in res.stdout
    assert "moved 149 participants into vault" in res.stdout  # 150 imported, one shredded
    assert "dietary question at lunch" in res.stdout  # the lead's audit show of "$P": reasons
    badges = (tmp_path / "badges.csv").read_text("utf-8").splitlines()
    assert badges[0] == '"pseudonym","badge_name","pronouns"' and len(badges) == 151  # every cell quoted
    assert (tmp_path / "badges.csv").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "contacts.csv").exists()
    travel = (tmp_path / "travel.csv").read_text("utf-8").splitlines()  # opened by the agent, Sam trusted
    assert travel[0] == '"pseudonym","arrival"' and len(travel) == 151 and travel[1].startswith('"TR-')
    assert (tmp_path / "travel.csv").stat().st_mode & 0o777 == 0o600
    assert "purpose travel, 150 row(s) of pseudonym,arrival (csv)" in res.stderr
    assert "held elsewhere: the copy" in res.stderr and "is the same vault" in res.stderr  # section 11
    assert not (tmp_path / "sam.dvid").exists() and not (tmp_path / "dd2026-new.vault").exists()
    assert (tmp_path / "nadia-usb" / "dd2026.vault").exists() and (tmp_path / "nadia.dvid").exists()
    assert "dvault panic: 3 file(s) removed, 0 left" in res.stdout  # section 12: identity, pins, written list
    assert not [p for p in (tmp_path / "sam-laptop").rglob("*") if p.is_file()]
    errors = (tmp_path / "errors.log").read_text("utf-8").splitlines()
    assert errors and all(line.startswith("dvault: error:") for line in errors)
    assert "Traceback" not in res.stderr
