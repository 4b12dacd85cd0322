"""Two handles on one vault, one acting between another's check and its write: what the
second finds must be the vault as it is, not as it was when it looked. Found by a
concurrency hunt on 2026-12; each test failed before its fix (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pytest
from vault.schema import default_schema_text

import vault
from conftest import PASSPHRASE
from vault import retention as RT

TODAY = dt.date(2027, 1, 10)
_SCHEMA = default_schema_text().replace('[retention]\nafter = "departure"\ndays = 90\n', "") \
    + '\n[retention]\nafter = "departure"\nevent_end = 2026-06-30\ndays = 30\n'


def _between_plan_and_shred(monkeypatch: pytest.MonkeyPatch, step) -> None:  # type: ignore[no-untyped-def]
    """Run ``step`` once, after a purge has decided what expired and before it shreds."""
    plan = RT.plan

    def planned(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = plan(*args, **kwargs)
        step()
        return out
    monkeypatch.setattr(RT, "plan", planned)


@pytest.mark.parametrize("change", ["update", "override"])
def test_a_purge_spares_a_record_kept_meanwhile(url: str, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """The lead purges while a desk client records that a participant stays longer (their
    departure updated) or the lead's other client sets them an override: the purge shredded
    them all the same, from what it had read before (an irreversible shred of a record the
    rule keeps). Each record is now checked again under its row lock, in the shred's
    transaction."""
    with vault.create(url, PASSPHRASE, schema=_SCHEMA) as v:
        stays = v.add({"legal_name": "Sami Stays", "departure": dt.date(2026, 7, 1)})
        goes = v.add({"legal_name": "Gita Goes", "departure": dt.date(2026, 7, 1)})
        with vault.open(url, PASSPHRASE) as desk:
            def keep() -> None:
                if change == "update":
                    desk.update(stays, {"departure": dt.date(2027, 1, 5)})
                else:
                    desk.set_retention(stays, dt.date(2030, 1, 1))
            _between_plan_and_shred(monkeypatch, keep)
            report = v.purge_expired(dry_run=False, today=TODAY)
        assert report.count == 1
        assert v.get(stays)["legal_name"] == "Sami Stays"
        with pytest.raises(vault.NotFound):
            v.get(goes)
        assert v.audit_verify().ok and v.check_records().ok
