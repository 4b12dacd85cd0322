"""The report of bench/compare.py: the machine, the tables, the ratios and the plot.

Kept apart from the measuring so that each file reads on its own; nothing here times
anything.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import os
import platform
import sqlite3
import subprocess
from collections.abc import Sequence
from typing import Any

# What each side protects, and how. Facts about the designs, not measurements: the vault's
# column follows docs/format.md and docs/threat-model.md; the peer's the source of
# sqlalchemy_utils.types.encrypted (AesGcmEngine); SQLCipher's its design documentation.
SECURITY_ROWS: list[tuple[str, str, str, str, str]] = [
    ("what is encrypted at rest", "nothing", "the whole file, page by page (AES-256-CBC, HMAC-SHA512 per page)",
     "each value (AES-256-GCM, random 96-bit nonce); column names, row ids and value lengths in clear",
     "each field (AES-256-GCM under a per-record, per-class key), padded to 32-byte buckets"),
    ("key from a passphrase", "n/a", "PBKDF2-HMAC-SHA512, 256,000 iterations", "none: the application supplies "
     "a key string (SHA-256 of it is the AES key)", "Argon2id t=3 m=64 MiB p=4 (floor, in the format)"),
    ("searchable without decrypting all", "yes (plaintext index)",
     "yes, once the file is open (plaintext inside)", "no: random nonces; its deterministic AesEngine would be, "
     "at the cost of showing equal values", "yes: keyed, truncated blind indexes (k-anonymity buckets)"),
    ("field classes (separately keyed)", "no", "no: one key for the file", "no: one key for every column",
     "yes: 5 classes, one key each; a role holds whole classes"),
    ("ciphertext bound to its place (AAD)", "n/a", "per page (page number in the HMAC)",
     "no: a value can be moved to another row or column undetected", "yes: vault, record, field and format "
     "version in every field's AAD"),
    ("audit of reads and writes", "no", "no", "no", "yes: every call signed (Ed25519) and hash-chained, "
     "fail-closed"),
    ("roles", "database / file permissions only", "whoever holds the key reads everything",
     "whoever holds the key reads everything", "lead / staff / tool keys by class; staff write identity "
     "and risk fields they cannot read back; on PostgreSQL, login roles that cannot change the audit log "
     "(`dvault db-roles`)"),
    ("pseudonyms", "no", "no", "no", "yes: per-purpose pseudonyms, resolved with the key"),
]
SIDE_NAMES = ("plain SQLite", "SQLCipher", "sqlalchemy-utils AES-GCM (peer)", "vault")


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def machine(pg_version: str | None) -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import sqlcipher3

        con = sqlcipher3.connect(":memory:")
        cipher = f"{con.execute('PRAGMA cipher_version').fetchone()[0]} on SQLite {sqlcipher3.sqlite_version}"
        con.close()
    except ImportError:
        cipher = "not installed"
    try:
        commit = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short",
                                 "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {
        "CPU": f"{cpu}, {os.cpu_count()} logical cores",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "SQLite (stdlib)": sqlite3.sqlite_version,
        "SQLAlchemy": _version("sqlalchemy"),
        "sqlalchemy-utils": _version("sqlalchemy-utils"),
        "sqlcipher3": f"{_version('sqlcipher3')} (SQLCipher {cipher})",
        "cryptography": _version("cryptography"),
        "PyNaCl": _version("pynacl"),
        "argon2-cffi": _version("argon2-cffi"),
        "psycopg": _version("psycopg"),
        "PostgreSQL": pg_version or "not used",
        "matplotlib": _version("matplotlib"),
        "defenders-vault": f"{_version('defenders-vault')}" + (f" (commit {commit})" if commit else ""),
    }


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit in ("us", "ms"):
        v = value * (1e6 if unit == "us" else 1e3)
        return f"{v:,.0f} {unit}" if v >= 100 else f"{v:,.2f} {unit}"
    return f"{value:,.0f}"


def ratio(a: float | None, b: float | None, kind: str) -> str:
    """Speed ratio (>1: a is faster than b) for rates and times; size ratio (>1: a is larger)."""
    if a is None or b is None or a == 0 or b == 0:
        return "n/a"
    r = b / a if kind == "time" else a / b
    return f"{r:,.2f}x"


def results_table(sides: Sequence[Any], n: int, measures: Sequence[tuple[str, str, str, str]]) -> list[str]:
    run = [s for s in sides if not s.skip]
    out = ["| measure | " + " | ".join(s.label for s in run) + " |", "|---|" + "---:|" * len(run)]
    for key, label, unit, _kind in measures:
        cells = [fmt(s.value(n, key), unit) for s in run]
        if any(c != "n/a" for c in cells):
            shown = f"{label} ({unit})" if unit not in ("us", "ms") else label
            out.append(f"| {shown} | " + " | ".join(cells) + " |")
    return out


def ratio_table(sides: Sequence[Any], n: int, measures: Sequence[tuple[str, str, str, str]],
                base: Any) -> list[str]:
    run = [s for s in sides if not s.skip and s is not base]
    out = ["| measure | " + " | ".join(s.label for s in run) + " |", "|---|" + "---:|" * len(run)]
    for key, label, _unit, kind in measures:
        b = base.value(n, key)
        cells = [ratio(s.value(n, key), b, kind) for s in run]
        if any(c != "n/a" for c in cells):
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def security_table() -> list[str]:
    out = ["| property | " + " | ".join(SIDE_NAMES) + " |", "|---|---|---|---|---|"]
    out += [f"| {row[0]} | " + " | ".join(row[1:]) + " |" for row in SECURITY_ROWS]
    return out


def plot(sides: Sequence[Any], n: int, measures: Sequence[tuple[str, str, str, str]], path: str) -> str:
    """A PNG of the figures at size n: rates, latencies and bytes, log scales. Returns a note."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no plot written"
    run = [s for s in sides if not s.skip]
    groups = [[m for m in measures if m[3] == "rate"], [m for m in measures if m[3] == "time"],
              [m for m in measures if m[3] == "size"]]
    titles = ["throughput (higher is better)", "latency, ms (lower is better)", "bytes per record (lower is better)"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5), gridspec_kw={"width_ratios": [3, 5, 1.4]})
    width = 0.8 / max(len(run), 1)
    for ax, group, title in zip(axes, groups, titles, strict=True):
        drawn = False
        for j, s in enumerate(run):
            xs, ys = [], []
            for i, (key, _label, _unit, kind) in enumerate(group):
                v = s.value(n, key)
                if v is not None and v > 0:
                    xs.append(i + (j - (len(run) - 1) / 2) * width)
                    ys.append(v * 1e3 if kind == "time" else v)
            ax.bar(xs, ys, width, label=s.label, color=f"C{j}")
            drawn = drawn or bool(ys)
        ax.set_xticks(range(len(group)))
        ax.set_xticklabels([m[1].replace(" (", "\n(") for m in group], fontsize=8)
        if drawn and group[0][3] != "size":  # rates and times span decades; sizes do not
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(run), fontsize=8, frameon=False)
    fig.suptitle(f"defenders-vault beside plain SQLite, SQLCipher and sqlalchemy-utils, N = {n:,} "
                 f"(medians; generated by bench/compare.py)", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return ""


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
