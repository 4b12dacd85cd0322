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
                   "dvault open-export", "--trust-sender", "--preset kobo", "--shred-source",
                   "--preset civicrm --date-format", "dvault export badges", "dvault checkin", "--summary",
                   "--without-consent omit", "umask 077", "dvault travel", "--copy-to", "dvault panic", "dvault purge --expired",
                   "dvault recovery split --shares", "dvault recovery show", "dvault recover --vault",
                   "dvault retain", "dvault subject export", "dvault subject erase",
                   "dvault backup", "dvault restore", "--ledger"):
        assert needle in text, needle
    assert "cp " not in text  # every file the guide uses comes from dvault: it runs from any folder


def _synthetic_secrets() -> list[bytes]:
    """What no file may hold after the guide: each synthetic participant's legal name,
    e-mail and passport number (badge names are printed on badges on purpose)."""
    from vault_cli.samples import CIVICRM_SEED
    from vault_cli.synth import participants

    people = participants(150) + participants(20, seed=CIVICRM_SEED)
    return sorted({p[k].encode("utf-8") for p in people for k in ("legal_name", "email", "passport_number")})


def _files_holding(roots: list[Path], needles: list[bytes]) -> list[str]:
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                found += [f"{path}: {n.decode()[:3]}..." for n in needles if n in data]
    return found


def test_guide_runs_end_to_end(url: str, tmp_path: Path) -> None:
    # HOME is the folder: the per-user data and config folders (the config file, the list
    # of written files) are under it, as on a fresh laptop; section 11 moves HOME. TMPDIR is
    # a folder of its own in it, scanned with the rest for plaintext left behind.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVAULT_", "XDG_"))}
    work, tmpdir = tmp_path, tmp_path / "tmp"
    tmpdir.mkdir()
    env.update({"DVAULT_PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
                "TMPDIR": str(tmpdir)})
    if url.startswith("postgresql"):
        env["DVAULT_URL"] = url
    res = subprocess.run(["bash", "-c", guide_script()], cwd=work, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "imported 150 participant(s)" in res.stdout
    assert "imported 20 participant(s)" in res.stdout  # CiviCRM: names joined, day-first dates read
    assert "audit log verified" in res.stdout
    assert "moved 168 participants into vault" in res.stdout  # 150 + 20 imported, one shredded, one erased
    assert "record(s) past retention on" in res.stdout and "dry run" in res.stdout  # section 9: counts only
    assert "by the rule's date field" in res.stdout  # as of 2027-03-01: 90 days after departure
    assert (work / "her-data.sealed").exists() and not (work / "her-data.json").exists()
    assert "can be read by" not in res.stderr  # umask 077: no passphrase file another account can read
    # no plaintext left behind: the imports shredded their files, and nothing else holds a person
    assert not (work / "registrations.csv").exists() and not (work / "civicrm.csv").exists()
    assert _files_holding([tmp_path], _synthetic_secrets()) == []  # the work folder, HOME and TMPDIR
    # the badge sheet: every participant, QR codes, NO PHOTOS bands for those without consent
    sheet = (work / "badges.html").read_text("utf-8")
    assert sheet.count("<path d=") == 170 and (work / "badges.html").stat().st_mode & 0o777 == 0o600
    no_photos = sheet.count(">NO PHOTOS<")
    photo_ok = (work / "photo-ok.csv").read_text("utf-8").splitlines()
    assert 0 < no_photos < 170 and len(photo_ok) == 1 + 170 - no_photos
    assert "checked in: " in res.stdout and "already checked in (" in res.stdout
    assert "checked in 1, not yet 169, total 170" in res.stdout
    assert "dietary question at lunch" in res.stdout  # the lead's audit show of "$P": reasons
    badges = (work / "badges.csv").read_text("utf-8").splitlines()
    assert badges[0] == '"pseudonym","badge_name","pronouns","photo_consent"' and len(badges) == 171  # all quoted
    assert sum(line.endswith('"no"') for line in badges) == no_photos  # marked, as on the sheet
    assert (work / "badges.csv").stat().st_mode & 0o777 == 0o600
    assert not (work / "contacts.csv").exists()
    travel = (work / "travel.csv").read_text("utf-8").splitlines()  # opened by the agent, Sam trusted
    assert travel[0] == '"pseudonym","arrival"' and len(travel) == 171 and travel[1].startswith('"TR-')
    assert (work / "travel.csv").stat().st_mode & 0o777 == 0o600
    assert "purpose travel, 170 row(s) of pseudonym,arrival (csv)" in res.stderr
    assert "held elsewhere: the copy" in res.stderr and "is the same vault" in res.stderr  # section 11
    assert not (tmp_path / "sam.dvid").exists() and not (tmp_path / "dd2026-new.vault").exists()
    assert (tmp_path / "nadia-usb" / "dd2026.vault").exists() and (tmp_path / "nadia.dvid").exists()
    assert "dvault panic: 3 file(s) removed, 0 left" in res.stdout  # section 12: identity, pins, written list
    assert not [p for p in (tmp_path / "sam-laptop").rglob("*") if p.is_file()]
    errors = (work / "errors.log").read_text("utf-8").splitlines()
    rows = [line for line in errors if line.startswith("dvault: civicrm.csv: line ")]  # the dry run's report
    assert len(rows) == 20 and all("column 'Birth Date'" in line for line in rows)
    report = rows + [line for line in errors if line.startswith("dvault: note: ") or
                     re.fullmatch(r"\d+ good row\(s\), \d+ problem\(s\)", line)]
    assert errors and all(line.startswith("dvault: error:") for line in errors if line not in report)
    assert "Traceback" not in res.stderr
    # section 13: a mistyped word named by share and word number; two of three shares recover
    assert "dvault: error: share 1, word 5 is wrong" in "\n".join(errors)
    assert res.stdout.count("moved 168 participants into vault") == 2 and "recovery_shares" in res.stdout
    assert (tmp_path / "dd2026-omar.vault").exists() and (tmp_path / "omar.dvid").exists()
