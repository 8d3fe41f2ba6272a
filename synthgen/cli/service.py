"""``synthgen serve | worker | keys | db``: run the service and manage its database.

The only module of ``synthgen/`` that starts ``api/`` and ``workers/``, each imported inside the
command that runs it; the settings (pydantic-settings) are read there too.
"""

from __future__ import annotations

from typing import Annotated

import typer

from synthgen.cli._common import error, usage_error

keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True, rich_markup_mode=None)
db_app = typer.Typer(help="The service database.", no_args_is_help=True, rich_markup_mode=None)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (SYNTHGEN_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (SYNTHGEN_PORT).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the HTTP API. Without SYNTHGEN_BROKER_URL it also runs the jobs (embedded engine:
    SQLite and a local folder under SYNTHGEN_DATA_DIR, training in subprocesses)."""
    import uvicorn

    from api.main import create_app
    from synthgen.service.logs import configure_logging
    from synthgen.service.settings import Settings

    settings = Settings()
    configure_logging(log_level, settings.log_format)
    # JSON: no uvicorn log config, so its loggers (access lines included) propagate to the
    # root handler above
    log_config = None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG
    from api.http_errors import protocol_class

    uvicorn.run(create_app(settings), host=host or settings.host, port=port or settings.port,
                log_level=log_level, log_config=log_config, http=protocol_class())


def worker(
    queues: Annotated[str, typer.Option(help="Queues to consume: gpu (training) and/or "
                                        "control (lease reconciler).")] = "gpu",
    concurrency: Annotated[int, typer.Option(help="Training processes: 1 per GPU; run one "
                                             "worker per GPU with CUDA_VISIBLE_DEVICES.")] = 1,
    hostname: Annotated[str | None, typer.Option(help="Celery node name.")] = None,
    log_level: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run a Celery worker of the cluster engine (needs SYNTHGEN_BROKER_URL)."""
    from synthgen.service.logs import configure_logging
    from synthgen.service.settings import Settings

    settings = Settings()
    if not settings.broker_url:
        usage_error("set SYNTHGEN_BROKER_URL (redis://...) to run a worker", "no-broker")
    from workers.celery_app import app as celery_app

    configure_logging(log_level, settings.log_format)
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


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Apply the schema migrations to SYNTHGEN_DATABASE_URL (or the SQLite file in
    SYNTHGEN_DATA_DIR). A database made before migrations existed is recognised and kept."""
    from synthgen.service.db import Database
    from synthgen.service.migrate import MigrationError, upgrade
    from synthgen.service.settings import Settings

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    try:
        before, after = upgrade(db, revision)
    except MigrationError as exc:
        error(str(exc), "migration-failed")
        raise typer.Exit(1) from exc
    finally:
        db.dispose()
    typer.echo(f"database at revision {after} (was {before or 'empty'})")
