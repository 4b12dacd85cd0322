"""dvault: the command-line front end (installed as the ``vault_cli`` package).

A thin layer: every command parses options, calls one library function, and turns
library errors into one line on stderr and a documented exit code. No crypto here.
"""


def run() -> None:
    """The ``dvault`` entry point: the process is hardened first (cli.hardening); Ctrl-C
    while the modules are still loading ends with the same one line as later
    (``interrupted``, exit 130), not a traceback."""
    import sys

    from .hardening import harden
    harden()  # before any key or value is in memory: no core dump, no same-user ptrace
    if sys.argv[1:2] == ["panic"]:  # without loading the rest: a panic has no second to spare (cli/panic.py)
        from .panic import fast
        try:
            sys.exit(fast(sys.argv[2:]))
        except KeyboardInterrupt:
            sys.stderr.write("dvault: error: interrupted\n")
            sys.exit(130)
    try:
        from .main import main
    except KeyboardInterrupt:
        sys.stderr.write("dvault: error: interrupted\n")
        sys.exit(130)
    try:
        main()
    finally:
        leave_fast()


def leave_fast() -> None:
    """Move every object to the collector's permanent generation just before the process
    ends. Why: the interpreter's last collection walks every object the imports made
    (SQLAlchemy alone is tens of thousands), which cost a one-shot command ~0.1 s of its
    wall time after its output was written. Nothing is lost: no class of the library or
    the CLI has a finaliser, the vault is closed by its ``with`` before this point, and
    the process's memory goes with it. Only for a process that is about to end (the
    entry points), never in a library call."""
    import gc

    gc.freeze()
