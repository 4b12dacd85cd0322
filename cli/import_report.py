"""`dvault import`: choosing the mapping, and telling the operator what happened to every
row and every column. Lines name lines, columns, fields and rules; never a value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

import vault

from .common import note, printable

__all__ = ["choose_mapping", "plan", "Report"]


def choose_mapping(data: bytes, mapping: Path | None, preset: str | None, encoding: str | None,
                   date_formats: tuple[str, ...], schema: Any) -> tuple[Any, list[str]]:
    """The mapping to use and notes about it. Without --mapping or --preset, the header is
    recognised if it can be (a hint names the preset), and nothing is imported."""
    from vault.importer import MappingError, detect, load_mapping, load_preset

    if mapping is not None and preset is not None:
        raise click.UsageError("give --mapping or --preset, not both")
    notes: list[str] = []
    if mapping is not None:
        try:
            text = mapping.read_text("utf-8")
        except UnicodeDecodeError:
            raise MappingError("mapping file is not UTF-8 text") from None
        m = load_mapping(text, schema)
    else:
        header = _header(data, encoding)
        family = preset or detect(header)
        if preset is None or family is None:
            found = f"the header looks like a {'KoboToolbox' if family == 'kobo' else 'CiviCRM'} export: " \
                    f"add --preset {family}" if family else "no shipped preset recognises the header"
            raise click.UsageError(f"no --mapping or --preset given; {found} (or write a mapping: docs/mapping.md)")
        m, dropped = load_preset(family, schema, header)
        notes.append(f"using {m.name}")
        if dropped:
            notes.append(f"this vault's schema has no field {', '.join(dropped)}: {m.name} leaves it out"
                         + (" (a re-download cannot update records without source_id)" if "source_id" in dropped
                            else ""))
    if date_formats:
        m = m.with_date_formats(date_formats)
    return m, notes


def _header(data: bytes, encoding: str | None) -> list[str]:
    from vault.importer import SourceError, read_table
    try:
        return read_table(data, encoding=encoding).header
    except SourceError:
        return []  # the plan reports the file's problem, with its hint


def plan(v: vault.Vault, data: bytes, m: Any, encoding: str | None, include: bool) -> tuple[Any, list[str]]:
    """The import plan, checked against the vault, and the checks the role could not make."""
    from vault.importer import check_against_vault, plan_import
    p = plan_import(data, m, v.schema, encoding=encoding, include_status=include)
    p, unchecked = check_against_vault(v, p)  # a fresh download again must not duplicate anyone
    return p, list(unchecked)


class Report:
    """What happened to each row, as stderr lines or one JSON document on stdout."""

    def __init__(self, name: str, p: Any, *, dry_run: bool, apply_updates: bool, skip_bad: bool,
                 notes: list[str], unchecked: list[str] | None = None) -> None:
        self.name, self.p, self.dry_run = name, p, dry_run
        self.unchecked = unchecked or []
        self.apply, self.skip_bad, self.notes = apply_updates, skip_bad, notes
        self.added: list[int] = []
        self.updated: list[int] = []
        self.failure: str | None = None
        self.verdict = self._verdict()

    def _verdict(self) -> str:
        p = self.p
        real_errors = [e for e in p.errors if e.kind != "in_vault"]
        if p.unreadable:  # --skip-bad cannot help: say so, not "use --skip-bad"
            self.failure = ("nothing imported: the file itself must be fixed (--skip-bad skips bad rows, "
                            "not a file that cannot be read)")
            return "refused"
        if p.errors and not self.skip_bad:
            self.failure = "nothing imported: fix the rows above or use --skip-bad"
            return "refused"
        if p.rows or (p.updates and self.apply):
            return "import"
        if real_errors:
            self.failure = "no rows to import"
            return "refused"
        return "nothing new"

    def nothing_to_do(self) -> bool:
        return self.verdict != "import"

    def done(self, ids: list[str], updated: list[int]) -> None:
        self.added = [line for line, _ in self.p.rows][:len(ids)]
        self.updated = updated

    def finish(self, as_json: bool) -> None:
        if as_json:
            click.echo(json.dumps(self._document(), ensure_ascii=True, sort_keys=True))
        else:
            self._lines()
        if self.failure is not None:
            raise click.UsageError(self.failure)
        if self.dry_run or as_json:  # stdout holds the JSON document alone
            return
        if self.verdict == "nothing new":
            click.echo(f"nothing new: {self._nothing_new_why()}")
            return
        if self.added or self.p.rows:
            click.echo(f"imported {len(self.added)} participant(s)")
        if self.updated:
            click.echo(f"updated {len(self.updated)} participant(s)")

    def _nothing_new_why(self) -> str:
        p = self.p
        parts = []
        if p.errors:
            parts.append(f"{len(p.errors)} row(s) already in the vault")
        if p.unchanged:
            parts.append(f"{len(p.unchanged)} row(s) unchanged")
        if p.updates:
            parts.append(f"{len(p.updates)} row(s) changed (--update applies them)")
        if p.skipped:
            parts.append(f"{len(p.skipped)} row(s) not approved")
        return ", ".join(parts) or "no data rows"

    # -- the human report --------------------------------------------------------------
    def _lines(self) -> None:
        p, who = self.p, f"dvault: {printable(self.name)}"
        for err in p.errors:
            click.echo(printable(f"{who}: {err}"), err=True)
        for hint in p.hints:
            click.echo(printable(f"dvault: hint: {hint}"), err=True)
        for text in self.notes:
            note(f"dvault: note: {text}")
        for what in self.unchecked:
            note(f"dvault: note: not checked against the vault ({what}): your role cannot read those fields")
        if p.unmapped:
            note(printable("dvault: note: column(s) not imported (no mapping rule uses them): "
                           + ", ".join(repr(h) for h in p.unmapped)))
        if p.skipped:
            note(f"dvault: note: {len(p.skipped)} row(s) skipped, the source marks them not approved "
                 f"(lines {_lines(line for line, _ in p.skipped)}); --include-unapproved imports them")
        verb = "updated" if self.apply and not self.dry_run else "would update" if self.apply or self.dry_run \
            else "changed in the source, not updated (use --update)"
        for u in p.updates:
            note(f"{who}: line {u.line}: {verb}: {', '.join(u.fields)}")
        if p.updates and p.not_compared:
            note(f"dvault: note: not compared (your role cannot read them): {', '.join(p.not_compared)}")
        if p.unchanged:
            note(f"dvault: note: {len(p.unchanged)} row(s) unchanged since the last import")
        note(f"{len(p.rows)} good row(s), {len(p.errors)} problem(s)"
             + (f", {len(p.updates)} update(s)" if p.updates else ""))

    # -- the JSON report ---------------------------------------------------------------
    def _document(self) -> dict[str, Any]:
        rows = self._rows()
        counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("added", "updated", "skipped", "refused")}
        return {"file": self.name, "dry_run": self.dry_run, "verdict": self.verdict, "rows": rows,
                "unmapped": self.p.unmapped, "not_compared": self.p.not_compared, "summary": counts,
                "error": self.failure}

    def _rows(self) -> list[dict[str, Any]]:
        p = self.p
        out: dict[int, dict[str, Any]] = {}
        will_import = self.verdict == "import"
        for line, values in p.rows:
            ok = will_import
            out[line] = _row(line, "added" if ok else "skipped", None if ok else
                             "not imported: other rows are bad" if self.failure else "not imported", sorted(values))
        for u in p.updates:
            ok = self.apply and will_import
            out[u.line] = _row(u.line, "updated" if ok else "skipped",
                               None if ok else "changed in the source: --update applies it", u.fields)
        for line in p.unchanged:
            out[line] = _row(line, "skipped", "unchanged since the last import", [])
        for line, why in p.skipped:
            out[line] = _row(line, "skipped", why, [])
        for err in p.errors:
            where = f"column {err.column!r}: " if err.column is not None else ""
            row = out.setdefault(err.line, _row(err.line, "refused", "", []))
            row["status"] = "skipped" if err.kind == "in_vault" else "refused"
            row["reason"] = "; ".join(x for x in (row["reason"], where + err.message) if x)
            if err.column is not None:
                row["columns"] = sorted(set(row.get("columns", [])) | {err.column})
        return [out[k] for k in sorted(out)]


def _row(line: int, status: str, reason: str | None, fields: list[str]) -> dict[str, Any]:
    return {"line": line, "status": status, "reason": reason, "fields": fields}


def _lines(lines: Any) -> str:
    nums = list(lines)
    return ", ".join(map(str, nums[:10])) + (f" and {len(nums) - 10} more" if len(nums) > 10 else "")
