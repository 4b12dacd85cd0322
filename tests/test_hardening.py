"""`dvault` hardens its process before anything is in memory (cli/hardening.py): no core
dumps (RLIMIT_CORE = 0) and, on Linux, not dumpable (PR_SET_DUMPABLE = 0: no same-user
ptrace or /proc/PID/mem), its forked workers (vault._parallel) included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Runs `dvault` (vault_cli.run, the console script) with its command replaced by a probe
# that reports the limits in the process and in a worker forked as vault._parallel forks.
PROBE = r"""
import ctypes, json, multiprocessing, resource, sys
import vault_cli, vault_cli.main as m

def dumpable():
    return ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE

def report():
    with multiprocessing.get_context("fork").Pool(1) as pool:  # vault._parallel's workers
        worker = pool.apply(dumpable)
    print(json.dumps({"core": list(resource.getrlimit(resource.RLIMIT_CORE)), "dumpable": dumpable(),
                      "worker": worker}))

m.main = report
hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))  # core dumps on, as far as allowed, before dvault starts
sys.argv = ["dvault", "--version"]
vault_cli.run()
"""


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_DUMPABLE is Linux's")
def test_dvault_is_not_dumpable_and_writes_no_core() -> None:
    before = _run("import ctypes, json; print(json.dumps({'dumpable': ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)}))")
    assert before["dumpable"] == 1  # what a process starts with: the probe measures something
    got = _run(PROBE)
    assert got == {"core": [0, 0], "dumpable": 0, "worker": 0}
