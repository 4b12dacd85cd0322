"""Shared plumbing for dvault commands: finding the vault and identity, unlocking,
reasons, and output. No crypto and no record logic here: that is the library's.

Imports of the library's heavy parts (SQLAlchemy, the crypto libraries) happen inside the
functions that need them, so that commands which never open a vault start fast."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

import vault

from .secrets_input import IDENTITY_ENV, RECOVERY_ENV, read_passphrase

if TYPE_CHECKING:
    from vault.identity import Identity
    from vault.schema import Schema

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: The keys the config file may set, and what each means (dvault --help and docs/guide.md).
CONFIG_KEYS = {
    "vault": "the vault to open when neither --vault nor DVAULT_URL names one",
    "identity": "your identity file when neither --identity nor DVAULT_IDENTITY names one",
    "shell_idle_lock": "how long dvault shell waits without input before it locks (90s, 5m, 1h)",
}


def config_path() -> Path:
    """DVAULT_CONFIG, else config.toml in the per-user config folder (on Linux
    ~/.config/defenders-vault/config.toml)."""
    if os.environ.get("DVAULT_CONFIG"):
        return Path(os.environ["DVAULT_CONFIG"])
    import platformdirs
    return Path(platformdirs.user_config_dir("defenders-vault", appauthor=False)) / "config.toml"


def config() -> dict[str, Any]:
    """``vault = "..."``, ``identity = "..."`` and ``shell_idle_lock = "5m"`` from the user's
    config file, if any."""
    import tomllib

    from vault._files import check_private

    p = config_path()
    if not p.is_file():
        return {}
    check_private(p, "config file")  # it names the vault and the identity: another account must not
    try:
        data = tomllib.loads(p.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError):  # nesting: tomllib recurses
        raise click.UsageError(f"cannot read config file {p}") from None
    return {k: v for k, v in data.items() if k in CONFIG_KEYS and isinstance(v, str)}


def vault_url(given: str | None) -> str:
    url = given or os.environ.get("DVAULT_URL") or config().get("vault")
    if not url:
        raise click.UsageError("no vault given: use --vault URL, set DVAULT_URL, or put vault = \"...\" in "
                               f"{config_path()}")
    return url


def shown_url(url: str) -> str:
    """A vault location fit to print: a database URL loses its password."""
    if "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # unparsable: show nothing of it rather than a secret
        return "(database URL)"


def identity_path(given: Path | None) -> Path | None:
    """The identity to unlock with: --identity, DVAULT_IDENTITY, the config file's
    ``identity``, else the file ``dvault keygen`` writes by default if it is there (None:
    there is none, and the recovery passphrase is asked for)."""
    if given is not None:
        return given
    if os.environ.get("DVAULT_IDENTITY"):
        return Path(os.environ["DVAULT_IDENTITY"])
    if config().get("identity"):
        return Path(config()["identity"]).expanduser()
    default = default_identity_path()
    return default if default.is_file() else None


def default_identity_path() -> Path:
    """Where ``dvault keygen`` and ``dvault init`` put an identity when not told otherwise."""
    from vault.identity import default_path

    return default_path()


def sqlite_file(url: str) -> str | None:
    """The file a SQLite vault location names (a bare path, or sqlite:///PATH), else None."""
    if "://" not in url:
        return url
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):].split("?", 1)[0]
        return path or None
    return None


def check_vault_there(url: str) -> None:
    """A SQLite vault file that is not there is said before any passphrase is asked for
    (a mistyped path is not a wrong passphrase). Database URLs are checked on open."""
    path = sqlite_file(url)
    if path is not None and not os.path.isfile(path):
        raise vault.NotFound(f"no vault at {path} (check --vault, DVAULT_URL or the config file {config_path()})")


def pins_path(ident_path: Path) -> Path:
    """The known-vaults file of an identity: beside it, so each person's pins travel with
    their identity (vault.pins)."""
    return ident_path.with_name(ident_path.name + ".vaults")


def checkpoints_path(ident_path: Path) -> Path:
    """The lead's checkpoints of each vault's audit log, beside their identity
    (vault.canaries.witness): kept where no database writer reaches."""
    return ident_path.with_name(ident_path.name + ".checkpoints")


