"""PostgreSQL only: how the connection is protected, and which database role may do what.

Two things a shared server needs that SQLite does not:

* **Transport.** A URL to a host other than this machine must ask libpq for
  ``sslmode=verify-full`` (TLS, and the server's certificate checked against a CA and its
  name): without it an observer on the path reads every row, lookup and audit entry as it
  passes, and an active one becomes the database server. The only way past the refusal is
  dvault's own URL option ``insecure_transport=1``, removed before the URL reaches the
  driver. Why in the URL and not a flag or an environment variable: it then travels with
  the one server it was decided for (``--vault``, ``DVAULT_URL``, the config file), cannot
  silently cover another, and whoever reads the configuration sees it; ``status`` shows it.
* **Roles.** The database login of staff and tool clients can read what a client needs
  and write records, their index and pseudonym rows, break-glass requests and audit
  appends, and nothing that holds keys, slots, users, the key statement, the schema, the
  version or the vault's marks (``dv_meta``, ``dv_slots``, ``dv_users``: SELECT only).
  The lead's login may write those too. Neither may change or delete the audit log, nor
  run DDL; only the tables' owner (who runs ``dvault init`` and ``dvault db-roles``) can.
  No row-level security: one database login serves every staff member, so the database
  cannot tell whose row is whose; who may do what to a row is decided by keys and
  signatures instead (docs/threat-model.md 3.5).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from .errors import VaultError

#: dvault's own URL query option accepting an unverified connection to a remote server.
OPT_OUT = "insecure_transport"
_YES, _NO = ("1", "yes", "true"), ("0", "no", "false")

_WRITE = ("SELECT", "INSERT", "UPDATE", "DELETE")
_APPEND = ("SELECT", "INSERT")

#: What the staff clients' login may do, per table. A table the vault gains must be added
#: here (tests/test_pg_roles.py fails until it is): a table missing from the map gets
#: SELECT only.
STAFF_GRANTS: dict[str, tuple[str, ...]] = {
    "dv_meta": ("SELECT",),  # keys statement, schema, plan, version, marks, canary list
    "dv_slots": ("SELECT",),
    "dv_users": ("SELECT",),
    "dv_records": _WRITE,
    "dv_index": _WRITE,
    "dv_pseudonyms": _WRITE,
    # a request is inserted; a reveal deletes the grant it takes, a shred the record's
    # requests; approving (UPDATE of the grant) is the lead's
    "dv_reveals": ("SELECT", "INSERT", "DELETE"),
    "dv_audit": _APPEND,
    "dv_shreds": _APPEND,  # the shred ledger: a shred appends its entry (vault.ledger)
}

#: What the lead's login may do: write every table, but only append to the audit log and the ledger.
LEAD_GRANTS: dict[str, tuple[str, ...]] = {**{t: _WRITE for t in STAFF_GRANTS}, "dv_audit": _APPEND,
                                           "dv_shreds": _APPEND}  # a deleted entry un-shreds at a restore

#: Every table privilege PostgreSQL knows (checked to be absent unless granted above).
_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


class TransportError(VaultError):
    """A PostgreSQL URL would reach a remote server without verified TLS."""


def _is_local(host: str) -> bool:
    if host.startswith(("/", "@")):  # a Unix socket directory, or a Linux abstract socket
        return True
    name = host.rsplit("%", 1)[0]  # an IPv6 zone (fe80::1%eth0)
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _hostname(host: str) -> str:
    """A host without the port the multi-host form may carry ("db:5432", "[::1]:5432")."""
    if host.startswith("[") and "]" in host:
        return host[1:host.index("]")]
    return host.split(":")[0] if host.count(":") == 1 else host


def _values(query: dict[str, Any], key: str) -> list[str]:
    got = query.get(key)
    if got is None:
        return []
    items = list(got) if isinstance(got, (tuple, list)) else [got]
    return [h for item in items for h in str(item).split(",") if h]


def _hosts(u: URL, query: dict[str, Any]) -> list[str] | None:
    """The hosts (and host addresses) libpq would reach; None if a service file decides."""
    hosts = ([u.host] if u.host else []) + _values(query, "host")
    if not hosts:
        if "service" in query or os.environ.get("PGSERVICE"):
            return None
        hosts = [h for h in os.environ.get("PGHOST", "").split(",") if h]
    hosts = [_hostname(h) for h in hosts]
    addrs = _values(query, "hostaddr") or [a for a in os.environ.get("PGHOSTADDR", "").split(",") if a]
    return hosts + addrs


def check_transport(url: str | URL) -> tuple[URL, str]:
    """(the URL to connect with, one line saying how the connection is protected) for a
    PostgreSQL URL; TransportError if a remote host is not reached with
    ``sslmode=verify-full`` and the URL does not carry ``insecure_transport=1``."""
    u = make_url(url)
    query = dict(u.query)
    raw = query.pop(OPT_OUT, None)
    clean = u.set(query=query)
    if isinstance(raw, (tuple, list)) or (raw is not None and raw.lower() not in _YES + _NO):
        raise TransportError(f"{OPT_OUT} takes 1 (accept an unverified connection) or 0")
    insecure = raw is not None and raw.lower() in _YES
    sslmode = str(query.get("sslmode") or os.environ.get("PGSSLMODE") or "prefer")
    if sslmode == "verify-full":
        return clean, "TLS, server certificate and name verified (sslmode=verify-full)"
    hosts = _hosts(u, query)
    remote = ["(a PostgreSQL service file)"] if hosts is None else [h for h in hosts if not _is_local(h)]
    if not remote:
        return clean, "local connection (this machine: no TLS needed)"
    if insecure:
        return clean, (f"NOT PROTECTED: {OPT_OUT}=1 accepts a connection to {remote[0]} without verified TLS "
                       f"(sslmode={sslmode}): anyone on the path can read and change it")
    raise TransportError(f"refusing to connect to {remote[0]} without verified TLS: add sslmode=verify-full "
                         "(with sslrootcert=/path/to/ca.pem) to the URL; or, to accept that anyone on the network "
                         f"path can read and change the traffic, {OPT_OUT}=1")


# -- database roles -------------------------------------------------------------------------


def _backend(url: str) -> str:
    try:
        return make_url(url).get_backend_name()
    except ArgumentError:  # a plain path: SQLite
        return "sqlite"


def _engine(url: str) -> Any:
    from .store_errors import StoreError
    try:
        return create_engine(check_transport(url)[0])
    except (ArgumentError, ImportError, SQLAlchemyError) as e:
        raise StoreError(f"cannot use database URL: {type(e).__name__}") from None


def check_roles(url: str, roles: Sequence[str]) -> None:
    """Refuse, before anything is written, role names that are not plain identifiers,
    roles that do not exist, a backend that has no roles (SQLite), a role no grant binds
    (a superuser, the tables' owner (the login running this), or a member of it), and a role
    that can make itself more: CREATEROLE (it can create roles and, before PostgreSQL 16,
    grant itself membership in any non-superuser role, the owner's included) or CREATEDB
    (a database of its own, where no grant of ours reaches)."""
    from .store_errors import StoreError, _connect_cause

    for role in roles:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
            raise VaultError("database role names are lower-case letters, digits and _")
    if _backend(url) != "postgresql":
        raise VaultError("database roles apply to PostgreSQL; SQLite has none")
    if len(set(roles)) != len(roles):
        raise VaultError("a database role is named twice (a login is either staff or lead, not both)")
    if not roles:
        return
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            me = conn.exec_driver_sql("SELECT current_user").scalar_one()
            found = conn.exec_driver_sql(
                "SELECT rolname, rolsuper, pg_has_role(rolname, current_user, 'MEMBER'), rolcreaterole, rolcreatedb "
                "FROM pg_roles WHERE rolname = ANY(%(r)s)", {"r": list(roles)}).fetchall()
    except SQLAlchemyError as e:
        raise StoreError(f"database error: {_connect_cause(e)}") from None
    finally:
        engine.dispose()
    known = {r[0]: bool(r[1]) or bool(r[2]) for r in found}
    grows = [r[0] for r in found if r[3] or r[4]]
    missing = [r for r in roles if r not in known]
    if missing:
        raise VaultError(f"no database role {missing[0]} (create it first, as the database owner)")
    mighty = [r for r in roles if known[r] or r == me]
    if mighty:
        raise VaultError(f"database role {mighty[0]} is a superuser or owns the vault's tables, so no grant can "
                         "stop it changing the audit log; give the application an ordinary role")
    if grows:
        raise VaultError(f"database role {grows[0]} has CREATEROLE or CREATEDB, with which it can give itself more "
                         f"than any grant here allows: ALTER ROLE {grows[0]} NOCREATEROLE NOCREATEDB first")


def grant_roles(url: str, *, staff: Sequence[str] = (), lead: Sequence[str] = ()) -> None:
    """Give each staff role :data:`STAFF_GRANTS` and each lead role :data:`LEAD_GRANTS` on
    the vault's tables (and USAGE on its schema), after revoking whatever they had; then
    check the privileges they end up with (through PUBLIC or a role they belong to too) and
    refuse, changing nothing, if any is more than that. Run as the tables' owner; ``dvault
    init`` runs it for a new vault and ``dvault db-roles`` for an existing one."""
    from .store_errors import StoreError, _cause

    check_roles(url, [*staff, *lead])
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            _apply(conn, staff, lead)
    except SQLAlchemyError as e:
        raise StoreError(f"database error: {_cause(e)}") from None
    finally:
        engine.dispose()


def _apply(conn: Any, staff: Sequence[str], lead: Sequence[str]) -> None:
    schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
    if conn.exec_driver_sql("SELECT to_regclass('dv_meta')").scalar_one() is not None:
        from .ledger import ensure
        ensure(conn)  # the ledger table, so that its grants are given too
    owners = dict(conn.exec_driver_sql(
        "SELECT tablename, tableowner = current_user FROM pg_tables WHERE schemaname = current_schema() "
        "AND left(tablename, 3) = 'dv_'").fetchall())
    tables = sorted(owners)
    if "dv_meta" not in owners:
        raise VaultError("no vault in this database (or not in the schema this URL selects)")
    if not all(owners.values()):
        raise VaultError("run this as the owner of the vault's tables (the login that ran dvault init)")
    quoted = conn.dialect.identifier_preparer.quote(schema)
    _guard(conn)
    for role, grants in [(r, STAFF_GRANTS) for r in staff] + [(r, LEAD_GRANTS) for r in lead]:
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {quoted} TO {role}")
        conn.exec_driver_sql(f"REVOKE CREATE ON SCHEMA {quoted} FROM {role}")
        for table in tables:
            conn.exec_driver_sql(f"REVOKE ALL ON {table} FROM {role}")
            conn.exec_driver_sql(f"GRANT {', '.join(grants.get(table, ('SELECT',)))} ON {table} TO {role}")
        _check_effective(conn, role, schema, tables, grants)


def _guard(conn: Any) -> None:
    """Put the audit log's insert guard (vault.audit_guard) in place, enabled ALWAYS: a
    vault made before it existed gets it here, and one whose guard the owner disabled or
    dropped gets it back. Why here: the grants let the staff login append, and the guard is
    what keeps an appended row one the chain can take."""
    from .audit_guard import install, state
    install(conn)
    if state(conn) != "A":
        raise VaultError("the audit log's insert guard could not be enabled; nothing was granted")


def _check_effective(conn: Any, role: str, schema: str, tables: list[str], grants: dict[str, tuple[str, ...]]) -> None:
    """Refuse (the caller's transaction rolls back) if ``role`` holds any privilege beyond
    ``grants``, e.g. through PUBLIC or a group role: a REVOKE from the role does not touch
    those, and a staff login that can still UPDATE dv_meta is what this setup is for."""
    if conn.exec_driver_sql("SELECT has_schema_privilege(%s, %s, 'CREATE')", (role, schema)).scalar_one():
        raise VaultError(f"database role {role} can create objects in schema {schema} (through PUBLIC or a role it "
                         f"belongs to): REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC (or that role) first")
    for table in tables:
        allowed = grants.get(table, ("SELECT",))
        for priv in _PRIVILEGES:
            if priv in allowed:
                continue
            if conn.exec_driver_sql("SELECT has_any_column_privilege(%s, %s, %s)" if priv in ("SELECT", "INSERT",
                                    "UPDATE", "REFERENCES") else "SELECT has_table_privilege(%s, %s, %s)",
                                    (role, table, priv)).scalar_one():
                raise VaultError(f"database role {role} can still {priv} {table} (through PUBLIC or a role it "
                                 f"belongs to): revoke that first")
