"""The `bmd-edge` command line: thin Typer wrappers over the library.

Each command lives in `bmd_edge/commands/<name>.py` and imports its heavy dependencies (torch,
nncf, openvino) inside the function body, so `bmd-edge predict` never imports torch and
`bmd-edge --help` starts fast. Library code raises `BmdEdgeError`; `main()` turns that into one
line on stderr and the error's exit code — never a traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer
import typer.main

from bmd_edge import __version__
from bmd_edge.commands import benchmark, compress, inference, screen, serve, synth, training
from bmd_edge.commands.failure import fail, one_line
from bmd_edge.commands.strict import StrictCommand
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


app.command("synth", cls=StrictCommand)(synth.synth)
app.command("train", cls=StrictCommand)(training.train)
app.command("cv", cls=StrictCommand)(training.cv)
app.command("evaluate", cls=StrictCommand)(training.evaluate)
app.command("quantize", cls=StrictCommand)(compress.quantize)
app.command("export", cls=StrictCommand)(compress.export)
app.command("predict", cls=StrictCommand)(inference.predict)
app.command("info", cls=StrictCommand)(inference.info)
app.command("screen", cls=StrictCommand)(screen.screen)
app.command("serve", cls=StrictCommand)(serve.serve)
app.command("benchmark", cls=StrictCommand)(benchmark.benchmark)


def _guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """A command whose failures go through `fail` (also under CliRunner, which skips main)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):  # --help, usage errors
            raise
        except Exception as err:  # noqa: BLE001 - every other failure takes the one path
            if os.environ.get("BMD_EDGE_DEBUG") and not isinstance(err, BmdEdgeError):
                raise
            raise typer.Exit(fail(err)) from None

    return run


for _info in app.registered_commands:  # every command, also ones added above later
    _info.callback = _guarded(_info.callback)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, map every failure to one stderr line and an exit code.

    The click command runs with its own error printing off (`make_context` + `invoke`, as
    `standalone_mode=False` would), so a bad option value (`--age abc`) gives one `error:` line
    and exit 2 instead of click's multi-line usage box, and Ctrl-C reaches us unconverted.
    """
    # The CLI owns stderr: one line per failure. OpenCV would add its own "[ WARN:0@0.3] ... PNG
    # input buffer is incomplete" line on a damaged file (read when cv2 is first imported).
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        try:
            with command.make_context("bmd-edge", args) as ctx:
                command.invoke(ctx)
        except EOFError as err:  # a prompt hit end of input: the same as Ctrl-C at a prompt
            raise typer.Abort() from err
    except typer.Exit as err:  # --help, --version, and commands' own `raise typer.Exit(code)`
        sys.exit(err.exit_code)
    except BmdEdgeError as err:  # raised while parsing options, before a command runs
        sys.exit(fail(err))
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.TyperException as err:  # click's UsageError, BadParameter, NoSuchOption, ...
        if type(err).__name__ == "NoArgsIsHelpError":
            sys.exit(err.exit_code)  # building it already printed the help (to stdout)
        where = getattr(err, "ctx", None)
        hint = f" (see '{where.command_path} --help')" if where is not None else ""
        typer.echo(f"error: {one_line(err.format_message())}{hint}", err=True)
        sys.exit(getattr(err, "exit_code", 2))
    except Exception as err:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("BMD_EDGE_DEBUG"):
            raise
        sys.exit(fail(err))


if __name__ == "__main__":
    main()
