"""``synthgen serve | worker | keys``: run the service (the ``db`` group belongs here too).

The only module of ``synthgen/`` that starts ``api/`` and ``workers/``, each imported inside the
command that runs it; the settings (pydantic-settings) are read there too.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from synthgen.cli._common import usage_error

keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True, rich_markup_mode=None)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (SYNTHGEN_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (SYNTHGEN_PORT).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the HTTP API. Without SYNTHGEN_BROKER_URL it also runs the jobs (embedded engine:
    SQLite and a local folder under SYNTHGEN_DATA_DIR, training in subprocesses)."""
    import uvicorn

    from api.main import create_app
    from synthgen.service.settings import Settings

    settings = Settings()
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s "
                        "%(message)s")
    uvicorn.run(create_app(settings), host=host or settings.host, port=port or settings.port,
                log_level=log_level)


def worker(
    queues: Annotated[str, typer.Option(help="Queues to consume: gpu (training) and/or "
                                        "control (lease reconciler).")] = "gpu",
    concurrency: Annotated[int, typer.Option(help="Training processes: 1 per GPU; run one "
                                             "worker per GPU with CUDA_VISIBLE_DEVICES.")] = 1,
    hostname: Annotated[str | None, typer.Option(help="Celery node name.")] = None,
    log_level: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run a Celery worker of the cluster engine (needs SYNTHGEN_BROKER_URL)."""
    from synthgen.service.settings import Settings

    if not Settings().broker_url:
        usage_error("set SYNTHGEN_BROKER_URL (redis://...) to run a worker", "no-broker")
    from workers.celery_app import app as celery_app

    argv = ["worker", "-Q", queues, "-c", str(concurrency), "--pool", "prefork",
            "--loglevel", log_level, "--without-gossip", "--without-mingle"]
    if hostname:
        argv += ["-n", hostname]
    celery_app.worker_main(argv)


@keys_app.command("create")
def create_key(
    tenant: Annotated[str, typer.Option(help="Tenant name (created if new).")],
) -> None:
    """Create an API key for TENANT and print it (it is stored hashed: shown only once)."""
    from synthgen.service.db import Database
    from synthgen.service.keys import create_key as make_key
    from synthgen.service.settings import Settings

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    db.create_all()
    try:
        tenant_id, key = make_key(db, tenant)
    finally:
        db.dispose()
    typer.echo(key)
    typer.echo(f"tenant {tenant} ({tenant_id}); store this key now, it is not shown again",
               err=True)
