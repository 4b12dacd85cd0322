"""User identities: an X25519 key pair to receive keys and an Ed25519 pair to sign.

The private halves live in a file on the user's own machine, encrypted under their
passphrase with Argon2id (same floor as vault slots), created 0600 and never
overwritten. The public half is one line (``dvault1...``) that can travel by any
channel; its fingerprint is short enough to confirm by voice, which is what makes
sending it over an untrusted channel safe.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from . import _crypto as C
from . import _format as F
from ._files import check_private, make_private_dirs, replace_private, write_private
from .args import check_path
from .errors import IntegrityError, Unavailable, ValidationError, VaultError
from .keys import open_passphrase_box, seal_passphrase_box
from .notes import recipient_id

PUBLIC_PREFIX = "dvault1"
FILE_HEADER = "# defenders-vault identity: PRIVATE, keep it on this machine"


class IdentityError(VaultError, ValueError):
    """A public identity line or identity file cannot be read."""


class IdentityUnreadable(IdentityError, Unavailable):
    """The identity file is there but the operating system will not let us read it."""


def check_identity(value: object, name: str) -> None:
    """``value`` is an Identity (or None): a name, a path or a public identity given where
    the private keys are needed would otherwise fail deep inside, after the call began."""
    if value is not None and not isinstance(value, Identity):
        raise ValidationError(f"{name} must be an Identity (vault.identity.Identity), or None")


def default_path() -> Path:
    """Where ``dvault keygen`` puts an identity: the platform's per-user data directory."""
    import platformdirs

    return Path(platformdirs.user_data_dir("defenders-vault", appauthor=False)) / "identity.dvid"


@dataclass(frozen=True)
class PublicIdentity:
    x25519: bytes
    ed25519: bytes

    @property
    def raw(self) -> bytes:
        return self.x25519 + self.ed25519

    @property
    def user_id(self) -> str:
        """A short stable id (hex of 8 bytes of SHA-256): how the vault names a user."""
        return recipient_id(self.raw).hex()

    def fingerprint(self) -> str:
        """20 hex digits in five groups, to read aloud when enrolling someone."""
        h = C.sha256(b"dvault-fingerprint" + self.raw)[:10].hex()
        return " ".join(h[i:i + 4] for i in range(0, 20, 4))

    def to_line(self) -> str:
        check = C.sha256(b"dvault-public" + self.raw)[:4]
        return PUBLIC_PREFIX + base64.b32encode(self.raw + check).decode().rstrip("=").lower()

    @classmethod
    def from_line(cls, line: str) -> PublicIdentity:
        if not isinstance(line, str):
            raise IdentityError(f"not a public identity (expected a line starting with {PUBLIC_PREFIX})")
        text = line.strip()
        if not text.lower().startswith(PUBLIC_PREFIX):
            raise IdentityError(f"not a public identity (expected a line starting with {PUBLIC_PREFIX})")
        body = text[len(PUBLIC_PREFIX):].upper()
        try:
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
        except ValueError:
            raise IdentityError("public identity is garbled (not base32)") from None
        if len(raw) != 68:
            raise IdentityError("public identity has the wrong length (truncated when copied?)")
        if not C.mac_equal(C.sha256(b"dvault-public" + raw[:64])[:4], raw[64:]):
            raise IdentityError("public identity checksum does not match (mistyped or altered)")
        return cls(raw[:32], raw[32:64])

    def __str__(self) -> str:
        return self.to_line()


