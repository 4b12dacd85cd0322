"""Badges, check-in and consent in exports, through the real ``dvault``: the badge sheet
(QR code of the badge pseudonym, NO PHOTOS for people without photo consent), arrivals
recorded by badge pseudonym (typed, scanned, in the shell) through the library's audited
update, a summary that names no one, and the schema's ``[consent]`` table."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import pytest
from vault.identity import Identity

import vault
from conftest import run_dvault
from vault import pins as PN

LEAD_PW, STAFF_PW, TOOL_PW, RECOVERY = "lead pass words", "staff pass words", "tool pass words", "recovery words"
PEOPLE = [  # badge name, legal name, photo consent (None: never answered)
    ("Amira", "Amira Haddad", True), ("Kofi", "Kofi Mensah", False), ("Ольга", "Ольга Petrenko", None),
    ("Dilnoza <b>&", "Dilnoza Rahimi", True)]


@pytest.fixture
def desk(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    ids = {name: Identity.generate() for name in ("lead", "staff", "tool")}
    for name, pw in (("lead", LEAD_PW), ("staff", STAFF_PW), ("tool", TOOL_PW)):
        ids[name].save(tmp_path / f"{name}.dvid", pw)
        (tmp_path / f"{name}.pass").write_text(pw + "\n")
    with vault.create(url, RECOVERY, lead=ids["lead"]) as v:
        v.add_user(ids["staff"].public, "sam", "staff")
        v.add_user(ids["tool"].public, "printer", "tool")
        rids = [v.add({"badge_name": b, "legal_name": n, **({} if c is None else {"photo_consent": c}),
                       "pronouns": "they/them"}) for b, n, c in PEOPLE]
        badges = [v._pseudonyms.issue(r, "badge") for r in rids]
        v.pin(tmp_path / "lead.dvid.vaults")
        for name in ("staff", "tool"):
            PN.add(tmp_path / f"{name}.dvid.vaults", v.pin_line, url)
    for k in [k for k in os.environ if k.startswith("DVAULT_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("DVAULT_URL", url)
    monkeypatch.setenv("DVAULT_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.chdir(tmp_path)
    return tmp_path, url, rids, badges


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str,
        stdin: str = "") -> tuple[int, str, str]:
    return run_dvault(monkeypatch, capsys, *args, stdin=stdin)


def who(name: str) -> tuple[str, ...]:
    return ("--identity", f"{name}.dvid", "--passphrase-file", f"{name}.pass", "--reason", "desk")


# -- the badge sheet ------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".html", ".svg"])
def test_the_badge_sheet_marks_people_without_photo_consent(desk, monkeypatch, capsys, suffix: str) -> None:  # type: ignore[no-untyped-def]
    import segno
    from vault.badges import _qr_path
    tmp, _url, _rids, badges = desk
    code, _out, err = run(monkeypatch, capsys, "export", "badges", "--out", f"sheet{suffix}", *who("tool"))
    assert code == 0, err
    assert "2 participant(s) without photo_consent marked" in err  # Kofi (no) and Ольга (never answered)
    sheet = (tmp / f"sheet{suffix}").read_text("utf-8")
    assert (tmp / f"sheet{suffix}").stat().st_mode & 0o777 == 0o600
    assert sheet.count(">NO PHOTOS<") == 2
    for badge in badges:  # each badge carries its pseudonym, as text and as the QR code of exactly that text
        assert f">{badge}<" in sheet and _qr_path(badge, 30.0)[0] in sheet
        assert segno.make_qr(badge).mode == "alphanumeric"  # a small code a desk scanner reads at a glance
    assert "Dilnoza &lt;b&gt;&amp;" in sheet and "<b>" not in sheet  # form text is escaped, never markup
    for _b, legal, _c in PEOPLE:
        assert legal not in sheet  # badge names only: no legal name
    for name, _legal, consent in PEOPLE:  # the band is on the badge of each person without a yes
        shown = re.escape(name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
        badge = re.search(rf">{shown}</text>(.*?)</g>(?:<g transform|</svg>)", sheet, re.S)
        assert badge is not None and ("NO PHOTOS" in badge.group(1)) is (consent is not True), name


def test_badge_sheet_without_consent_omit_leaves_them_out(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    tmp, _url, _rids, badges = desk
    code, _out, err = run(monkeypatch, capsys, "export", "badges", "--out", "ok.html", "--without-consent", "omit",
                          *who("tool"))
    assert code == 0, err
    sheet = (tmp / "ok.html").read_text("utf-8")
    assert sheet.count("<path d=") == 2 and "NO PHOTOS" not in sheet
    assert "Amira" in sheet and "Kofi" not in sheet and "Ольга" not in sheet
    assert "2 participant(s) without photo_consent left out" in err


def test_badge_sheet_refuses_an_existing_file_and_a_wrong_suffix(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    tmp, url, _rids, _badges = desk
    (tmp / "keep.html").write_text("keep me")
    code, _out, err = run(monkeypatch, capsys, "export", "badges", "--out", "keep.html", *who("tool"))
    assert code == 1 and "refusing to overwrite" in err and (tmp / "keep.html").read_text() == "keep me"
    code, _out, err = run(monkeypatch, capsys, "export", "badges", "--out", "sheet.pdf", *who("tool"))
    assert code == 1 and ".html" in err
    with vault.open(url, RECOVERY) as v:
        assert v.audit_entries(action="export") == []  # refused before anything was read


# -- consent in exports ---------------------------------------------------------------------------
def _csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text("utf-8"))))


def test_an_export_under_the_badge_purpose_marks_or_omits(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    tmp, url, _rids, _badges = desk
    code, _out, err = run(monkeypatch, capsys, "export", "--fields", "badge_name", "--purpose", "badge", "--out",
                          "marked.csv", *who("tool"))
    assert code == 0, err
    rows = _csv(tmp / "marked.csv")
    assert list(rows[0]) == ["pseudonym", "badge_name", "photo_consent"] and len(rows) == 4
    assert sorted(r["photo_consent"] for r in rows) == ["no", "no", "yes", "yes"]  # never answered is no
    code, _out, err = run(monkeypatch, capsys, "export", "--fields", "badge_name", "--purpose", "badge",
                          "--without-consent", "omit", "--out", "omitted.csv", *who("tool"))
    assert code == 0, err
    rows = _csv(tmp / "omitted.csv")
    assert list(rows[0]) == ["pseudonym", "badge_name"] and sorted(r["badge_name"] for r in rows) == \
        ["Amira", "Dilnoza <b>&"]
    code, out, err = run(monkeypatch, capsys, "export", "--fields", "badge_name", "--purpose", "travel", *who("staff"))
    assert code == 0 and len(_csv_text(out)) == 4 and "photo_consent" not in out  # no rule for travel
    with vault.open(url, RECOVERY) as v:  # each export is the library's own entry, naming the consent field
        entry = v.audit_entries(action="export")[0]
    assert entry["detail"]["fields"] == ["badge_name", "photo_consent"] and entry["detail"]["purpose"] == "badge"


def _csv_text(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_consent_table_is_checked_and_old_schemas_stay_valid() -> None:
    from vault.schema import default_schema_text, load

    from vault import consent

    assert load().consent == {"badge": "photo_consent"}
    old = (Path(__file__).parent / "data" / "participant-schema-v1.toml").read_text("utf-8")
    assert load(old).consent == {}  # a schema without [consent]: no rule, still valid
    base = default_schema_text().replace('[consent]\nbadge = "photo_consent"\n', "")
    assert load(base + '\n[consent]\ntravel = "photo_consent"\n').consent == {"travel": "photo_consent"}
    for bad, why in (('[consent]\nparty = "photo_consent"\n', "undeclared purpose"),
                     ('[consent]\nbadge = "photo_consnt"\n', "not a field"),
                     ('[consent]\nbadge = "badge_name"\n', "must be a bool field"),
                     ('[consent]\nbadge = 1\n', "not a field"), ('consent = "photo_consent"\n', "must be a table")):
        with pytest.raises(vault.SchemaError, match=why):
            load(base + "\n" + bad if not bad.startswith("consent =") else bad + base)
    assert consent.WITHOUT_CONSENT == ("omit", "mark")


def test_the_library_applies_consent_for_any_named_purpose(tmp_path: Path) -> None:
    from vault.schema import default_schema_text

    from vault import consent
    text = default_schema_text().replace('[consent]\nbadge = "photo_consent"\n', '[consent]\nsessions = '
                                         '"photo_consent"\n')
    (tmp_path / "s.toml").write_text(text)
    with vault.create(tmp_path / "v.vault", RECOVERY, schema=tmp_path / "s.toml") as v:
        v.add({"badge_name": "A", "photo_consent": True})
        v.add({"badge_name": "B", "photo_consent": False})
        v.set_reason("test")
        got = consent.export(v, ["badge_name"], "sessions", without_consent="omit")
        assert [r["badge_name"] for r in got.rows] == ["A"] and got.without == 1
        got = consent.export(v, ["badge_name"], "badge", without_consent="omit")
        assert len(got.rows) == 2 and got.consent_field is None  # no rule for badge in this schema
        with pytest.raises(vault.ValidationError):
            consent.export(v, ["badge_name"], "sessions", without_consent="blur")


# -- check-in -------------------------------------------------------------------------------------
def test_checkin_records_the_day_once_and_is_audited(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt
    tmp, url, rids, badges = desk
    code, out, err = run(monkeypatch, capsys, "checkin", badges[0].lower(), *who("staff"))
    assert code == 0, err
    assert out.strip() == f"checked in: {badges[0]}  Amira"
    code, out, err = run(monkeypatch, capsys, "checkin", badges[0], *who("staff"))
    assert code == 0 and out.strip() == f"already checked in ({dt.date.today().isoformat()}): {badges[0]}  Amira"
    with vault.open(url, identity=Identity.load(tmp / "lead.dvid", LEAD_PW)) as v:  # the lead reads reasons
        assert v.get(rids[0], ["checked_in"])["checked_in"] == dt.date.today()
        updates = v.audit_entries(action="update")
        staff = next(u.user_id for u in v.users() if u.name == "sam")
    assert len(updates) == 1 and updates[0]["actor"] == staff and updates[0]["reason"] == "desk"


def test_checkin_summary_names_no_one(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    _tmp, _url, _rids, badges = desk
    run(monkeypatch, capsys, "checkin", badges[1], badges[2], *who("staff"))
    code, out, err = run(monkeypatch, capsys, "checkin", "--summary", *who("staff"))
    assert code == 0, err
    assert out.strip() == "checked in 2, not yet 2, total 4"
    for name, legal, _c in PEOPLE:
        assert name not in out + err and legal not in out + err
    assert not any(b in out + err for b in badges)
    code, out, _err = run(monkeypatch, capsys, "checkin", "--summary", "--json", *who("staff"))
    assert code == 0 and out.strip() == '{"checked_in": 2, "not_yet": 2, "total": 4}'


def test_checkin_reads_a_scanner_from_stdin_and_goes_on_after_a_misread(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """A USB scanner types the pseudonym and Enter; a damaged code (a wrong check
    character) is one error line, and the queue goes on; the exit says one failed."""
    _tmp, _url, _rids, badges = desk
    misread = badges[1][:-1] + ("A" if badges[1][-1] != "A" else "B")
    code, out, err = run(monkeypatch, capsys, "checkin", *who("staff"),
                         stdin=f"{badges[0]}\n{misread}\n{badges[3]}\n\n{badges[2]}\n")
    assert code == 2 and "1 badge(s) not checked in" in err and err.count("dvault: error:") == 2, err
    assert out.count("checked in: ") == 2 and badges[2] not in out  # an empty line ended the queue


def test_checkin_refuses_a_role_that_cannot_write_and_an_old_schema(desk, monkeypatch, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _tmp, _url, _rids, badges = desk
    code, _out, err = run(monkeypatch, capsys, "checkin", badges[0], *who("tool"))
    assert code == 3 and "checked_in" in err
    old = (Path(__file__).parent / "data" / "participant-schema-v1.toml")
    with vault.create(tmp_path / "old.vault", RECOVERY, schema=old):
        pass
    monkeypatch.setenv("DVAULT_RECOVERY_PASSPHRASE", RECOVERY)
    code, _out, err = run(monkeypatch, capsys, "checkin", badges[0], "--vault", str(tmp_path / "old.vault"),
                          "--recovery", "--reason", "desk")
    assert code == 1 and "has no field 'checked_in'" in err and "--field" in err


def test_checkin_in_the_shell_one_badge_and_scanning(desk, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    _tmp, url, rids, badges = desk
    lines = f"checkin {badges[0]}\ncheckin\n{badges[1]}\n{badges[0]}\n\nlist badge_name\nquit\n"
    code, out, err = run(monkeypatch, capsys, "shell", *who("staff"), stdin=lines)
    assert code == 0, err
    assert out.count("checked in: ") == 2 and "already checked in" in out and "scan or type badges" in err
    assert "Kofi" in out  # back at the shell's prompt after the empty line: list ran
    with vault.open(url, RECOVERY) as v:
        assert all(v.get(r, ["checked_in"]).get("checked_in") for r in rids[:2])
        assert v.get(rids[2], ["checked_in"]).get("checked_in") is None


def test_a_badge_qr_code_reads_back_as_its_pseudonym(tmp_path: Path) -> None:
    """Rendered and read by a real decoder (zbarimg), where the machine has one."""
    import shutil
    import subprocess

    from vault.badges import Badge, to_svg
    if not (shutil.which("rsvg-convert") and shutil.which("zbarimg")):
        pytest.skip("needs rsvg-convert and zbarimg (apt: librsvg2-bin zbar-tools)")
    (tmp_path / "b.svg").write_text(to_svg([Badge("Amira", "BA-7KQ4-M2XP-9AW", "she/her", False)]))
    subprocess.run(["rsvg-convert", "-w", "1200", "-b", "white", str(tmp_path / "b.svg"), "-o",
                    str(tmp_path / "b.png")], check=True, timeout=60)
    res = subprocess.run(["zbarimg", "-q", "--raw", str(tmp_path / "b.png")], capture_output=True, text=True,
                         timeout=60)
    assert res.stdout.strip() == "BA-7KQ4-M2XP-9AW"
