"""Format constants: the single home of version bytes, labels, sizes and KDF floors.

A second implementation of the vault needs exactly this file plus docs/format.md.
Changing any value here changes bytes on disk: bump ``FORMAT_VERSION`` and add
vectors under tests/vectors/ when you do.
"""

from __future__ import annotations

from dataclasses import dataclass

# Byte 0 of every blob. A reader refuses versions it does not know rather than guessing.
FORMAT_VERSION = 1

# Byte 1 of every blob names its kind, so a blob copied into the wrong column fails
# loudly (and the kind is covered by the AEAD associated data).
KIND_FIELD = b"F"  # one field value, encrypted under a record's class DEK
KIND_DEK = b"D"  # a record's class DEK, wrapped under a class key
KIND_DEK_SEALED = b"E"  # a class DEK sealed to the class's public key, unsigned (before schema v5; adopted on upgrade)
# a class DEK sealed to the class's public key and signed by its writer (a user without the class)
KIND_DEK_SIGNED = b"W"
# Record rows of format 2 (docs/format.md 6b), written from this release on; rows of format 1
# (§6) stay readable and are rewritten in format 2 by a re-encryption or a move.
RECORD_FORMAT = 2
ROW_V2_PREFIX = b"\x00\x02"  # a format-1 row starts with its class count (>= 1), never 0x00
KIND_DEK_DERIVED = b"H"  # format 2: a class DEK derived from the class key (0x02 "H" kid dek id)
KIND_FIELD_V2 = b"F"  # format 2: a cell's associated data starts 0x02 "F" (no header stored)
KIND_EMPTY_CHECK = b"C"  # format 2: the tag that authenticates a derived envelope with no cells
LABEL_RECORD_DEK = b"dvault/v2/record-dek"  # HKDF-Expand info prefix of a derived class DEK
LABEL_RECORD_PRK = b"dvault/v2/record-dek-key"  # HKDF info of the key that derives a class's DEKs
# Record rows of format 3 (§6c), what new rows are written in: format 2's framing and keys,
# but one AEAD per class envelope over all its cells (one tag per class, not per cell).
ROW_V3_PREFIX = b"\x00\x03"
KIND_JOINT = b"J"  # format 3: an envelope's associated data starts 0x03 "J"
LABEL_RECORD_DEK_V3 = b"dvault/v3/record-dek"  # HKDF-Expand info prefix of a format-3 derived DEK
FIELD_NUMBER_MAX = 255  # format 2 numbers fields 1..255 in schema order; larger schemas write format 1
KIND_KEYRING = b"K"  # the set of class keys a slot opens, encrypted under the slot secret
KIND_PASSPHRASE_SLOT = b"P"  # slot secret wrapped under an Argon2id-derived key
KIND_SCHEMA_MAC = b"S"  # HMAC over the stored schema
KIND_PSEUDONYM_REF = b"N"  # record id encrypted under a purpose's lookup key
KIND_PLAN_MAC = b"I"  # HMAC over the stored blind-index plan
KIND_IDENTITY = b"U"  # an identity file's secret keys under Argon2id(passphrase) (layout of kind P)
KIND_REASON = b"R"  # a reason text sealed to the security lead (or the recovery key)
KIND_GRANT = b"G"  # a break-glass grant: one value sealed to its requester, signed by the lead (unpadded; still read)
# The break-glass notes written now pad what they seal (ISO 7816-4, PAD_BLOCK), so a
# database reader learns a value's or a reason's 32-byte bucket only, as for a field cell.
# New kinds rather than a guess from the plaintext: the kind is inside the sealed header
# (and a grant's signature), so a padded note cannot be passed off as an unpadded one.
KIND_REASON_PADDED = b"Q"  # a reason (break-glass request, audit entry), as kind R with the reason padded
KIND_GRANT_PADDED = b"V"  # a break-glass grant, as kind G with the JSON value padded
KIND_CANARY_LIST = b"C"  # the canary list, sealed under a key only the lead and the recovery passphrase hold
KIND_EXPORT = b"O"  # a sealed export: manifest and payload signed by the exporter, sealed to the recipient
KIND_SHARES_INFO = b"H"  # what the recovery shares are (set id, k of n, when), signed by the lead or recovery actor
KIND_RETENTION = b"T"  # a record's retention override (keep until a date), signed by the lead (dv_meta "retain:ID")

