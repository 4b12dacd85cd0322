"""The facade's calls for a vault's whole life: recovery shares, retention and purge, a
person's own data, backup and restore, and the whole-vault check (verify).

A mixin of :class:`vault.vault.Vault`, kept apart so that the core facade stays readable;
each method delegates to the module named in its section and writes its audit entry
through the handle's Journal."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from . import _format as F
from . import keys as K
from . import statement as ST
from . import users as U
from .access import Access
from .args import check_path, check_progress
from .auditing import AuditView
from .canaries import Canaries
from .errors import AccessDenied
from .journal import Journal
from .plans import Plans
from .records import Records
from .session import Session


class LifecycleCalls:
    _ses: Session
    _access: Access
    _journal: Journal
    _records: Records
    _plans: Plans
    _canaries: Canaries
    _log: AuditView

    def _host(self) -> Any:
        """This handle as the public face vault.retention and vault.subject use (their Host)."""
        return self

    # -- recovery shares (vault.shares) ------------------------------------------------------
    def split_recovery(self, k: int, n: int, *, slip39_passphrase: str = "",
                       kdf: F.KdfParams | None = None,
                       deliver: Callable[[list[str]], None] | None = None) -> list[str]:
        """Split a recovery slot into n SLIP-39 shares, any k of which open every key
        (vault.shares.split); a re-split kills the earlier shares. Returned once, stored nowhere.

        ``deliver(shares)`` runs inside the split's transaction, before it commits: if it
        raises, the split is rolled back and the earlier shares still open the vault. Why:
        a caller whose only copy of the shares is what it writes (the CLI's stdout, which
        may be closed or full) must not kill the earlier shares for new ones it lost."""
        from . import shares as SH

        def split() -> list[str]:
            if deliver is None:
                return SH.split(self._shares_host(), k, n, slip39_passphrase, kdf)
            with self._access.restored_on_failure(), self._ses.store().tx():
                shares = SH.split(self._shares_host(), k, n, slip39_passphrase, kdf)
                deliver(shares)
            return shares
        return self._journal.guard("recovery_split", split)

    def recovery_shares(self) -> dict[str, Any] | None:
        """k, n and when the recovery shares were made (None: no split), signature checked."""
        from . import shares as SH
        return SH.describe(self._shares_host())

    def note_share_recovery(self) -> None:
        """Audit an open with the recovery shares (vault.shares.open_with_shares calls it)."""
        from . import shares as SH
        SH.opened(self._shares_host())

    def _need_own_passphrase(self) -> None:
        """A passphrase change needs the recovery passphrase's opener, not the shares': the
        shares' slot sealed under a typed passphrase would leave the split dead while its
        description still promised it (re-split instead)."""
        self._access.need_passphrase_opener()
        info = self.recovery_shares()
        if info is not None and info["slot"] == self._access.slot_kid.hex():
            raise AccessDenied("opened with the recovery shares: they have no passphrase to change "
                               "(split_recovery makes new shares)")

    def _shares_host(self) -> Any:
        from . import shares as SH
        store = self._ses.store()  # VaultClosed on a closed handle, before its dropped keyring is looked at
        a = self._access
        assert a.ring is not None
        return SH.Host(store, self._ses.vid, a.ring, a.slot_kid, self._ses.role.manage,
                            not set(self._ses.schema.classes) - set(a.current), a.plan_signer,
                            a.check_keys, lambda c, r: a.reseal_slots(c, r, checked=True), a.load_ring,
                            self._journal.record, self._ses.user is None)

    # -- retention, purge and a person's own data (vault.retention, vault.subject) --------------
    def _retention_keys(self) -> Any:
        from . import retention as RT
        store = self._ses.store()  # VaultClosed on a closed handle, before its dropped keyring is looked at
        ring = self._access.ring
        assert ring is not None
        records = self._records
        return RT.Keys(store, self._ses.vid, K.signers(ring), self._access.plan_signer,
                       self._journal.record, self._journal.target,
                       lambda rid, data, fields: records.decode_row(rid, data, records.classes_for(fields)))

    def set_retention(self, record_id: str, until: Any) -> None:
        """Keep one record until ``until`` (a date) whatever the rule says; None removes it (lead)."""
        from . import retention as RT
        self._journal.guard("retain", lambda: RT.set_override(self._host(), self._retention_keys(), record_id, until))

    def purge_expired(self, *, dry_run: bool = True, today: Any = None) -> Any:
        """Crypto-shred every record past retention (a dry run by default); a PurgeReport."""
        from . import retention as RT
        return self._journal.guard(
            "purge", lambda: RT.purge(self._host(), self._retention_keys(), dry_run=dry_run, today=today))

    def retention_warnings(self, today: Any = None) -> list[str]:
        """Retention not set, records past it, tampered overrides (counts only), for status."""
        from . import retention as RT
        return list(RT.warnings(self._host(), self._retention_keys(), today))

    def _subject_wiring(self) -> Any:
        from . import retention as RT
        from . import subject as SJ
        rk = self._retention_keys()
        return SJ.Wiring(lambda rid: SJ.issued_pseudonyms(self._ses.store(), self._access.purposes, rid),
                         lambda rid, rec: RT.facts(self._host(), rk, rid, rec),
                         lambda rid: RT.drop_for(rk, self._host(), rid),
                         self._journal.record, self._record_state, self._log.refused_states)

    def _record_state(self, record_id: str) -> str | None:
        """The record row's state token (vault.records.state_token), for subject export to
        find the entry that added it; None if the row is gone or does not parse."""
        from .errors import IntegrityError
        rid = bytes.fromhex(record_id)
        store = self._ses.store()
        with store.tx(write=False) as conn:
            data = store.get_record(conn, rid)
        if data is None:
            return None
        try:
            return self._records.state_token(rid, data)
        except IntegrityError:
            return None

    def subject_export(self, pseudonym: str) -> Any:
        """Everything held about one person (lead only): a vault.subject.SubjectData."""
        from . import subject as SJ
        return self._journal.guard("subject_export", lambda: SJ.export(self._host(), self._subject_wiring(), pseudonym))

    def subject_erase(self, pseudonym: str) -> None:
        """Shred one person's record through delete, audited as their erasure (lead only)."""
        from . import subject as SJ
        self._journal.guard("subject_erase", lambda: SJ.erase(self._host(), self._subject_wiring(), pseudonym))

    # -- backup and the shred ledger (vault.backup, vault.ledger, vault.restoring) ----------------
    def backup(self, path: str | os.PathLike[str], *, ledger: str | os.PathLike[str] | None = None,
               progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Lead: write a backup of the whole vault to ``path`` (and the shred ledger to the
        file ``ledger``); see vault.backup. Audited before the snapshot, which holds the entry.
        ``progress(done, total)`` as vault.backup.take reports it (rows read and encoded)."""
        from . import backup as BK
        check_progress(progress)
        path, ledger = check_path(path), None if ledger is None else check_path(ledger, "ledger")
        j, a = self._journal, self._access
        j.guard("backup", lambda: a.need_manage("taking a backup"))
        j.record("backup", "", {"ledger_file": ledger is not None})
        assert j.auditor is not None and a.signer is not None
        return BK.take(self._ses.store(), path, self._ses.vid, j.auditor.actor, a.signer, ledger=ledger,
                       progress=progress)

    def signing_actors(self, *, managers: bool = False) -> set[bytes]:
        """Public identities whose signatures this vault accepts (users, revoked ones too, and
        the recovery actor): what a ledger entry's signer must be. ``managers``: only those
        who may take a backup (users of a managing role, the recovery actor)."""
        if not managers:
            return self._access.known_actors()
        rec = self._access.recovery_public()
        manage = {r.name for r in self._ses.schema.roles.values() if r.manage}
        return {u.public.raw for u in self._access.users() if u.role in manage} | ({rec} if len(rec) == 64 else set())

    def adopt_shreds(self, entries: Mapping[bytes, int]) -> None:
        """Lead, in a restore's staged vault only: re-sign as this handle's own the ledger
        entries ``entries`` (rid -> time) that the restore verified against the live vault's
        users but whose signers this vault does not know (vault.ledger.adopt). Counted in
        the restore's entry."""
        from . import ledger as LG
        self._access.need_manage("restoring a backup")
        j, a = self._journal, self._access
        assert j.auditor is not None and a.signer is not None
        with self._ses.store().tx() as conn:
            LG.adopt(conn, self._ses.vid, dict(entries), j.auditor.actor, a.signer)

    def note_restore(self, detail: Mapping[str, Any]) -> None:
        """Lead: the ``restore`` entry a restore writes into the vault it restored (vault.restoring)."""
        self._journal.guard("restore", lambda: self._access.need_manage("restoring a backup"))
        self._journal.record("restore", "", dict(detail))

    # -- the whole-vault check (vault.verify) -----------------------------------------------------
    def verify(self, progress: Callable[[int, int], None] | None = None, repair_index: bool = False) -> Any:
        """Check everything this opener's keys allow (vault.verify.run); a Report, audited."""
        from . import verify as VR
        check_progress(progress)
        return self._journal.guard(
            "verify", lambda: VR.run(self._verify_parts(), progress=progress, repair_index=repair_index))

    def _verify_parts(self) -> Any:
        from . import verify as VR
        a, host, plans = self._access, self._host(), self._plans
        lead, everything = self._ses.role.manage, {c: None for c in a.current}

        def indexers(conn: Any) -> tuple[int, list[Any]]:
            plans.sync(conn)
            return plans.active.gen, list(plans.indexers)
        return VR.Parts(self._ses.store(), self._ses.schema, frozenset(a.current), lead,
                        lambda rid, data: dict(self._records.decode_row(rid, data, dict(everything))),
                        indexers, dict(a.purposes), a.verified_users, self._verify_slots if lead else None,
                        host.audit_verify, host.check_records if lead else None,
                        self._verify_canaries if lead and self._canaries.holds_key() else None, self._journal.record,
                        a.known_actors, self._retention_problems if lead else None)

    def _retention_problems(self) -> list[str]:
        from . import retention as RT
        return RT.overrides(self._host(), self._retention_keys())[1]

    def _verify_slots(self, conn: Any) -> list[str]:
        a, store = self._access, self._ses.store()
        assert a.ring is not None
        users = [U.from_row(*row) for row in store.get_users(conn)]
        meta, rows = store.get_meta(conn), store.get_slots(conn)
        return ST.slot_problems(ST.expected_slots(a, meta, users, a.ring), rows) + ST.keyring_problems(a, a.ring, rows)

    def _verify_canaries(self) -> dict[str, int]:
        self._canaries.cache = None  # the list as stored now, not as this handle first read it
        return self._canaries.load()