def after_open(v: vault.Vault, ident_path: Path | None) -> vault.Vault:
    """What the lead must see at every open, --quiet or not: the vault's warnings (a key slot
    gone), and, with a managing identity, the log checked against the checkpoint kept at
    the last open, a new one kept, and the canary alarms written since."""
    for w in v.warnings:
        warn(f"dvault: warning: {w}")
    if ident_path is None or not v.role.manage or v.user is None:
        return v
    try:
        seen = v.witness(checkpoints_path(ident_path))
    except BaseException:
        v.close()
        raise
    if seen["alarms"]:
        click.echo(click.style(f"dvault: ALARM: {len(seen['alarms'])} canary access(es) since your last open (the "
                               "log up to here is now checkpointed in " f"{checkpoints_path(ident_path)}); see dvault "
                               "audit show --action alarm and dvault status", fg="red"), err=True)
    return v


class _Preload:
    """The library's heavy modules (SQLAlchemy, the vault itself), imported on a thread
    while the passphrase is typed and the identity's Argon2id runs (which releases the
    GIL): an unlock then waits for the slower of the two, not for their sum. A context
    manager, joined before the vault is opened, so no thread is left when the library
    forks workers."""

    def __init__(self) -> None:
        import gc
        import threading

        # No cycle collection while the modules load: they make no garbage, and each full
        # collection would walk every object loaded so far. On again when the with ends.
        self._collecting = gc.isenabled()
        gc.disable()
        self._thread = threading.Thread(target=self._run, name="dvault-preload", daemon=True)
        self._thread.start()

    @staticmethod
    def _run() -> None:
        try:
            import vault.vault  # noqa: F401 - imported for its side effect: the modules are loaded
        except BaseException:  # noqa: S110 - the open that follows imports it again and reports the failure
            pass

    def __enter__(self) -> _Preload:
        return self

    def __exit__(self, *exc: object) -> None:
        """Joined whatever happens (a wrong passphrase too): no import is left running on
        another thread, and the collector is on again, before the caller goes on."""
        import gc

        self._thread.join()
        if self._collecting:
            gc.enable()


def open_vault(url: str | None, identity: Path | None, passphrase_file: Path | None,
               recovery: bool = False) -> vault.Vault:
    """Unlock with the user's identity (its passphrase is prompted), or with the recovery
    passphrase when no identity is configured or ``--recovery`` is given."""
    return open_vault_as(url, identity, passphrase_file, recovery)[0]


def open_vault_as(url: str | None, identity: Path | None, passphrase_file: Path | None,
                  recovery: bool = False, *, ask: bool = False) -> tuple[vault.Vault, Identity | None]:
    """open_vault, and the identity it was opened with (None: the recovery passphrase), for
    a command that also signs as that person (a sealed export). ``ask``: the passphrase
    from a prompt only, never a variable (the shell's unlock after its idle lock)."""
    target = vault_url(url)
    check_vault_there(target)
    ident_path = None if recovery else identity_path(identity)
    if ident_path is not None:
        if not ident_path.is_file():  # say so before asking for its passphrase
            raise vault.NotFound(f"no identity file at {ident_path}")
        from vault.identity import Identity  # on this thread, before the preload starts: no import

        with _Preload():  # of a vault module runs on two threads at once
            pw = read_passphrase(passphrase_file, f"Passphrase for identity {ident_path.name}",
                                 env=() if ask else IDENTITY_ENV)
            ident = Identity.load(ident_path, pw)
        from vault.pins import known as known_vaults

        pins_file = pins_path(ident_path)
        before = known_vaults(pins_file)
        v = vault.open(target, identity=ident, pins=pins_file)
        if v.id not in before:  # a first sight is trusted, not checked: say so, even under --quiet
            warn(f"dvault: warning: first open of vault {v.id} with this identity, at {shown_url(target)}: "
                 f"nothing was pinned for it, so its keys were trusted as found and are now pinned in "
                 f"{pins_file}; compare them with the pin line the lead sent you (dvault pin show), and "
                 f"next time record that line first (dvault pin add)")
        return after_open(v, ident_path), ident
    with _Preload():
        pw = read_passphrase(passphrase_file, "Vault recovery passphrase", env=() if ask else RECOVERY_ENV)
    return after_open(vault.open(target, pw), None), None