KEY_LEN = 32  # AES-256 keys, slot secrets, DEKs, class keys
NONCE_LEN = 12  # AES-GCM 96-bit nonces, always fresh from the OS CSPRNG
TAG_LEN = 16  # AES-GCM tag
KID_LEN = 8  # key ids: random, public, only used to find the right key
ID_LEN = 16  # vault ids and record ids: random 128-bit, never derived from identity
SALT_LEN = 16  # Argon2id salt
SLOT_CHECKSUM_LEN = 8  # unkeyed SHA-256 prefix on passphrase slots (corruption vs wrong passphrase)
PAD_BLOCK = 32  # ISO/IEC 7816-4 padding bucket: a value's length leaks only its 32-byte bucket
# The canary list's plaintext is padded (as values are, ISO 7816-4) to a multiple of this,
# room for 170 canaries (113 tags in the list before database schema v8): its length shows
# whether a vault has more than 170 canaries, not how many.
CANARY_LIST_BLOCK = 4096
MAX_VALUE_BYTES = 1 << 20  # 1 MiB per field value, far above any registration form answer
RETENTION_META_PREFIX = "retain:"  # dv_meta name of a record's retention override: prefix || hex(record id)
EXPORT_MANIFEST_MAX = 1 << 16  # a sealed export's manifest (JSON): names and ids, never near 64 KiB

