"""How a command ends when it fails: one line on stderr and the error's exit code."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from mlops.cli.options import render
from mlops.errors import MlopsError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_BROKEN_PIPE = 141
EXIT_INTERRUPTED = 130


def handled(fn: F) -> F:
    """Report an mlops error as one line on stderr and exit with its code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MlopsError as exc:
            render.say(f"error: {exc.message}", to=render.err)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            # The reader went away (`mlops … | head`): nothing more to say, and nowhere to.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except Exception as exc:
            if os.environ.get("MLOPS_DEBUG"):
                raise
            render.say(
                f"error: internal error {type(exc).__name__}: {exc} "
                "(MLOPS_DEBUG=1 shows the traceback)",
                to=render.err,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
