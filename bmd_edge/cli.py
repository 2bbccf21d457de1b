"""The `bmd-edge` command line: thin Typer wrappers over the library.

Each command lives in `bmd_edge/commands/<name>.py` and imports its heavy dependencies (torch,
nncf, openvino) inside the function body, so `bmd-edge predict` never imports torch and
`bmd-edge --help` starts fast. Library code raises `BmdEdgeError`; `main()` turns that into one
line on stderr and the error's exit code — never a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from bmd_edge import __version__
from bmd_edge.commands import benchmark, compress, inference, synth, training
from bmd_edge.errors import BmdEdgeError

app = typer.Typer(
    name="bmd-edge",
    help="Femoral-neck BMD from a hip radiograph plus clinical facts, fast on a workstation CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bmd-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    """Estimate femoral-neck BMD (g/cm², GE Lunar scale) from a hip X-ray and clinical facts."""


app.command("synth")(synth.synth)
app.command("train")(training.train)
app.command("cv")(training.cv)
app.command("evaluate")(training.evaluate)
app.command("quantize")(compress.quantize)
app.command("export")(compress.export)
app.command("predict")(inference.predict)
app.command("info")(inference.info)
app.command("benchmark")(benchmark.benchmark)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, map our errors to one stderr line and an exit code."""
    try:
        app(args=argv, standalone_mode=True)
    except BmdEdgeError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("BMD_EDGE_DEBUG"):
            raise
        typer.echo(
            f"internal error: {type(err).__name__}: {err} (set BMD_EDGE_DEBUG=1 for a traceback)",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
