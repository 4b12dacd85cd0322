"""PostgreSQL only: the insert guard on ``dv_audit`` (docs/format.md 13a, "Insert guard").

The staff clients' database login may append to the log (every staff client writes its own
entries), and it is one login shared by every staff member; without a guard it could insert
any row at all: one whose hash column is a byte long, one numbered 2^63-1 after which no
entry can be numbered (every open fails, fail-closed), one whose ``prev`` is not the
previous hash, one that leaves a gap, one of the older form after labelled ones. None of
those can be removed by any application login (neither may delete from the log).

So the tables' owner puts a ``BEFORE INSERT`` trigger on the table that refuses a row unless
its ``seq`` is the last one plus one (1 on an empty log), its ``prev`` is the previous row's
hash (the link audit_rows.link_of defines, for a malformed row inserted before the guard
existed), ``prev`` and ``hash`` are 32 bytes, ``actor`` and ``sig`` 64, ``0 <= at``, and
``hash`` is the SHA-256 of the entry as format.md 13a defines it, in the labelled form, or
in the older form while the previous entry has it. Ed25519 cannot be checked in SQL, so an
entry in a colleague's name stays quarantine's to judge (vault.audit_trust).

Why it holds against the staff login: the trigger and its functions belong to the owner;
dropping or disabling a trigger, or replacing a function, needs ownership, and the staff
login has neither the TRIGGER privilege nor CREATE on the schema (vault.postgres checks
both). It is enabled ALWAYS, so not even ``session_replication_role = replica`` (superuser
only) skips it. Its functions pin ``search_path`` to ``pg_catalog, pg_temp`` and name the
table with its schema, so nothing a session puts first in its own path is called.

Its cost: the head is read by the primary key (which an appender reads anyway) and two or
three SHA-256 over a few hundred bytes; appenders already queue on the append lock
(Store.lock_append) and read the head under it, so the trigger adds no serialisation. An
insert that races another (a login that ignores the lock) is refused by the primary key or
by the guard itself (it sees the committed head, or its own transaction's).
"""

from __future__ import annotations

from typing import Any

from . import _format as F

TRIGGER = "dv_audit_guard"

# (columns, not the table's row type: a function taking the row type would stop the table
# from being dropped, which the clean-up of a failed create does)
_NAME = """CREATE OR REPLACE FUNCTION {s}.dv_audit_row_name(seq bigint, prev bytea, at bigint, actor bytea,
    action text, target text, detail text, reason bytea, hash bytea, sig bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $name$
  SELECT sha256('\\x{row_label}'::bytea
    || 'i'::bytea || int8send(seq) || 'b'::bytea || int4send(octet_length(prev)) || prev
    || 'i'::bytea || int8send(at) || 'b'::bytea || int4send(octet_length(actor)) || actor
    || 't'::bytea || int4send(octet_length(convert_to(action, 'UTF8'))) || convert_to(action, 'UTF8')
    || 't'::bytea || int4send(octet_length(convert_to(target, 'UTF8'))) || convert_to(target, 'UTF8')
    || 't'::bytea || int4send(octet_length(convert_to(detail, 'UTF8'))) || convert_to(detail, 'UTF8')
    || 'b'::bytea || int4send(octet_length(reason)) || reason
    || 'b'::bytea || int4send(octet_length(hash)) || hash
    || 'b'::bytea || int4send(octet_length(sig)) || sig)
$name$"""

# The entry body (docs/format.md 13a), spelled inline so that plpgsql caches its plan: a call
# of a SQL function with its own search_path is planned afresh every time.
_BODY_OF = ("int8send({r}.seq) || int8send({r}.at) || {r}.prev || {r}.actor"
            " || set_byte('\\x00'::bytea, 0, octet_length(convert_to({r}.action, 'UTF8')))"
            " || convert_to({r}.action, 'UTF8')"
            " || set_byte('\\x00'::bytea, 0, octet_length(convert_to({r}.target, 'UTF8')))"
            " || convert_to({r}.target, 'UTF8')"
            " || int4send(octet_length(convert_to({r}.detail, 'UTF8'))) || convert_to({r}.detail, 'UTF8')"
            " || int4send(octet_length({r}.reason)) || {r}.reason")

