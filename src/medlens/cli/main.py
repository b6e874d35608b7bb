"""The single ``medlens`` console script.

Each command group lives in its own module and registers itself here. Heavy imports (torch, MONAI) happen
inside command bodies so that ``medlens --help`` is instant.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

import click
import typer

from medlens.core.errors import Interrupted, MedlensError, one_line

app = typer.Typer(
    name="medlens",
    help="AI on medical images: import data, plan, train, evaluate, predict; read, convert and de-identify "
    "DICOM and NIfTI. Run 'medlens COMMAND --help' for each command.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and debug logging."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    _state["debug"] = debug
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    from rich.logging import RichHandler

    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(show_time=False, show_path=debug, rich_tracebacks=debug)],
        force=True,
    )
    for noisy in (
        "lightning",
        "lightning.pytorch",
        "lightning.fabric",
        "pytorch_lightning",
        "PIL",
        "matplotlib",
        "highdicom",
        "alembic",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING if not debug else logging.INFO)


def _register() -> None:
    # detection_commands and segmentation_commands add voc/coco/yolo and msd/pairs to 'medlens import' on import
    from medlens.cli import (  # noqa: F401
        cluster_commands,
        compression_commands,
        data_commands,
        deid_commands,
        denoise_commands,
        detection_commands,
        explain_commands,
        federated_commands,
        image_commands,
        model_commands,
        pacs_commands,
        pretrain_commands,
        segmentation_commands,
        serve_commands,
        synth_commands,
    )

    data_commands.register(app)
    model_commands.register(app)
    explain_commands.register(app)
    image_commands.register(app)
    deid_commands.register(app)
    serve_commands.register(app)
    pacs_commands.register(app)
    compression_commands.register(app)
    pretrain_commands.register(app)
    denoise_commands.register(app)
    synth_commands.register(app)
    federated_commands.register(app)
    cluster_commands.register(app)


_register()


# What an interrupted command leaves, and how to go on (every command writes atomically or resumably).
AFTER_INTERRUPT = {
    "train": "checkpoints up to the last finished epoch are kept; continue with the same command and --resume",
    "deid": "the files written so far are whole and kept; run the same command again to resume",
    "serve": "the service stopped after the calls in progress; queued jobs go on when it starts again",
    "listen": "every instance answered with success is in the spool; start the node again on it to finish them",
}


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def _command_of(args: list[str]) -> str:
    return next((a for a in args if not a.startswith("-")), "")


def _interrupted(args: list[str], signum: int, after: str | None = None) -> int:
    name = signal.Signals(signum).name
    after = after or AFTER_INTERRUPT.get(_command_of(args), "nothing half-written was left")
    print(f"medlens: interrupted by {name}; {after}", file=sys.stderr)
    return 128 + signum


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (testable in-process, as pydicom's CLI is).

    SIGINT (Ctrl-C) and SIGTERM end a command with exit code 130 or 143 and one line saying what was kept.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for stop in (signal.SIGINT, signal.SIGTERM):
            previous[stop] = signal.signal(stop, _raise_interrupted)
    try:
        return _run(args, debug)
    except (Interrupted, KeyboardInterrupt) as exc:
        number = exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)
        return _interrupted(args, number, getattr(exc, "after_interrupt", None))
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)


_USAGE_ERRORS: tuple[type[Exception], ...] = (
    click.ClickException,
    *filter(None, [getattr(typer, "TyperException", None)]),  # only typer versions with their own click have it
)


def _run(args: list[str], debug: bool) -> int:
    try:
        # without standalone mode Typer returns a command's exit code (typer.Exit: --strict) instead of raising it,
        # and 130 for a KeyboardInterrupt it caught itself
        code = app(args=args, standalone_mode=False, prog_name="medlens")
        if code == 130:
            raise KeyboardInterrupt
    # typer >= 0.22 runs its own copy of click (typer._click) whose exceptions are typer's, not the click package's;
    # the pinned 0.20 (what flwr accepts) raises click's own: both are caught
    except (click.exceptions.Exit, typer.Exit) as exc:
        return int(exc.exit_code or 0)
    except (click.exceptions.Abort, typer.Abort):
        raise KeyboardInterrupt from None
    except _USAGE_ERRORS as exc:  # usage errors: click's message and usage line
        if not hasattr(exc, "show"):
            raise
        exc.show()
        return int(getattr(exc, "exit_code", 2))
    except MedlensError as exc:
        if debug:
            raise
        print(f"medlens: error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except Exception as exc:  # an unexpected failure: still one line unless --debug
        if debug:
            raise
        print(
            f"medlens: internal error: {type(exc).__name__}: {one_line(str(exc))} (run with --debug for details)",
            file=sys.stderr,
        )
        return 2
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


if __name__ == "__main__":
    sys.exit(main())