_VAULT_OPTS = [
    click.option("--vault", "vault_url", metavar="URL", help="Vault: SQLite path or database URL (or DVAULT_URL)."),
    click.option("--identity", type=click.Path(dir_okay=False, readable=False, path_type=Path),
                 help="Your identity file (or DVAULT_IDENTITY, or identity in the config file, or the file "
                      "dvault keygen made by default)."),
    click.option("--recovery", is_flag=True, help="Unlock with the recovery passphrase instead of an identity."),
    click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="Read the passphrase from this file (else DVAULT_IDENTITY_PASSPHRASE, or with "
                      "--recovery DVAULT_RECOVERY_PASSPHRASE; else DVAULT_PASSPHRASE; else a prompt)."),
]


def vault_options(f: F) -> F:
    for opt in reversed(_VAULT_OPTS):
        f = opt(f)
    return f


def unlock(kw: dict[str, Any], *, advice: bool = True) -> vault.Vault:
    v = open_vault(kw.pop("vault_url"), kw.pop("identity"), kw.pop("passphrase_file"), kw.pop("recovery"))
    if advice:  # the blind-index plan far from the live record count (threat model 7.2)
        try:
            for w in v.index_advice():
                note(f"dvault: warning: {w}")
        except BaseException:
            v.close()
            raise
    return v


def quiet() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("quiet"))


def note(message: str) -> None:
    """Progress and confirmations on stderr; silenced by ``dvault --quiet``."""
    if not quiet():
        click.echo(message, err=True)


def warn(message: str) -> None:
    """A trust decision the user must see (a vault or a sender taken on trust, a recipient
    about to get data) on stderr, with or without ``--quiet``: a script that silences
    progress must not silence what it would have to act on."""
    click.echo(message, err=True)


Step = Callable[[int, int], None]


@contextlib.contextmanager
def progress_bar(label: str, total: int, *, show: bool = True) -> Iterator[Step | None]:
    """A progress bar on stderr for long work, fed by the ``step(done, total)`` it yields;
    ``None`` (no bar) unless stderr is a terminal, the count is known and nothing asked for
    quiet: ``--quiet``, a machine-readable output (``show=False`` under ``--json``), or a
    pipe. The one hook every long job uses (import, export, rotate, move, a backup)."""
    if not show or quiet() or not sys.stderr.isatty() or total <= 0:
        yield None
        return
    bar = click.progressbar(length=total, label=label, file=sys.stderr)
    seen = [0]

    def step(done: int, of: int) -> None:
        if of > 0 and of != bar.length:  # the job counts its own units (a backup: rows read and written)
            bar.length = of
        bar.update(max(0, done - seen[0]))
        seen[0] = max(seen[0], done)
    with bar:
        yield step


def with_progress(label: str, total: int, job: Callable[[Step | None], T], *, show: bool = True) -> T:
    """Run ``job(step)`` inside :func:`progress_bar`; returns what the job returns."""
    with progress_bar(label, total, show=show) as step:
        return job(step)


@contextlib.contextmanager
def answered(error: str) -> Iterator[None]:
    """Around one click prompt: no answer to read is the usage error ``error`` (one line,
    exit 1), not "aborted" or an internal error. That is end of input (Ctrl-D, an empty
    pipe: click's Abort), and no standard input at all (``dvault ... <&-``: Python sets
    sys.stdin to None, and click's prompt then fails with RuntimeError "lost sys.stdin")."""
    if sys.stdin is None or sys.stdin.closed:
        raise click.UsageError(f"{error}; standard input is closed")
    try:
        yield
    except click.exceptions.Abort:
        click.echo(err=True)  # end the prompt's line
        raise click.UsageError(error) from None
    except RuntimeError as e:
        if "lost sys.stdin" not in str(e):
            raise
        raise click.UsageError(f"{error}; standard input is closed") from None


def confirm(question: str, *, option: str = "--yes", default: bool = False) -> None:
    """Ask yes/no on stderr; no means Abort. With no answer to read (no terminal, end of
    input) the error says which option answers it in a script, rather than "aborted"."""
    with answered(f"no answer to: {question} (no terminal? check first, then give {option})"):
        ok = click.confirm(question, default=default, err=True)
    if not ok:
        raise click.Abort()


def need_stdout(what: str) -> None:
    """Refuse, before anything is read, written or audited, a command whose results would
    go to a closed standard output (``dvault list >&-``): click.echo then writes nothing
    and the command would exit 0, its results (or a split's only copy of the shares) gone."""
    out = sys.stdout
    if out is None or out.closed:
        raise click.UsageError(f"standard output is closed: nowhere to write {what} (redirect it to a file "
                               "or a pipe)")


