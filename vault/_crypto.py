"""The only module that touches cryptographic libraries.

Everything else in :mod:`vault` calls these small wrappers, so that the choice of
primitive (and its failure behaviour) is reviewed in one place. Authentication
failures surface as :class:`AuthFailure`, which carries no detail on purpose:
callers translate it into an :class:`~vault.errors.IntegrityError` that names the
record and field, never the plaintext.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hmac import HMAC as _HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import _format as F


class AuthFailure(Exception):
    """An AEAD tag or MAC did not verify. Deliberately detail-free."""


def random_bytes(n: int) -> bytes:
    """CSPRNG bytes from the OS (``secrets`` wraps ``os.urandom``)."""
    return secrets.token_bytes(n)


#: Exceptions an :class:`Aead`'s raw ``decrypt`` raises on forgery (for hot loops that skip
#: the ``open`` wrapper's translation).
AEAD_FAILURES = (InvalidTag,)


class Aead:
    """AES-256-GCM with a caller-supplied 96-bit nonce.

    Why AES-256-GCM and not XChaCha20-Poly1305: it is ~3x cheaper per call in
    ``cryptography`` on AES-NI hardware, and every key we use it with is either a
    per-record DEK (a handful of messages) or a class key (one message per record
    and rewrap), far below the 2^32 random-nonce bound of NIST SP 800-38D.
    """

    __slots__ = ("_aead", "encrypt", "decrypt")

    def __init__(self, key: bytes) -> None:
        if len(key) != F.KEY_LEN:
            raise ValueError("AES-256-GCM key must be 32 bytes")
        self._aead = AESGCM(key)
        # Raw bound methods for the envelope hot path (nonce length is fixed there by
        # construction; failures raise one of AEAD_FAILURES).
        self.encrypt = self._aead.encrypt
        self.decrypt = self._aead.decrypt

    def __repr__(self) -> str:  # never show key material
        return "<Aead AES-256-GCM>"

    def seal(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        if len(nonce) != F.NONCE_LEN:
            raise ValueError("nonce must be 12 bytes")
        return self._aead.encrypt(nonce, plaintext, aad)

    def open(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        if len(nonce) != F.NONCE_LEN or len(ciphertext) < F.TAG_LEN:
            raise AuthFailure()
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise AuthFailure() from None


def aead_encryptor(key: bytes) -> Callable[[bytes, bytes, bytes], bytes]:
    """The raw AES-256-GCM encrypt of a fresh 32-byte key (nonce, plaintext, aad), for the
    write hot path; the caller supplies a fresh 12-byte nonce."""
    if len(key) != F.KEY_LEN:
        raise ValueError("AES-256-GCM key must be 32 bytes")
    return AESGCM(key).encrypt


def aead_decryptor(key: bytes) -> Callable[[bytes, bytes, bytes], bytes]:
    """The raw AES-256-GCM decrypt of a fresh 32-byte key, for the read hot path (one
    object fewer than ``Aead(key).decrypt``); failures raise one of AEAD_FAILURES."""
    if len(key) != F.KEY_LEN:
        raise ValueError("AES-256-GCM key must be 32 bytes")
    return AESGCM(key).decrypt


def aead_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """One-shot AES-256-GCM encryption: ciphertext || 16-byte tag."""
    return Aead(key).seal(nonce, plaintext, aad)


def aead_open(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """One-shot AES-256-GCM decryption; raises :class:`AuthFailure` on any forgery."""
    return Aead(key).open(nonce, ciphertext, aad)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")  # one-shot C path, same bytes as hmac.new


class Prf:
    """HMAC-SHA256 under a fixed key, keyed once and copied per message: cryptography's
    HMAC, whose copy() is about 2x cheaper than the standard library's (same output as
    :func:`hmac_sha256`; the vectors check both)."""

    __slots__ = ("_base",)

    def __init__(self, key: bytes) -> None:
        self._base = _HMAC(key, hashes.SHA256())

    def __repr__(self) -> str:
        return "<Prf HMAC-SHA256>"

    def __call__(self, message: bytes) -> bytes:
        h = self._base.copy()
        h.update(message)
        return h.finalize()


def mac_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison; never compare MACs with ``==``."""
    return hmac.compare_digest(a, b)


def verify_hmac_sha256(key: bytes, message: bytes, tag: bytes) -> None:
    """Check a (possibly truncated, >= 16 bytes) HMAC-SHA256 tag."""
    if len(tag) < 16 or len(tag) > 32:
        raise AuthFailure()
    if not mac_equal(hmac_sha256(key, message)[: len(tag)], tag):
        raise AuthFailure()


def hkdf_sha256(key: bytes, info: bytes, length: int = F.KEY_LEN, salt: bytes | None = None) -> bytes:
    """RFC 5869 HKDF-SHA256; ``info`` is always one of the labels in ``_format``."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


def hkdf_expand32(prk: bytes) -> Callable[[bytes], bytes]:
    """RFC 5869 HKDF-Expand(PRK = ``prk``, info, L = 32) with SHA-256, as a function of info.

    For L = 32 the output is the single block T(1) = HMAC-SHA256(PRK, info || 0x01); the
    HMAC key schedule is computed once here, so each call costs two SHA-256 passes and no
    object set-up (the derived record DEKs of docs/format.md 6b, one per class per record).
    ``prk`` must already be a uniformly random 32-byte key (vault.compact.record_prk's
    output): no Extract step.
    tests/test_compact.py checks it against ``cryptography``'s HKDFExpand."""
    if len(prk) != F.KEY_LEN:
        raise ValueError("HKDF-Expand PRK must be 32 bytes")
    base = _HMAC(prk, hashes.SHA256())

    def expand(info: bytes) -> bytes:
        h = base.copy()
        h.update(info + b"\x01")
        return h.finalize()

    return expand