class Identity:
    """A user's private keys, in memory. ``repr`` shows the public fingerprint only."""

    __slots__ = ("_x", "_ed", "public", "_signer")

    def __init__(self, x25519_private: bytes, ed25519_seed: bytes) -> None:
        for key in (x25519_private, ed25519_seed):  # the crypto library's own error names no argument
            if not isinstance(key, bytes) or len(key) != 32:
                raise IdentityError("an identity's keys are two secrets of 32 bytes each")
        self._x = x25519_private
        self._ed = ed25519_seed
        self.public = PublicIdentity(C.x25519_public(x25519_private), C.ed25519_public(ed25519_seed))
        self._signer = C.Signer(ed25519_seed)

    def __repr__(self) -> str:
        return f"<Identity {self.public.user_id} fingerprint {self.public.fingerprint()}>"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        raise TypeError("identities hold private keys and are not picklable")

    @classmethod
    def generate(cls) -> Identity:
        x, _ = C.x25519_generate()
        seed, _ = C.ed25519_generate()
        return cls(x, seed)

    # Callers inside the library use these; nothing prints them.
    def unseal(self, ciphertext: bytes) -> bytes:
        return C.unseal(self._x, ciphertext)

    def sign(self, message: bytes) -> bytes:
        return self._signer(message)

    @property
    def signer(self) -> C.Signer:
        """The expanded signing key (same signatures as :meth:`sign`), for a signature the
        client will check again (keys.sign_text remembers it as verified)."""
        return self._signer

    # -- file -----------------------------------------------------------------------------
    def to_file_bytes(self, passphrase: str, kdf: F.KdfParams | None = None, *,
                      salt: bytes | None = None, nonce: bytes | None = None) -> bytes:
        """The identity file: a kind U passphrase box (the layout of a passphrase slot, bound
        to nothing) holding both secret keys, base64 under a comment header."""
        params = F.KDF_DEFAULT if kdf is None else kdf
        blob = seal_passphrase_box(F.KIND_IDENTITY, bytes.fromhex(self.public.user_id), passphrase,
                                   self._x + self._ed, b"", params, salt=salt, nonce=nonce)
        text = (f"{FILE_HEADER}\n# public: {self.public.to_line()}\n"
                f"{base64.b64encode(blob).decode()}\n")
        return text.encode()

    def save(self, path: str | os.PathLike[str], passphrase: str, kdf: F.KdfParams | None = None) -> Path:
        """Write the encrypted identity with mode 0600; refuses to overwrite anything."""
        p = Path(check_path(path))
        data = self.to_file_bytes(passphrase, kdf)
        make_private_dirs(p.parent, f"the identity file {p}", error=IdentityError)
        check_private(p, "identity file")
        return write_private(p, data)

    @classmethod
    def change_passphrase(cls, path: str | os.PathLike[str], old: str, new: str,
                          kdf: F.KdfParams | None = None) -> Identity:
        """Re-encrypt an identity file under a new passphrase and/or stronger Argon2id cost.

        The keys do not change, so nothing in any vault changes. Written to a temporary
        file (0600) in the same directory and renamed over the old one: a crash leaves
        either the old file or the new one, never half of each.
        """
        ident = cls.load(path, old)  # checks the path
        ident.replace_file(path, new, kdf)
        return ident

    def replace_file(self, path: str | os.PathLike[str], passphrase: str, kdf: F.KdfParams | None = None) -> Path:
        """Write this identity over its existing file, atomically (see change_passphrase),
        for a caller that has already loaded it: one Argon2id derivation fewer. Returns the
        file written: the target when ``path`` is a symbolic link (the link stays)."""
        return replace_private(Path(check_path(path)), self.to_file_bytes(passphrase, kdf), error=IdentityError)

    @classmethod
    def from_file_bytes(cls, data: bytes, passphrase: str) -> Identity:
        try:
            lines = [ln for ln in data.decode("ascii").splitlines() if ln and not ln.startswith("#")]
            blob = base64.b64decode(lines[-1], validate=True)
        except (UnicodeDecodeError, IndexError, ValueError):
            raise IdentityError("not a defenders-vault identity file") from None
        secret = open_passphrase_box(F.KIND_IDENTITY, blob, passphrase, b"", 64, what="identity file",
                                     malformed=IdentityError, wrong="wrong passphrase for this identity")
        ident = cls(secret[:32], secret[32:])
        if ident.public.user_id != blob[2:2 + F.KID_LEN].hex():
            raise IntegrityError("identity file does not match its own id")
        return ident

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: str) -> Identity:
        p = Path(check_path(path))
        check_private(p, "identity file")
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            from .errors import NotFound
            raise NotFound(f"no identity file at {p}") from None
        except OSError as e:
            raise IdentityUnreadable(f"cannot read identity file {p}: {e.strerror}") from None
        return cls.from_file_bytes(data, passphrase)
