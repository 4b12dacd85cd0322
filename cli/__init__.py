"""dvault: the command-line front end (installed as the ``vault_cli`` package).

A thin layer: every command parses options, calls one library function, and turns
library errors into one line on stderr and a documented exit code. No crypto here.
"""
