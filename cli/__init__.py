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
    main()
