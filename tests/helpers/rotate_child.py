"""Child process for the SIGKILL tests: lowers Argon2 exactly like the test fixture,
opens the vault and rotates in tiny batches until killed."""

import sys

import vault
from vault import _format as F

F.KDF_FLOOR = F.KDF_DEFAULT = F.KdfParams(t=1, m_kib=8, p=1)

path, passphrase, mode = sys.argv[1], sys.argv[2], sys.argv[3]
with vault.open(path, passphrase) as v:
    print("started", flush=True)
    v.rotate(reencrypt=(mode == "reencrypt"), batch=3)
print("finished", flush=True)