def write_stdout(lines: Iterable[str], what: str, consequence: str = "") -> None:
    """``lines`` on stdout, flushed: a full disk or a closed pipe is an error naming what
    could not be written (exit 6), and ``consequence`` (``; ...``), raised here rather than
    at exit, where it would pass unnoticed once the command reported success."""
    need_stdout(what)
    out = sys.stdout
    assert out is not None
    try:
        for line in lines:
            out.write(line + "\n")
        out.flush()
    except OSError as e:
        raise vault.Unavailable(f"cannot write {what} to standard output: "
                                f"{e.strerror or type(e).__name__}{consequence}") from None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest known name, or nothing."""
    close = difflib.get_close_matches(name.strip().lower(), list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_fields(schema: Schema, names: Sequence[str], what: str = "field") -> list[str]:
    """``names`` if each is a field of the schema, else a usage error naming the first
    unknown one and the closest known field."""
    for n in names:
        if n not in schema.fields:
            hint = did_you_mean(n, schema.fields) or f" (the fields: {', '.join(schema.fields)})"
            raise click.UsageError(f"unknown {what} {printable(n)!r}{hint}")
    return list(names)


def reason_option(f: F) -> F:
    return click.option("--reason", help="Why you need this access (recorded, sealed to the lead). "
                                         "Prompted if missing; use the prompt when the reason names "
                                         "someone, since options stay in shell history.")(f)


def set_reason(v: vault.Vault, reason: str | None) -> str:
    """Every access needs a reason: from --reason or a prompt, recorded in the audit log.
    Returns it (the shell sets it again on the handle it opens after an idle lock)."""
    text = reason if reason and reason.strip() else prompt_line("Reason for this access", "--reason")
    if not text.strip():
        raise click.UsageError("a reason is required")
    v.set_reason(text.strip())
    return text.strip()


def prompt_line(label: str, option: str, **kw: Any) -> str:
    """A visible prompt (``kw``: click.prompt's); end of input (no terminal, Ctrl-D) or a
    closed stdin is one error line naming the option that would have given the answer,
    not "Label: dvault: error: aborted" or an internal error."""
    with answered(f"no input for: {label} (give {option})"):
        text = str(click.prompt(label, err=True, **kw))
    return text


def fields_arg(text: str | None, schema: Schema | None = None) -> list[str] | None:
    """The names of a ``--fields a,b`` option, each checked against ``schema`` if given."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise click.UsageError("--fields needs at least one field name")
    return check_fields(schema, names) if schema is not None else names


#: What a terminal acts on instead of showing: C0 and C1 controls and DEL (escape
#: sequences move the cursor, rewrite lines, set titles, write the clipboard), and the
#: bidirectional embeddings, overrides and isolates, which reorder the text around them.
_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` as a terminal may safely show it. Why: field values come from registration
    forms, that is from anyone, including whoever wants to hide a row from a staff
    member's screen or spoof another; reasons come from every user. Each such character
    is shown as an escape (``\\x1b``, ``\\u202e``); with ``lines``, newlines and tabs stay."""
    def escape(m: re.Match[str]) -> str:
        ch = m.group()
        if lines and ch in "\n\t":
            return ch
        return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"
    return _UNSHOWABLE.sub(escape, text)


def json_line(obj: Any, **kw: Any) -> str:
    """JSON for the terminal or a pipe: the same characters escaped, as JSON escapes
    (json.dumps already escapes C0 controls; not DEL, C1 or the bidi controls)."""
    return _UNSHOWABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(obj, ensure_ascii=False, **kw))


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):  # a list field: its items, as typed back at a prompt
        return ", ".join(value)
    return str(value)


def table(rows: Iterable[dict[str, Any]], columns: list[str]) -> str:
    """A plain aligned table: readable on any terminal, no colour codes when piped."""
    data = [[c for c in columns]] + [[printable(cell(r.get(c)).replace("\n", " ")) for c in columns] for r in rows]
    widths = [min(40, max(len(row[i]) for row in data)) for i in range(len(columns))]
    lines = []
    for n, row in enumerate(data):
        cells = (c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(row, widths, strict=True))
        line = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        lines.append(click.style(line, bold=True) if n == 0 else line)
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def emit(rows: list[dict[str, Any]], columns: list[str], as_json: bool, quiet_: bool = False) -> None:
    if as_json:
        for r in rows:
            click.echo(json_line({c: _jsonable(r.get(c)) for c in columns}))
    elif rows:
        click.echo(table(rows, columns))
    elif not quiet_:
        note("no records")
