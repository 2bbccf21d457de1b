"""`bmd-edge serve`: run the DICOM node until SIGTERM/SIGINT (see bmd_edge/serve/)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from bmd_edge.commands.failure import fail
from bmd_edge.commands.inference import ALLOW_UNSIGNED, TRUSTED_KEY
from bmd_edge.errors import BmdEdgeError


def serve(
    config: Annotated[Path | None, typer.Option(
        "--config", help="TOML file with serve settings ([serve] table); flags override it.")
    ] = None,
    ae_title: Annotated[str | None, typer.Option(help="Our AE title (default BMDEDGE).")
                        ] = None,
    port: Annotated[int | None, typer.Option(help="DICOM port (default 11112).")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    destination: Annotated[str | None, typer.Option(
        help="Send results by C-STORE to AE@HOST:PORT.")] = None,
    outbox: Annotated[Path | None, typer.Option(
        help="Or write results into this folder.")] = None,
    spool: Annotated[Path | None, typer.Option(
        help="Folder for received images and undelivered results (survives restarts).")] = None,
    workers: Annotated[int | None, typer.Option(help="Analysis threads (default 2).")] = None,
    queue_size: Annotated[int | None, typer.Option(
        help="Images waiting for a worker before C-STORE waits (default 32).")] = None,
    secondary_capture: Annotated[bool | None, typer.Option(
        "--secondary-capture/--no-secondary-capture",
        help="Also send the report picture (default on).")] = None,
    health_port: Annotated[int | None, typer.Option(
        help="Serve GET /health (JSON) on this HTTP port.")] = None,
    model: Annotated[Path | None, typer.Option(
        help="Bundle folder (default: the shipped bundle).")] = None,
    threads: Annotated[int | None, typer.Option(help="Inference threads.")] = None,
    allow_unsigned: Annotated[bool, ALLOW_UNSIGNED] = False,
    trusted_key: Annotated[list[Path] | None, TRUSTED_KEY] = None,
) -> None:
    """Receive hip radiographs by DICOM C-STORE; send back a Structured Report (and a
    Secondary Capture of the report) for each, or write them to an outbox folder.

    Logs are JSON lines on stderr without PHI; a refused image gives a "refused" line with the
    reason and no SR. SIGTERM/SIGINT stop it gracefully: work not finished stays in the spool.
    """
    from bmd_edge.serve import logs
    from bmd_edge.serve.config import ServeConfig
    from bmd_edge.serve.node import ServeNode

    try:
        cfg = ServeConfig.load(config, ae_title=ae_title, port=port, host=host,
                               destination=destination, outbox=outbox, spool=spool,
                               workers=workers, queue_size=queue_size,
                               secondary_capture=secondary_capture, health_port=health_port,
                               model=model, threads=threads, allow_unsigned=allow_unsigned or None,
                               trusted_keys=tuple(trusted_key) if trusted_key else None)
        logs.setup()
        node = ServeNode(cfg)
        node.start()
    except BmdEdgeError as err:  # the one error path (commands/failure.py)
        raise typer.Exit(fail(err)) from None
    except OSError as err:   # port in use, spool not writable
        typer.echo(f"error: cannot start serve: {err.strerror or err}", err=True)
        raise typer.Exit(2) from None
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    node.stop()
