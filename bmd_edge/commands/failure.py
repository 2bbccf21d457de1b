"""The one error path of the command line: an exception becomes one stderr line and a code.

`BmdEdgeError` (bad input, a bundle that fails verification: the user can act on it) gives its
message and its own exit code (2 for those); anything else is a bug in bmd-edge: one
`internal error:` line and exit 1. `cli.py` wraps every command with it (so CliRunner and the
console script behave the same) and `cli.main` uses it for errors raised while parsing options.
"""

from __future__ import annotations

import typer

from bmd_edge.errors import BmdEdgeError
from bmd_edge.errors import one_line as one_line  # controls escaped (a path's \n), length capped


def fail(err: BaseException) -> int:
    """Print the one line for `err` on stderr and return the exit code."""
    if isinstance(err, BmdEdgeError):
        typer.echo(f"error: {one_line(str(err))}", err=True)
        return err.exit_code
    typer.echo(f"internal error: {type(err).__name__}: {one_line(str(err))} "
               "(set BMD_EDGE_DEBUG=1 for a traceback)", err=True)
    return 1
