"""Process hardening for ``dvault``: no core dumps, no same-user debugger.

A ``dvault`` process holds unwrapped class keys, the identity's secret keys and decrypted
values in memory. A crash with core dumps enabled would write all of that to a file on
disk (often somewhere world-readable, or collected by a crash reporter); a process that is
"dumpable" can also be read with ptrace or /proc/PID/mem by any process of the same user.
So the first thing the command does is set RLIMIT_CORE to 0 and, on Linux,
PR_SET_DUMPABLE to 0. Both are inherited across fork, so the forked workers of
vault._parallel (which hold the same keys) are covered too; neither survives an exec,
which dvault never does. Failures are ignored: hardening a platform that lacks either
call must not stop the tool from working.
"""

from __future__ import annotations

import sys

PR_GET_DUMPABLE = 3  # <linux/prctl.h>
PR_SET_DUMPABLE = 4


def harden() -> None:
    """Disable core dumps (RLIMIT_CORE = 0) and, on Linux, make the process non-dumpable."""
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass  # not POSIX (Windows): no core files to begin with
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def dumpable() -> int | None:
    """The process's dumpable flag on Linux (0 once hardened), else None (for tests)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    return int(ctypes.CDLL(None, use_errno=True).prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
