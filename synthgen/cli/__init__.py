"""The ``synthgen`` command line, the top layer of the library.

One module per command group: :mod:`~synthgen.cli.local` (``run``, ``sample``: tables and
models on this machine), :mod:`~synthgen.cli.service` (``serve``, ``worker``, ``keys``, ``db``:
run the service and its database) and :mod:`~synthgen.cli.remote` (``remote ...``: talk to a
server). This package is the only place in ``synthgen/`` that starts ``api/`` or ``workers/``.

Every module here imports only typer and the standard library at the top: torch, pandas, Rich,
httpx and the service are imported inside the commands that use them, so ``synthgen --help``
and ``synthgen remote jobs status`` start in a fraction of a second (``bench/cli_start.py``).
The help is click's plain text (``rich_markup_mode=None``): flags without ``<bool>`` labels,
lines that are not boxed at 80 columns, and no Rich import at start.
"""

from __future__ import annotations

import typer

from synthgen.cli import local, remote, service

app = typer.Typer(
    name="synthgen",
    help="Differentially private synthetic tables: train a DP GAN on a table, sample from it, "
         "or run and use the job service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command()(local.run)
app.command()(local.sample)
app.command()(service.serve)
app.command()(service.worker)
app.add_typer(service.keys_app, name="keys")
app.add_typer(service.db_app, name="db")
app.add_typer(remote.remote_app, name="remote")


def main() -> None:
    app()


__all__ = ["app", "main"]