_GUARD = """CREATE OR REPLACE FUNCTION {s}.dv_audit_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $guard$
DECLARE
  last record;
  link bytea := '\\x{genesis}'::bytea;
  older boolean := true;
  body bytea;
  n bigint;
BEGIN
  IF octet_length(NEW.prev) <> 32 OR octet_length(NEW.hash) <> 32 OR octet_length(NEW.actor) <> 64
      OR octet_length(NEW.sig) <> 64 OR NEW.at < 0 THEN
    RAISE EXCEPTION 'dv_audit: refused entry %: a column has the wrong size, or its time is negative', NEW.seq
      USING ERRCODE = 'check_violation';
  END IF;
  IF TG_TABLE_SCHEMA = {literal} AND TG_TABLE_NAME = 'dv_audit' THEN
    SELECT * INTO last FROM {s}.dv_audit ORDER BY seq DESC LIMIT 1;
  ELSE  -- the table was moved to another schema or renamed (its trigger went with it)
    EXECUTE format('SELECT * FROM %I.%I ORDER BY seq DESC LIMIT 1', TG_TABLE_SCHEMA, TG_TABLE_NAME) INTO last;
  END IF;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n > 0 THEN
    IF NEW.seq IS DISTINCT FROM last.seq + 1 THEN
      RAISE EXCEPTION 'dv_audit: refused entry %: the next entry is %', NEW.seq, last.seq + 1
        USING ERRCODE = 'check_violation';
    END IF;
    IF octet_length(last.hash) = 32 THEN
      link := last.hash;
      older := last.hash <> sha256('\\x{entry_label}'::bytea || {last_body});
    ELSE
      link := {s}.dv_audit_row_name(last.seq, last.prev, last.at, last.actor, last.action, last.target,
          last.detail, last.reason, last.hash, last.sig);
    END IF;
  ELSIF NEW.seq <> 1 THEN
    RAISE EXCEPTION 'dv_audit: refused entry %: the first entry is 1', NEW.seq USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.prev <> link THEN
    RAISE EXCEPTION 'dv_audit: refused entry %: its prev is not the previous entry''s hash', NEW.seq
      USING ERRCODE = 'check_violation';
  END IF;
  body := {new_body};
  IF NEW.hash = sha256('\\x{entry_label}'::bytea || body)
      OR (older AND NEW.hash = sha256('\\x{old_label}'::bytea || body)) THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'dv_audit: refused entry %: its hash is not that of its content in the form it must have', NEW.seq
    USING ERRCODE = 'check_violation';
END
$guard$"""


def _sql(schema: str, literal: str) -> list[str]:
    fill = {"s": schema, "literal": literal, "row_label": F.LABEL_AUDIT_ROW.hex(), "genesis": bytes(32).hex(),
            "entry_label": F.LABEL_AUDIT_ENTRY.hex(), "old_label": b"dvault/v1/audit".hex(),
            "last_body": _BODY_OF.format(r="last"), "new_body": _BODY_OF.format(r="NEW")}
    # '%' doubled: the driver reads the text as a query with (no) parameters
    return [text.format(**fill).replace("%", "%%") for text in (_NAME, _GUARD)]


def install(conn: Any) -> None:
    """Create (or replace) the guard's functions and trigger on the current schema's
    ``dv_audit`` and enable it ALWAYS; run by the tables' owner. Nothing on SQLite."""
    if conn.dialect.name != "postgresql":
        return
    schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
    quoted = conn.dialect.identifier_preparer.quote(schema)
    literal = "'" + schema.replace("'", "''") + "'"
    for statement in _sql(quoted, literal):
        conn.exec_driver_sql(statement)
    if state(conn) is None:
        conn.exec_driver_sql(f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON {quoted}.dv_audit "
                             f"FOR EACH ROW EXECUTE FUNCTION {quoted}.dv_audit_guard()")
    conn.exec_driver_sql(f"ALTER TABLE {quoted}.dv_audit ENABLE ALWAYS TRIGGER {TRIGGER}")


def state(conn: Any) -> str | None:
    """The guard's ``pg_trigger.tgenabled`` on the current schema's ``dv_audit`` ('A':
    always), or None if there is none."""
    row = conn.exec_driver_sql(
        "SELECT t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relname = 'dv_audit' AND t.tgname = %s", (TRIGGER,)).fetchone()
    return None if row is None else str(row[0])