# Labels (HKDF info strings, MAC prefixes). Never reuse one for two purposes.
LABEL_SCHEMA_MAC = b"dvault/v1/schema-mac"
LABEL_PLAN_MAC = b"dvault/v1/index-plan-mac"
LABEL_BLIND_INDEX = b"dvault/v1/blind-index"  # || lp8(field) || lp8("exact" | "token")
LABEL_PSEUDONYM = b"dvault/v1/pseudonym"  # PRF key: record id -> 50-bit pseudonym
LABEL_PSEUDONYM_TAG = b"dvault/v1/pseudonym-tag"  # lookup tag key: pseudonym -> row
LABEL_PSEUDONYM_REF = b"dvault/v1/pseudonym-ref"  # AEAD key: encrypts the record id in the row
LABEL_CLASS_BOX = b"dvault/v1/class-box"  # X25519 secret of a class, derived from its key
LABEL_RECOVERY_SIGN = b"dvault/v1/recovery-signing"  # Ed25519 seed of the recovery (passphrase) actor
LABEL_RECOVERY_BOX = b"dvault/v1/recovery-box"  # X25519 secret: reasons sealed when no lead exists
LABEL_KEYRING_PIN = b"dvault/v1/keyring-pin"  # a client's fingerprint of a vault's meta key (pins.py)
LABEL_PIN_SIGNERS = b"dvault/v1/pin-signers"  # the known-vaults file's hash of a vault's signer keys (pins.py)
LABEL_PIN_LOCATION = b"dvault/v1/pin-location"  # the known-vaults file's hash of where a vault was opened (pins.py)
LABEL_KEYS_SIG = b"dvault/v1/keys-sig"  # the lead's (or recovery actor's) signature over the key statement
LABEL_RECORD_STATE = b"dvault/v1/record-state"  # HKDF info: the key of the record-state tokens in the audit log
LABEL_RECORD_STATE_V2 = b"dvault/v2/record-state"  # HKDF info: the key of the second kind's parts and tokens
STATE_PART_LEN = 16  # bytes of one class's part of a record state (second kind)
STATE_TAG_LEN = 12  # bytes of a record's tag, the start of its states' tokens (second kind)
STATE_MAC_LEN = 24  # bytes of a row's MAC over its parts, the rest of a token (second kind)
LABEL_SEALED_SIG = b"dvault/v1/sealed-dek-sig"  # a writer's signature over a sealed DEK (kind W)
KEYS_STATEMENT_HEADER = "dvault keys v3"  # first line of the signed key statement (docs/format.md 9b)
KEYS_STATEMENT_HEADER_V2 = "dvault keys v2"  # database schema v7: no canaries and slot lines
KEYS_STATEMENT_HEADER_V1 = "dvault keys v1"  # older releases' statement: no db and users lines either
LABEL_CANARIES = b"dvault/v1/canaries"  # HKDF info (meta key): the canary list's key before schema v8 (read only)
LABEL_CANARY_TAG = b"dvault/v1/canary-tag"  # HKDF info (meta key): a canary's tag before schema v8 (read only)
LABEL_CANARY_LIST = b"dvault/v1/canary-list"  # HKDF info (recovery seed): the canary list's key from schema v8
LABEL_MOVING_SIG = b"dvault/v1/moving-sig"  # a move's signature over the destination's "moving" mark
# Recovery shares (docs/format.md 8g): the SLIP-39 master secret is the input of HKDF with this
# label; the hex of its output, after SHARES_UNLOCK_PREFIX, is the passphrase of the shares'
# key slot (an ordinary kind P slot). The shares' description is signed under LABEL_SHARES_SIG.
LABEL_SHARES_UNLOCK = b"dvault/v1/recovery-shares-unlock"
LABEL_SHARES_SIG = b"dvault/v1/recovery-shares-sig"
SHARES_UNLOCK_PREFIX = "dvault-shares:"
SHARES_SECRET_LEN = 32  # the SLIP-39 master secret: 256 bits, 33 words a share
SHARES_MAX = 16  # SLIP-39's limit on shares in a group
SHARES_ITERATION_EXPONENT = 1  # SLIP-39's PBKDF2 cost for the optional passphrase: 20,000 iterations
#: The version of the full keyring's kind-5 key (a passphrase slot's secret) that marks the
#: recovery shares' slot; the recovery passphrase's slot's is 1. A re-split retires every
#: slot so marked, whatever dv_meta still describes (a database writer can delete that).
SHARES_SLOT_SECRET_VERSION = 2
SHARES_RETIRED_MAX = 32  # set ids of earlier splits the description remembers (to name old shares)
# Audit entries carry the writer's clock. Verify flags an entry dated more than this before an
# earlier entry (clients' clocks differ by seconds, not minutes, where NTP runs).
AUDIT_CLOCK_TOLERANCE_MS = 5 * 60 * 1000
LABEL_RETENTION_SIG = b"dvault/v1/retention-sig"  # the lead's signature over a retention override (kind T)
LABEL_EXPORT_SIG = b"dvault/v1/export-sig"  # an exporter's signature over a sealed export (kind O)
LABEL_REVEAL_REQUEST = b"dvault/v1/reveal-request"  # a requester's signature over their break-glass request
# The lead's view of a break-glass request names every update of the record's shown fields made
# by anyone in this many seconds before it is listed (by the requester: at any time).
REVEAL_WATCH_S = 30 * 24 * 3600
# Audit entries: the hash of an entry written from database schema version 8 on starts with
# LABEL_AUDIT_ENTRY instead of "dvault/v1/audit" (the form marker, inside what is hashed and
# signed; neither label is a prefix of the other, so no input hashes as both forms), and its
# signature is over LABEL_AUDIT_SIG || hash rather than the bare hash.
LABEL_AUDIT_ENTRY = b"dvault/v1/log-entry"
LABEL_AUDIT_SIG = b"dvault/v1/audit-sig"
# The name of an audit row whose columns lack their types or sizes (docs/format.md 13a,
# "Malformed rows"): SHA-256 of this label and the row's raw columns. A quarantine decision
# names such a row by it, and the next entry links to it when the row has no 32-byte hash.
LABEL_AUDIT_ROW = b"dvault/v1/audit-row"
LABEL_USER_ID = b"dvault-user-id"  # user id = SHA-256(label || x25519 pub || ed25519 pub)[0:8]

