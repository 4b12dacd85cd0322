"""The schema's ``[retention]`` table: how long a record may live (docs/format.md 9c).

::

    [retention]
    after = "departure"        # a date field: a record expires `days` after its value
    event_end = <a TOML date>  # the date counted from when a record has no `after` value
    days = 90

At least one of ``after`` and ``event_end`` is given. Why in the schema: the schema text
is MAC'd and signed by the lead (vault.keys), so a database writer can neither shorten
nor lengthen everyone's retention without the vault refusing to open. A record's own
override (a participant who agreed to be invited again) is vault.retention's.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import SchemaError

#: the longest retention a rule may give (about 100 years): a typo, not a policy, beyond it
MAX_DAYS = 36_500
_KEYS = {"after", "event_end", "days"}


@dataclass(frozen=True)
class Rule:
    """``after``: the date field counted from; ``event_end``: the date counted from when a
    record has no ``after`` value (or the only date, without ``after``); ``days``: how
    many days after that date the record is kept. The record expires the day after."""

    days: int
    after: str | None = None
    event_end: _dt.date | None = None

    def base(self, value: Any) -> _dt.date | None:
        """The date a record's retention counts from: its ``after`` value, else the event's end."""
        if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
            return value
        return self.event_end

    def expires(self, value: Any) -> _dt.date | None:
        """The last day the record is kept (None: no date to count from). A count that runs
        past the calendar's end (a date field accepts 9999-12-31) stops at its last day,
        which no day is after: the record is kept for ever, as its date asks."""
        base = self.base(value)
        if base is None:
            return None
        try:
            return base + _dt.timedelta(days=self.days)
        except OverflowError:
            return _dt.date.max


def parse(raw: Any, fields: Mapping[str, Any]) -> Rule | None:
    """The ``[retention]`` table, or None when the schema has none."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise SchemaError("[retention] must be a table (after, event_end, days)")
    unknown = set(raw) - _KEYS
    if unknown:
        raise SchemaError(f"[retention]: unknown key(s) {', '.join(sorted(unknown))}")
    days = raw.get("days")
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= MAX_DAYS:
        raise SchemaError(f"[retention] days must be an integer from 0 to {MAX_DAYS}")
    after = raw.get("after")
    if after is not None:
        if not isinstance(after, str) or after not in fields:
            raise SchemaError(f"[retention] after: {after!r} is not a field of this schema")
        if fields[after].type != "date":
            raise SchemaError(f"[retention] after: field {after!r} must be a date field")
    end = raw.get("event_end")
    if end is not None:
        end = _date(end)
    if after is None and end is None:
        raise SchemaError("[retention] needs after (a date field), event_end (a date), or both")
    return Rule(days=days, after=after, event_end=end)


def _date(value: Any) -> _dt.date:
    """A TOML date (``YYYY-MM-DD``) or the same as a string."""
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return _dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise SchemaError("[retention] event_end must be a date (YYYY-MM-DD)")
