"""Child process for the restore SIGKILL tests: lowers Argon2 exactly like the test fixture,
then restores a backup until killed (or done).

It says "swap" just before the restore replaces the live vault's content and "swapped" just
after, so the parent can aim its kill: before the swap (with ``gate``, the child then waits
for a line on stdin, so a kill while it waits is a kill just before the swap), inside it, or
after it, while the staging place is being removed."""

import sys
from collections.abc import Callable
from typing import Any

import vault
import vault.restoring as R
import vault.vault  # noqa: F401 - loaded before "started": the kill window is the restore's own
from vault import _format as F

F.KDF_FLOOR = F.KDF_DEFAULT = F.KdfParams(t=1, m_kib=8, p=1)

url, backup, passphrase = sys.argv[1], sys.argv[2], sys.argv[3]
gate = sys.argv[4:5] == ["gate"]


def _marked(real: Callable[..., Any]) -> Callable[..., Any]:
    def swap(*args: Any, **kwargs: Any) -> Any:
        print("swap", flush=True)
        if gate:
            sys.stdin.readline()
        out = real(*args, **kwargs)
        print("swapped", flush=True)
        return out
    return swap


R._swap_sqlite = _marked(R._swap_sqlite)  # type: ignore[assignment]
R._swap_pg = _marked(R._swap_pg)  # type: ignore[assignment]
print("started", flush=True)
vault.restore(url, backup, passphrase=passphrase)
print("finished", flush=True)
