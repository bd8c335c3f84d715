"""The program's entry point: passwords leave the command line before anything is imported.

`ps` shows a process's arguments to every user of the machine; a password in --source or
--target is visible from exec until it is overwritten. Importing pgferry (psycopg, rich)
takes a few hundred milliseconds, so the overwrite comes first, from a module that needs
only the standard library.
"""

from __future__ import annotations

from pgferry.pg.secrets import hide_own_argv


def run() -> None:
    """`pgferry ...` and `python -m pgferry ...`."""
    hide_own_argv()
    from pgferry.cli.main import run as run_main

    run_main()
