"""What every command group shares: one-line errors and warnings, output-path checks.

Errors and warnings are printed as plain lines (click, no Rich): a terminal of any width gets
the whole line, unwrapped, so it can be copied and grepped. Rich is imported only by the
commands that draw a progress bar or a table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import typer

EXIT_USAGE = 2


def error(message: str, code: str | None = None) -> None:
    """Print ``error (code): message`` on stderr as one line."""
    typer.secho("error", fg="red", bold=True, err=True, nl=False)
    typer.echo(f" ({code}): {message}" if code else f": {message}", err=True)


def warning(message: str) -> None:
    typer.secho("warning", fg="yellow", err=True, nl=False)
    typer.echo(f": {message}", err=True)


def fail(exc: Exception) -> typer.Exit:
    """The exit of a command stopped by a user error (a SynthgenError or a ValueError)."""
    error(str(exc), getattr(exc, "code", "invalid-argument"))
    return typer.Exit(EXIT_USAGE)


def usage_error(message: str, code: str = "invalid-argument") -> NoReturn:
    error(message, code)
    raise typer.Exit(EXIT_USAGE)


def check_output_path(option: str, path: Path, *, inputs: tuple[Path, ...] = ()) -> None:
    """Exit 2 with one line unless ``path`` can be written: its folder exists and is writable,
    it is not a folder, and it is none of ``inputs``. Checked before any work, so that a typo
    costs a second rather than a whole training run."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        usage_error(f"{option} {path} is a folder; give a file name", "bad-output-path")
    if not folder.is_dir():
        usage_error(f"{option} {path}: the folder {folder} does not exist", "bad-output-path")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists()
                                                     and not os.access(path, os.W_OK)):
        usage_error(f"{option} {path} cannot be written (permission denied)", "bad-output-path")
    resolved = path.resolve()
    if any(resolved == p.resolve() for p in inputs):
        usage_error(f"{option} {path} is the input file; give another name", "bad-output-path")
