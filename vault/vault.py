"""The :class:`Vault`: the one object callers (library users and the CLI) talk to.

A facade: each public method checks its arguments, asks the collaborator that owns the
work (docs/architecture.md) and writes the call's audit entry through vault.journal,
in the work's transaction where the entry must stand or fall with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from . import _format as F
from . import breakglass, enrol, rotation
from . import index as I
from . import keys as K
from . import moving as M
from . import opening as O
from . import schema as S
from . import users as U
from .access import Access
from .args import check_batch, check_names, check_path, check_progress, check_rows, check_text
from .audit import RecordCheck
from .auditing import AuditView
from .canaries import Canaries
from .errors import IntegrityError, KeysChanged, NotFound, ValidationError, utf8
from .identity import Identity, PublicIdentity, check_identity
from .journal import Journal
from .lifecycle import LifecycleCalls
from .plans import Plans
from .pseudonyms import Pseudonyms, record_id_bytes
from .record import Record
from .records import Records, field_names
from .search import Search
from .session import Session
from .status import status_of
from .store import Store, StoreError
from .writes import WriteCalls

#: How often open() starts again when another client's rotation, revocation or re-seal
#: committed between its reads (its keys changed under it: nothing was wrong with them).
OPEN_ATTEMPTS = 5


def create(url: str | os.PathLike[str], passphrase: str, *, schema: str | os.PathLike[str] | None = None,
           kdf: F.KdfParams | None = None, population: int | None = None, k: int | None = None,
           precise: bool = False, lead: Identity | None = None, lead_name: str = "lead",
           _moving_from: str = "", _moving_sign: Callable[[bytes], bytes] | None = None) -> Vault:
    """Create a new vault (refusing to overwrite one) and return it open.

    ``schema`` is TOML text or a path (``pathlib.Path``) to a TOML file; the default is
    the participant schema shipped in ``vault/schemas/participant.toml``. ``population``
    (expected number of records) and ``k`` (records expected to share each blind-index
    value) size the indexes; they default to the schema's ``expected_population`` and
    ``k_anonymity``. The indexes are planned jointly (vault.index.joint_bits) unless
    ``precise`` (large vaults, explicitly: each index gets the whole budget, which makes
    searches faster and lets the tuple of a record's buckets single it out; threat model
    7.2). Re-plan later with :meth:`Vault.reindex`. ``lead`` enrols the
    security lead's identity (who signs the user table and can enrol others); the
    passphrase then serves as the recovery key.

    ``_moving_from`` (vault.move only): the source vault's id, stored as the ``moving``
    mark in the first commit with the mover's signature (``_moving_sign`` returns who ||
    signature; vault.moving); open() refuses the vault until the move's import clears it.
    """
    text = O.schema_text(schema)
    parsed = S.load(text)
    population, k = O.plan_args(parsed, population, k, precise)
    params = F.KDF_DEFAULT if kdf is None else kdf
    K.check_kdf(params)
    K.passphrase_bytes(passphrase)
    check_identity(lead, "lead")
    if lead is not None:
        U.check_name(lead_name)  # before anything is written: a failure after it would leave a half vault
    store = Store(O.normalise_url(url), create=True)
    made: set[str] = set()
    try:
        O.check_empty(store)
        opened = O.make(store, text, parsed, passphrase, params, (population, k), precise, lead,
                        (_moving_from, _moving_sign))
        made = store.vault_tables()  # committed, and none was there before: ours to drop on failure
        v = Vault(opened)
        v._audit("create", "", {"schema": parsed.name, "population": population, "k": k, "plan": opened.plan.mode})
        if lead is not None:
            v._ses.identity = lead
            v.add_user(lead.public, lead_name, next(r.name for r in parsed.roles.values() if r.manage))
            v._setup_auditor()  # reasons from now on are sealed to the lead, as after any open
    except BaseException:
        O.discard(store, made)  # no half-made vault left behind
        raise
    return v


def discard_unfinished_move(url: str | os.PathLike[str], source: Vault | None = None) -> str | None:
    """See vault.moving.discard_unfinished_move (a re-run of vault.move)."""
    from .moving import discard_unfinished_move as discard
    return discard(os.fspath(url), source._access if source is not None else None)


def discard_new(v: Vault) -> None:
    """Close and remove a vault made moments ago whose filling failed (vault.move): every
    ``dv_*`` table is its own, as create() refuses a place that holds any."""
    store = v._ses.store()
    made = store.vault_tables()
    v.close()
    O.discard(store, made)


def open(url: str | os.PathLike[str], passphrase: str | None = None, *,
         identity: Identity | None = None, pins: str | os.PathLike[str] | None = None) -> Vault:
    """Open an existing vault with the passphrase (all keys) or a user's identity (their
    role's keys); raises WrongPassphrase, AccessDenied, NotFound, IntegrityError.

    ``pins``: a known-vaults file (see vault.pins). With an identity, the first open
    records the vault's key fingerprint there and later opens refuse different keys, which
    is what a replaced key slot would give. The CLI keeps one next to each identity file.

    Why the retry: open reads the slots in one snapshot and checks the user table and key
    statement in later ones; a rotation committing in between is KeysChanged, which a
    fresh start resolves."""
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return _open_once(url, passphrase, identity=identity, pins=pins)
        except KeysChanged:
            if attempt == OPEN_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _open_once(url: str | os.PathLike[str], passphrase: str | None, *, identity: Identity | None,
               pins: str | os.PathLike[str] | None) -> Vault:
    if (passphrase is None) == (identity is None):
        raise ValidationError("open a vault with either a passphrase or an identity")
    check_identity(identity, "identity")
    if passphrase is not None:
        K.passphrase_bytes(passphrase)
    pins = None if pins is None else check_path(pins, "pins")
    store = Store(O.normalise_url(url), create=False)
    try:
        opened = O.unlock(store, passphrase, identity, pins)
        v = Vault(opened)  # its set-up reads the user table again: a failure must not leak the connection
    except BaseException:
        store.dispose()
        raise
    try:
        target = O.target_version(opened)
        if O.needs_upgrade(opened, target):
            v._upgrade(opened.db_version, target, resign=opened.signer,
                       **({"raised": opened.raised} if opened.raised is not None else {}))
        v._ses.db_known = max(opened.db_version, target)
        if opened.signer:
            O.check_signer(v._opening, opened)
        v._audit("open", "", {"as": "identity" if identity else "passphrase"})
    except BaseException:
        v.close()
        raise
    return v


def move(src: Vault, url: str | os.PathLike[str], passphrase: str, *, lead: Identity,
         lead_name: str = "lead", kdf: F.KdfParams | None = None,
         progress: Callable[[int, int], None] | None = None) -> M.Moved:
    """Copy every record of ``src`` into a new vault at ``url`` led by ``lead``, whose
    recovery passphrase is ``passphrase``; returns it open.

    ``src`` must be opened with every class key and a managing role (the recovery
    passphrase or the lead's identity). The new vault gets the same schema text and index
    sizing. All or nothing: if anything fails after the new vault was created, it is
    removed again (the new vault is made first, so a refused destination costs no read
    of the source). A process killed part way cannot remove it: the new vault carries a
    ``moving`` mark from its first commit, signed by ``src``'s signer and cleared in the
    transaction that imports the records, and open() refuses a vault with the mark;
    running the move again sets such a vault aside (vault.moving: renamed and kept, never
    a finished one, never one whose mark this source did not sign). Audited on both sides:
    the source logs an ``export`` of every field, the new vault an ``import``."""
    if not isinstance(src, Vault) or not isinstance(lead, Identity):
        raise ValidationError("move() takes an open Vault (src) and the new lead's Identity (lead)")
    check_progress(progress)
    plan, sign = M.prepare(src._mover, url, lead)
    # made first: a refused destination (a vault already there) costs no read of the source
    dest = create(url, passphrase, schema=src.schema.source, kdf=kdf, population=plan.population,
                  k=plan.k, precise=plan.mode == "precise", lead=lead, lead_name=lead_name, _moving_from=src.id,
                  _moving_sign=sign)
    try:
        n, marked = M.fill(src._mover, dest._mover, progress)
    except BaseException:
        discard_new(dest)
        raise
    return M.Moved(dest, n, marked, dest._ses.store().url)


class Vault(WriteCalls, LifecycleCalls):
    """An open vault. Use as a context manager; ``close()`` drops key references.

    Python cannot wipe memory: closing removes our references to key material so
    the garbage collector may reclaim it, nothing more (see docs/threat-model.md).
    """

    def __init__(self, opened: O.Opened) -> None:
        ses = self._ses = Session(opened.store, opened.vault_id, opened.schema, opened.user, opened.identity,
                                  opened.db_version)
        access = self._access = Access(ses, opened.ring, opened.slot_kid, opened.slot_secret, opened.keys_blob)
        plans = self._plans = Plans(ses, access, opened.plan, opened.pending)
        names = self._pseudonyms = Pseudonyms(ses, access)
        journal = self._journal = Journal(ses, None, names)  # type: ignore[arg-type]  # set just below
        self._setup_auditor()
        canaries = self._canaries = Canaries(ses, access, journal)
        records = self._records = Records(ses, access, plans, names, journal, canaries)
        search = self._search = Search(ses, access, plans, records, journal)
        self._log = AuditView(access, journal, records, names)
        self._rotor = rotation.Parts(access, records, plans, search, journal)
        self._desk = breakglass.Desk(access, records, names, journal, canaries)
        self._mover = M.Source(access, records, canaries, journal, plans)
        self._opening = O.Parts(access, records, canaries, journal)

    # -- who opened it, and what they may do ------------------------------------------------------
    @property
    def user(self) -> U.User | None:
        return self._ses.user

    @property
    def role(self) -> S.Role:
        return self._ses.role

    @property
    def schema(self) -> S.Schema:
        return self._ses.schema

    @property
    def warnings(self) -> list[str]:
        """What the lead should know (a key slot the statement names is missing): the CLI prints them."""
        return self._ses.warnings

    @property
    def readable_fields(self) -> list[str]:
        """Fields whose class key this opener holds."""
        return self._access.readable_fields()

    @property
    def writable_fields(self) -> list[str]:
        """Fields this opener may fill in on a new record (readable or write-only classes)."""
        a = self._access
        return [n for n, f in self.schema.fields.items() if f.cls in a.current or f.cls in a.class_pub]

    @property
    def purposes(self) -> list[str]:
        """Pseudonym purposes this opener holds keys for."""
        return [p for p in self.schema.purposes if p in self._access.purposes]

    @property
    def recovery_actor_id(self) -> str:
        """The audit log's actor id for whoever opens the vault with the recovery passphrase
        (one actor for all of them: the passphrase names no one)."""
        from .audit import actor_id
        return actor_id(self._access.recovery_public())

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._ses.vid.hex()

    def __repr__(self) -> str:
        state = "closed" if self._ses.closed else "open"
        return f"<Vault {self.id} schema={self.schema.name} {state}>"

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._ses.close()
        self._access.close()
        self._plans.close()

    def _setup_auditor(self) -> None:
        """(Re)build the log writer from the keys and the signed user table: at open, and
        once create() has enrolled the lead."""
        self._journal.auditor = self._access.make_auditor()

    def _upgrade(self, stored: int, target: int, *, resign: bool, raised: int | None = None) -> None:
        """Bring the database to ``target`` (vault.opening.upgrade): open() calls it."""
        O.upgrade(self._opening, stored, target, resign=resign, raised=raised)

    def _audit(self, action: str, target: str = "", detail: dict[str, Any] | None = None) -> None:
        """Write one entry of this opener's (a front end's own action, e.g. a suspension request)."""
        self._journal.record(action, target, detail)

    def pin(self, path: str | os.PathLike[str], *, created: bool = False) -> bool:
        """Record this vault's key fingerprint and location in a known-vaults file, or check
        them against those recorded (vault.pins); the CLI's ``init`` pins the vault it
        creates (``created``: this vault now holds its location, whatever vault was opened
        there before). True if the file had no line for this vault before."""
        from .pins import check as check_pin
        store = self._ses.store()  # VaultClosed on a closed vault
        ring = self._access.ring
        assert ring is not None
        return check_pin(check_path(path), self._ses.vid, self._access.meta_secret(), O.pin_signers(ring),
                         location=store.url, created=created)

    @property
    def pin_line(self) -> str:
        """``vault-id fingerprint signers`` of this vault's keys (no secret): the lead sends it with
        an enrolment, and the user records it (vault.pins.add, ``dvault pin add``) before
        their first open, which is then checked rather than trusted."""
        from .pins import fingerprint
        self._ses.store()  # VaultClosed on a closed vault
        ring = self._access.ring
        assert ring is not None
        return f"{self.id} {fingerprint(self._ses.vid, self._access.meta_secret())} {O.pin_signers(ring)}"

    def set_reason(self, reason: str | None) -> None:
        """The reason attached (sealed to the lead) to every following audit entry."""
        if reason is not None and (not isinstance(reason, str) or not reason.strip()):
            raise ValidationError("a reason must be non-empty text")
        if reason is not None:
            utf8(reason, "a reason must be valid UTF-8 text")
        self._journal.auditor.reason = reason

    # -- records ----------------------------------------------------------------------------------
    def add(self, values: Mapping[str, Any]) -> str:
        """Encrypt and store one record; returns its random id (32 hex characters)."""
        return self.add_many([values])[0]

    def add_many(self, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Validate every row first, then store them all in one transaction (all or nothing)."""
        rows = check_rows(rows, "add_many")
        j = self._journal
        j.guard("add", lambda: self._access.need_writable("adding records"))
        ids = j.guard("add", lambda: self._records.add_many(rows))  # its "add" entry commits with the rows
        self._canaries.alarm_if_canary(ids, "add")
        return ids

    def require_writable(self, op: str = "add") -> None:
        """AccessDenied (logged as 'denied', as ``add``/``import_rows`` would log it) unless this
        role may write every class, as adding and importing need. Front ends call it before
        they prompt for a field or report on a file, so a refusal is one line, not the end
        of a dialogue."""
        what = {"add": "adding records", "import": "importing records"}.get(check_text(op, "op"))
        if what is None:
            raise ValidationError("op must be 'add' or 'import'")
        self._journal.guard(op, lambda: self._access.need_writable(what))

    def get(self, record_id: str, fields: Sequence[str] | None = None) -> Record:
        """Decrypt one record, or only the named fields of it."""
        fields = field_names(fields)
        j = self._journal

        def describe(rec: Record) -> tuple[str, dict[str, Any]]:
            return j.target(record_id), {"fields": sorted(rec)}
        rec = j.guard("read", lambda: j.around("read", lambda: self._records.get(record_id, fields), describe))
        self._canaries.alarm_if_canary([record_id], "read")
        return rec

    def delete(self, record_id: str) -> None:
        """Crypto-shred one record (see vault.records.Records.delete); needs write access to
        every class and every purpose key."""
        j, a = self._journal, self._access
        def may_shred() -> None:
            a.need_writable("shredding records")
            a.need_all_purposes("shredding records")
        j.guard("shred", may_shred)
        record_id_bytes(record_id)
        try:
            j.guard("shred", lambda: self._records.delete(record_id))  # its entry commits with the deletion
        except (NotFound, IntegrityError, KeysChanged):  # an attempt that changed nothing is logged too
            j.record("shred", j.target(record_id))
            raise

    def records(self, fields: Sequence[str] | None = None) -> Iterator[Record]:
        """Stream every record (or only some fields of each), decrypting as it goes; logged
        (``read_all``) as the stream starts."""
        return self._records.iterate_logged(fields)  # a generator: nothing runs, nothing is logged, until read

    def export(self, fields: Sequence[str], purpose: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
        """Rows of the given fields for every record, for handing to someone outside the vault.

        With ``purpose`` each row carries that purpose's pseudonym (``pseudonym`` column)
        and nothing else identifies it; without one, rows carry no identifier at all.
        Logged as an ``export`` with the fields and the row count.
        """
        check_progress(progress)
        return self._records.rows_logged(field_names(fields), purpose, "export", progress)

    def rows(self, fields: Sequence[str], purpose: str | None = None) -> list[dict[str, Any]]:
        """Like :meth:`export`, for showing on screen (logged as ``read_all``)."""
        return self._records.rows_logged(field_names(fields), purpose, "read_all")

    def ids(self) -> list[str]:
        """All record ids (random; they reveal nothing but the count)."""
        return self._records.ids()

    def count(self) -> int:
        return self._records.count()

    def __len__(self) -> int:
        return self.count()

    # -- search and pseudonyms --------------------------------------------------------------------
    def find(self, /, fields: Sequence[str] | None = None, **criteria: Any) -> list[Record]:
        """Exact search over blind indexes (see vault.search.Search.find); the search term is never logged."""
        fields = field_names(fields)
        j = self._journal

        def describe(out: list[Record]) -> tuple[str, dict[str, Any]]:
            return "", self._search.detail(criteria, fields, out)
        out = j.guard("search", lambda: j.around("search", lambda: self._search.find(fields, **criteria), describe))
        self._canaries.alarm_if_canary([r.id for r in out], "search")
        return out

    def find_tokens(self, /, fields: Sequence[str] | None = None, **criteria: str) -> list[Record]:
        """Token search (see vault.search.Search.find_tokens); the search term is never logged."""
        fields = field_names(fields)
        j = self._journal

        def describe(out: list[Record]) -> tuple[str, dict[str, Any]]:
            return "", {**self._search.detail(criteria, fields, out), "tokens": True}
        out = j.guard("search", lambda: j.around("search", lambda: self._search.find_tokens(fields, **criteria),
                                                 describe))
        self._canaries.alarm_if_canary([r.id for r in out], "search")
        return out

    def index_advice(self) -> list[str]:
        """Re-plan advice when the record count is far from the index plan's population
        (vault.index.drift_warnings), for the roles that can act on it (all classes)."""
        if set(self.schema.classes) - set(self._access.current):
            return []
        return I.drift_warnings(self._plans.active, self.count())

    def reindex(self, *, population: int | None = None, k: int | None = None, precise: bool | None = None,
                batch: int = 500, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild blind indexes as a resumable batch (see vault.search.Search.reindex);
        ``progress(done, total)`` after each batch."""
        return self._search.reindex_logged(population=population, k=k, precise=precise, batch=batch,
                                           progress=progress)

    def pseudonym(self, record_id: str, purpose: str) -> str:
        """The record's stable pseudonym for one purpose (badge, travel, ...), e.g.
        ``BA-7KQ4-M2XP-9AW`` (see vault.pseudonyms.Pseudonyms.issue)."""
        j = self._journal
        p = j.guard("pseudonym", lambda: self._pseudonyms.issue(record_id, purpose))
        j.record("pseudonym", j.target(record_id), {"purpose": purpose})
        self._canaries.alarm_if_canary([record_id], "pseudonym")  # a badge or a travel list names the decoy too
        return p

    def resolve(self, pseudonym: str, fields: Sequence[str] | None = None) -> Record:
        """The record a pseudonym of any purpose names. A mistyped pseudonym is refused by
        its check character (PseudonymError); an unknown one raises NotFound."""
        fields = field_names(fields)
        j = self._journal

        def work() -> Record:
            purpose, value = self._pseudonyms.parse(pseudonym)
            rid = self._pseudonyms.resolve_id(purpose, value)
            try:
                return self._records.get(rid.hex(), fields)
            except NotFound:  # an entry left by a shred: the record's id is not the caller's business
                raise NotFound("no record has this pseudonym") from None

        def describe(rec: Record) -> tuple[str, dict[str, Any]]:
            return j.target(rec.id), {"fields": sorted(rec), "via": "pseudonym"}
        rec = j.guard("read", lambda: j.around("read", work, describe))
        self._canaries.alarm_if_canary([rec.id], "read")
        return rec

    # -- keys and users ---------------------------------------------------------------------------
    def rotate(self, classes: Sequence[str] | None = None, *, reencrypt: bool = False,
               batch: int = 500, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Rotate class keys (default: all classes): new key versions, every DEK rewrapped
        (cheap) or, with ``reencrypt=True``, every field re-encrypted under fresh DEKs;
        blind indexes rebuilt; old versions destroyed once nothing references them.
        Resumable and crash-safe (vault.rotation); ``progress(done, total)`` after each batch."""
        j, a = self._journal, self._access
        j.guard("rotate", lambda: a.need_all_classes("key rotation"))
        check_batch(batch)
        check_progress(progress)
        if classes is not None:
            classes = check_names(classes, "classes")
            if not classes:
                raise ValidationError("rotate() needs at least one class (or none given: every class)")
        j.record("rotate", "", {"classes": sorted(classes) if classes is not None else "all", "reencrypt": reencrypt})

        def work() -> dict[str, int]:
            a.need_all_classes("key rotation")
            return rotation.rotate(self._rotor, classes, reencrypt=reencrypt, batch=batch, progress=progress)
        return j.guard("rotate", work)

    def users(self, include_revoked: bool = False) -> list[U.User]:
        """Enrolled users (ids, names, roles, public keys), checked against the lead's signature."""
        return self._access.users(include_revoked)

    def add_user(self, public: PublicIdentity | str, name: str, role: str) -> U.User:
        """Enrol a user: seal their role's keys to their public key and sign the user table
        (see vault.enrol.add_user: confirm the fingerprint first)."""
        j = self._journal
        j.guard("add_user", lambda: self._access.need_lead("enrolling users"))
        enrol.check_user_args(public, name, role)  # before the attempt's entry, which names the role
        j.record("add_user", "", {"role": role})
        user = j.guard("add_user", lambda: enrol.add_user(self._access, public, name, role))
        j.record("user_added", "", {"user": user.user_id, "role": role})
        return user

    def remove_user(self, user_id: str, *, rotate: bool = True) -> None:
        """Revoke a user, then rotate every class they held (a write-only role: the classes it
        wrote); ``rotate=False`` leaves that to a later rotate() (see vault.enrol.remove_user
        for what holds until then)."""
        j = self._journal
        j.guard("remove_user", lambda: self._access.need_lead("removing users"))
        j.record("remove_user", "", {"user": str(user_id)})

        def work() -> None:
            role = enrol.remove_user(self._access, j, user_id)
            # A write-only role held no class key; its classes are rotated all the same, so that
            # the key statement names new keys: an older copy of it (with the user table that
            # still lists them) no longer matches anyone's keyring.
            if rotate and (role.classes or role.write_only):
                self.rotate(list(role.classes or role.write_only))
        j.guard("remove_user", work)

    def change_passphrase(self, new_passphrase: str, *, kdf: F.KdfParams | None = None) -> None:
        """A new recovery passphrase and/or stronger Argon2id cost (see vault.enrol.change_passphrase)."""
        j = self._journal
        j.guard("change_passphrase", self._need_own_passphrase)
        j.record("change_passphrase", "", {})
        j.guard("change_passphrase", lambda: enrol.change_passphrase(self._access, new_passphrase, kdf=kdf))

    # -- break-glass ------------------------------------------------------------------------------
    def request_reveal(self, record_id: str, field: str, reason: str) -> str:
        """Ask the lead for a one-time look at one field outside your role; returns a request
        id. Logged with its (sealed) reason."""
        return breakglass.audited_request(self._desk, record_id, field, reason)

    def reveal_requests(self) -> list[breakglass.RevealRequest]:
        """Pending and approved requests as the caller may see them (breakglass.RevealRequest):
        every request for the lead, with who each record is (badge name, audit pseudonym), the
        reason and what is wrong with it; only their own, without record ids, for anyone else.
        Logged (``reveal_list``): the lead's listing decrypts badge names."""
        return breakglass.audited_pending(self._desk)

    def approve_reveal(self, req_id: str, ttl_seconds: int = 24 * 3600, *, record: str, field: str) -> None:
        """Break-glass approval by the lead of an explicit (request, record, field): ``record``
        and ``field`` are what the lead was shown (reveal_requests: the record's audit
        pseudonym, or any pseudonym or the id of it), and a request about anything else is
        refused (ValidationError), as is one that is not what its requester signed
        (IntegrityError: edited in the database) or that carries no signature (AccessDenied:
        made by an older release). Seals that one field's value to the requester, signed,
        valid for ``ttl_seconds``."""
        breakglass.audited_approve(self._desk, req_id, ttl_seconds, record, field)

    def reveal(self, req_id: str) -> Any:
        """The approved value, once (breakglass.reveal). The grant's deletion commits
        with the audit entry: if the entry cannot be written the grant stays, unshown; a
        grant taken but refused (expired, forged) is gone, its entry says so, then we raise."""
        return breakglass.audited_reveal(self._desk, req_id)

    # -- the audit log ----------------------------------------------------------------------------
    def audit_entries(self, *, actor: str | None = None, action: str | None = None,
                      since_ms: int | None = None, until_ms: int | None = None,
                      target: str | None = None) -> list[dict[str, Any]]:
        """Read the log (filtered). The lead sees every entry, its number (``seq``) and its
        reason; other roles see only their own entries, without numbers or reasons. Reading
        is itself audited. ``target`` is a pseudonym of any purpose the caller holds (badge,
        travel, ...): the entries about that record, whose target is its audit pseudonym, are
        kept. Each entry says whether it passes its own check (``verified``: its hash, a known
        actor, its signature) and whether the lead ``quarantined`` it (vault.audit_trust);
        audit.summary counts only verified ones."""
        return self._log.entries(actor=actor, action=action, since_ms=since_ms, until_ms=until_ms, target=target)

    def audit_verify(self, against: str | None = None) -> Any:
        """Check the whole chain (and a checkpoint, if given); returns a Verdict naming the
        first bad entry."""
        return self._log.verify(against)

    def audit_problem(self, seq: int) -> dict[str, Any]:
        """Lead: audit entry ``seq`` and what is wrong with it (``problem``, None if it
        verifies on its own), before deciding to quarantine it. Logged as a read of the log."""
        return self._log.problem(seq)

    def quarantine(self, seq: int) -> str:
        """Lead: write a signed decision that audit entry ``seq`` (a forged or edited entry
        that verify stops at for good) is bad; verify and the record check then step over
        it and report it as quarantined. Returns what is wrong with it."""
        return self._log.quarantine(seq)

    def check_records(self, *, accept: bool = False) -> RecordCheck:
        """Lead: compare every record row with the state the audit log says it has, which
        the log alone cannot show (docs/format.md 13a, "Record states"). Finds a row put
        back to an older version of itself (a state an entry dropped), a row no entry put
        (inserted behind the vault's back, or resurrected after a shred) and a logged state
        no row has (a record deleted, or rolled back, without an entry). The log is verified
        first: a log that fails verification proves nothing about the rows. Every row is
        also opened in full, so a ciphertext edited in place is named (``damaged``) here
        rather than at someone's next read.

        ``accept``: after a deliberate restore, take the rows as they are from here on: one
        ``restate`` entry, signed by whoever accepts, drops the states no row has and puts
        those of the rows that differed. Damaged rows cannot be accepted (they open for no
        one): restore or shred them first. Returns what was found before accepting."""
        return self._log.check_records(accept=accept)

    def audit_checkpoint(self) -> str:
        """A signed head of the log: write it down or send it elsewhere; verify against it later."""
        return self._log.checkpoint()

    # -- canaries ---------------------------------------------------------------------------------
    def plant_canary(self, values: Mapping[str, Any]) -> str:
        """Lead: add a decoy participant (vault.canaries). Any read, search hit, listing,
        export, pseudonym, update, shred or break-glass step touching it shows in
        :meth:`alarms`; its row is indistinguishable from a real one on disk, and only the
        lead's and the recovery passphrase's keys open the list that names it."""
        j, a = self._journal, self._access
        def may_plant() -> None:
            a.need_all_classes("planting canaries")
            a.need_manage("planting canaries")
        j.guard("plant_canary", may_plant)
        # one transaction for the decoy row, its "add" entry and its place in the list
        return j.guard("plant_canary", lambda: self._records.add_many([values], canaries=[0]))[0]

    def alarms(self) -> list[dict[str, Any]]:
        """Every touch of a canary in the log (vault.canaries.alarms), for the lead's status
        screen (not itself logged). Lead only: another role could count the alarms before
        and after a read and so tell a decoy from a real record (a refusal is logged, as
        every denial is)."""
        self._journal.guard("alarms", lambda: self._access.need_manage("listing canary alarms"))
        return self._canaries.alarms()

    def canary_count(self) -> int:
        """Lead: how many canaries are planted and present (the status screen)."""
        self._journal.guard("canaries", lambda: self._access.need_manage("counting canaries"))
        return self._canaries.count()

    def witness(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """At the lead's open: the log checkpoint kept outside the database (vault.canaries.witness)."""
        return self._canaries.witness(path)

    def status(self) -> dict[str, Any]:
        """Non-secret facts for operators: ids, sizes, KDF cost, accepted schema risks."""
        return status_of(self._ses, self._plans)


def open_with_shares(url: str | os.PathLike[str], mnemonics: Sequence[str], slip39_passphrase: str = "") -> Vault:
    """Open the vault at ``url`` with k recovery shares (vault.shares.open_with_shares):
    every key, as the recovery actor; audited."""
    from . import shares as SH
    v: Vault = SH.open_with_shares(url, mnemonics, slip39_passphrase, opener=open)
    return v


def restore(url: str | os.PathLike[str], path: str | os.PathLike[str], *, passphrase: str | None = None,
            identity: Identity | None = None, ledger: str | os.PathLike[str] | None = None,
            checkpoints: str | os.PathLike[str] | None = None, deep: bool = False) -> Any:
    """Put the backup at ``path`` back at ``url`` (vault.restoring.restore) with the recovery
    passphrase or the lead's identity; a vault.restoring.Restored."""
    from . import restoring as RS

    def opener(where: str) -> Vault:
        return open(where, passphrase, identity=identity)
    return RS.restore(url, path, opener, ledger=ledger, checkpoints=checkpoints, deep=deep)


__all__ = ["create", "open", "move", "open_with_shares", "restore", "Vault", "Record", "StoreError"]
