"""Run `bmd-edge` in-process the way a user sees it: exit code, stdout and stderr.

Shared by the tests that drive the real CLI (bad inputs, hostile batches, PHI).
"""

from __future__ import annotations

import contextlib
import io


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `bmd_edge.cli.main(argv)` in this process."""
    from bmd_edge.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()