# Blind indexes: truncated to b bits where 2^b * k <= expected population (CipherSweet's
# planner), so every index value is expected to be shared by >= k records.
INDEX_MAX_BITS = 32
# Index plans of version 2 (docs/format.md §10) give each index its own bits, planned jointly
# by default. A token index's bit costs this much of the joint budget: a name has two or
# more tokens, each its own term, so one token bit tells more than one bit about a record.
PLAN_VERSION = 3
# Bytes of each record id a dv_index row stores (docs/format.md §10 "Stored rows"): plans of
# version 3 declare INDEX_ID_BYTES ("id_bytes"), plans of versions 1 and 2 mean the whole id.
# A prefix only adds candidates, which a search decrypts and drops like any bucket-mate.
INDEX_ID_BYTES = 8
TOKEN_BIT_COST = 2
# What is normalised and indexed (and searched for): at most this many code points in and
# this many UTF-8 bytes out. NFKC expands a code point into at most 18 (U+FDFA), so the cap
# on the input bounds the normaliser's work before it starts.
MAX_INDEXED_BYTES = 4096
# A blind-index row holds the ascending id prefixes of records of one bucket, at most this
# many of them by width (docs/format.md §10 "Stored rows"), under a random 8-byte chunk id;
# one row per bucket per write, not per term. Whole ids (older generations): 256 to a row,
# as ever. Prefixes: 496 (3,968 bytes), so that a full row, key included (an index name
# of up to 80 bytes), stays within the 4,086 bytes SQLite keeps in the page itself at 16 KiB
# pages (store.SQLITE_PAGE_SIZE): a row just over it drags an overflow page it leaves
# nearly empty. At 4 KiB pages every full row overflows, and fills its overflow page.
INDEX_CHUNK_IDS = {16: 256, 8: 496}
INDEX_CHUNK_ID_LEN = 8
PSEUDONYM_BITS = 50  # 10 Crockford base32 characters
PSEUDONYM_TAG_LEN = 16


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost: t passes, m KiB of memory, p lanes."""

    t: int
    m_kib: int
    p: int


# RFC 9106 section 4, second recommended option: t=3, m=64 MiB, p=4. This is both the
# default and the floor; a stored slot below it is refused (no silent downgrade).
KDF_DEFAULT = KdfParams(t=3, m_kib=64 * 1024, p=4)
KDF_FLOOR = KdfParams(t=3, m_kib=64 * 1024, p=4)
# A ceiling stops a database writer from turning an unlock into a memory bomb or a
# minutes-long stall: 1 GiB and t=16 is ~16x the default on this project's 2-core laptops.
KDF_CEILING = KdfParams(t=16, m_kib=1024 * 1024, p=16)

# The relational schema version; see vault/migrations.py.
DB_SCHEMA_VERSION = 9
# From this database schema version on, new audit entries are written in the labelled form
# (LABEL_AUDIT_ENTRY / LABEL_AUDIT_SIG); every entry after the first such one must be too.
AUDIT_LABELLED_FROM = 8
# From this database schema version on, the signed key statement names the version and the
# user table (KEYS_STATEMENT_HEADER), so only its signers (the lead, the recovery
# passphrase) can take a vault there; other openers upgrade it up to the version before.
SIGNED_VERSION_FROM = 7
STATEMENT_SINCE = 4  # the database schema version since which every vault has a key statement
# From this database schema version on, the statement is of the third kind: it also commits to
# the canary list and names every key slot that must exist (docs/format.md 9b).
STATEMENT_V3_FROM = 8
# From this database schema version on, record states are of the second kind (docs/format.md
# 13a): per class, over each envelope's DEK id and bytes, so that the check sees which class
# an update changed and any content sealed under a DEK id the row already held. Only the
# statement's signers take a vault there (the upgrade's restate is theirs to vouch for).
RECORD_STATES_V2_FROM = 9

# Backups (docs/format.md 16): one file, "DVBACKUP" + version, the vault's tables, the
# maker's signature and a SHA-256 over everything before it.
BACKUP_MAGIC = b"DVBACKUP"
BACKUP_VERSION = 1
LABEL_BACKUP_SIG = b"dvault/v1/backup-sig"
# The shred ledger (docs/format.md 16a): one signed entry per shredded record id, kept by
# every restore; exported to a ledger file ("DVLEDGER" + version) with a backup.
LEDGER_MAGIC = b"DVLEDGER"
LEDGER_VERSION = 1
LABEL_LEDGER_SIG = b"dvault/v1/shred-ledger"