def argon2id(secret: bytes, salt: bytes, t: int, m_kib: int, p: int) -> bytes:
    """Argon2id (RFC 9106) through argon2-cffi's low-level API, 32-byte output."""
    return hash_secret_raw(
        secret=secret, salt=salt, time_cost=t, memory_cost=m_kib, parallelism=p,
        hash_len=F.KEY_LEN, type=Type.ID, version=19,
    )


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256_stream() -> hashlib._Hash:
    """An incremental SHA-256 (a backup file is hashed as it is written and read)."""
    return hashlib.sha256()


# -- public-key primitives (PyNaCl / libsodium) ---------------------------------------------
# X25519 sealed boxes carry keys to a user's identity; Ed25519 signs what the lead decides
# (who is enrolled, with which role and slot). Both are libsodium's, through PyNaCl.
from nacl.bindings import crypto_sign as _crypto_sign  # noqa: E402
from nacl.bindings import crypto_sign_open as _sign_open  # noqa: E402
from nacl.bindings import crypto_sign_seed_keypair as _sign_seed_keypair  # noqa: E402
from nacl.exceptions import BadSignatureError, CryptoError  # noqa: E402
from nacl.public import PrivateKey as _X25519Private  # noqa: E402
from nacl.public import PublicKey as _X25519Public  # noqa: E402
from nacl.public import SealedBox as _SealedBox  # noqa: E402
from nacl.signing import SigningKey as _SigningKey  # noqa: E402

X25519_LEN = 32
ED25519_SEED_LEN = 32
ED25519_SIG_LEN = 64
SEALED_OVERHEAD = 48  # ephemeral public key (32) + Poly1305 tag (16)


def x25519_generate() -> tuple[bytes, bytes]:
    """(private, public) X25519 key pair from libsodium's CSPRNG."""
    sk = _X25519Private.generate()
    return bytes(sk), bytes(sk.public_key)


def x25519_public(private: bytes) -> bytes:
    return bytes(_X25519Private(private).public_key)


def seal_to(public: bytes, plaintext: bytes) -> bytes:
    """libsodium sealed box: anonymous sender, so callers bind context inside the plaintext."""
    return _SealedBox(_X25519Public(public)).encrypt(plaintext)


def unseal(private: bytes, ciphertext: bytes) -> bytes:
    try:
        return _SealedBox(_X25519Private(private)).decrypt(ciphertext)
    except (CryptoError, ValueError, TypeError):
        raise AuthFailure() from None


def ed25519_generate() -> tuple[bytes, bytes]:
    """(seed, verify key) Ed25519 pair."""
    sk = _SigningKey.generate()
    return bytes(sk), bytes(sk.verify_key)


def ed25519_public(seed: bytes) -> bytes:
    return bytes(_SigningKey(seed).verify_key)


class Signer:
    """An Ed25519 signing key expanded once (expansion costs as much as a signature); signs
    with libsodium's crypto_sign directly, skipping PyNaCl's SignedMessage object (one per
    audit entry). Same signatures: Ed25519 is deterministic, the vectors check it."""

    __slots__ = ("_sk",)

    def __init__(self, seed: bytes) -> None:
        self._sk = _sign_seed_keypair(seed)[1]  # seed || public key, libsodium's secret-key form

    def __repr__(self) -> str:
        return "<Signer Ed25519>"

    def __call__(self, message: bytes) -> bytes:
        return _crypto_sign(message, self._sk)[:ED25519_SIG_LEN]

    def sign_known(self, message: bytes) -> bytes:
        """Sign, and remember the signature as verified (see _VERIFIED). Why that is sound:
        an Ed25519 signature made with this key verifies under its public key, the one
        libsodium derived from the seed (the second half of ``_sk``), and the entry is keyed
        by that key and the exact bytes: a check against any other key, message or signature
        still verifies. For what a client signs and then reads back and checks at its next
        write (the lead's key statement, signed again by every add)."""
        sig = self(message)
        _remember(bytes(self._sk[32:]), bytes(message), sig)
        return sig


#: (public key, message, signature) triples that verified, exact bytes as the key (no
#: digest: equal keys are the same bytes). Every write of the lead's checks the same two
#: signatures again (the user table's and the key statement's) and signs the statement
#: anew: the statement and the table are read and checked on every write, only the Ed25519
#: arithmetic for bytes already found good is not redone. Verification is a function of
#: these bytes alone, and only successes are kept. Bounded: cleared when full.
_VERIFIED: dict[tuple[bytes, bytes, bytes], None] = {}
_VERIFIED_MAX = 64


def ed25519_verify_again(public: bytes, message: bytes, signature: bytes) -> None:
    """:func:`ed25519_verify` for a signature a client checks over and over (see _VERIFIED);
    not for the audit log, whose entries are each checked once."""
    key = (bytes(public), bytes(message), bytes(signature))
    if key in _VERIFIED:
        return
    ed25519_verify(public, message, signature)
    _remember(*key)


def _remember(public: bytes, message: bytes, signature: bytes) -> None:
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[(public, message, signature)] = None


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> None:
    """libsodium's crypto_sign_open on signature || message (what VerifyKey.verify does,
    minus the object construction, which matters when checking a million log entries)."""
    if len(public) != 32 or len(signature) != ED25519_SIG_LEN:
        raise AuthFailure()
    try:
        _sign_open(signature + message, public)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        raise AuthFailure() from None
