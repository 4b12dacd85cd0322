"""Child process for the restore SIGKILL tests: lowers Argon2 exactly like the test fixture,
then restores a backup until killed (or done)."""

import sys

import vault
import vault.restoring  # noqa: F401 - loaded before "started": the kill window is the restore's own
import vault.vault  # noqa: F401
from vault import _format as F

F.KDF_FLOOR = F.KDF_DEFAULT = F.KdfParams(t=1, m_kib=8, p=1)

url, backup, passphrase = sys.argv[1], sys.argv[2], sys.argv[3]
print("started", flush=True)
vault.restore(url, backup, passphrase=passphrase)
print("finished", flush=True)
