"""fflm's command line: a thin Typer layer over the library. `main()` maps errors to one line and an
exit code: 2 for usage errors, 1 for failures (an `FflmError` says which it is; an OSError is a failure), and
anything else to "internal error": a bug, not the user's mistake. No tracebacks (FFLM_DEBUG=1 shows them)."""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager

for _var, _quiet in (("OPENCV_LOG_LEVEL", "ERROR"), ("OPENCV_FFMPEG_LOGLEVEL", "-8")):  # read when cv2 loads
    os.environ.setdefault(_var, _quiet)

import typer  # noqa: E402

from fflm import __version__  # noqa: E402
from fflm.cli.app import app, err  # noqa: E402
from fflm.cli.clickcompat import exceptions as click_exc  # noqa: E402
from fflm.errors import BoxWarning, FflmError  # noqa: E402

from fflm.cli import batch, bench, detect, evaluate, export, info, train  # noqa: E402,F401  (registers the commands)


def _version(value: bool) -> None:
    if value:
        print(f"fflm {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", "-V", help="Show the version and exit.",
                                                      callback=_version, is_eager=True)) -> None:
    """Precise facial landmarks on photos of any resolution."""


def _one_line_warning(msg, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"fflm: warning: {msg}", file=sys.stderr)


@contextmanager
def _quiet_libraries(debug: bool):
    """Keep the C libraries' own chatter (libpng's "iCCP: ...", FFmpeg's "moov atom not found") off the terminal:
    file descriptor 2 goes to /dev/null while fflm's messages go to the real stderr through `sys.stderr`.
    Only when `sys.stderr` is the process's stderr (not under a test's capture), and not with FFLM_DEBUG."""
    try:
        real = sys.stderr.fileno() == 2 and not debug
    except (AttributeError, OSError, ValueError):
        real = False
    if not real:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    old = sys.stderr
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=old.encoding, errors="backslashreplace")
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        sys.stderr.close()
        sys.stderr = old


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    debug = bool(os.environ.get("FFLM_DEBUG"))
    with _quiet_libraries(debug):
        return _main(argv, debug)


def _main(argv: list[str] | None, debug: bool) -> int:
    warnings.showwarning = _one_line_warning
    warnings.filterwarnings("always", category=BoxWarning)  # every clipped box of every image gets its line
    try:
        rv = app(args=argv, prog_name="fflm", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except typer.Exit as e:
        return e.exit_code
    except click_exc.NoArgsIsHelpError:  # the help was shown; no command given is a usage error, as in click
        return 2
    except typer.Abort:
        print("fflm: interrupted", file=sys.stderr)
        return 130
    except click_exc.ClickException as e:
        cmd = f" {e.ctx.info_name}" if getattr(e, "ctx", None) is not None and e.ctx.parent is not None else ""
        hint = f" (see 'fflm{cmd} --help')" if isinstance(e, click_exc.UsageError) else ""
        print(f"fflm{cmd}: error: {e.format_message()}{hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("fflm: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place every failure becomes one line
        if debug:
            raise
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, (FflmError, OSError)):
            print(f"fflm: error: {text}", file=sys.stderr)
            return e.exit_code if isinstance(e, FflmError) else 1
        print(f"fflm: internal error: {type(e).__name__}: {text} (FFLM_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


__all__ = ["app", "main", "run", "err"]
