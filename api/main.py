"""The FastAPI application: ``uvicorn --factory api.main:create_app`` or ``synthgen serve``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api import docs, problems
from api.body_limit import ProblemBodyLimit
from api.routes import (
    batches,
    connections,
    datasets,
    health,
    jobs,
    metrics,
    schedules,
    webhooks,
)
from synthgen._version import __version__
from synthgen.service.db import Database
from synthgen.service.settings import Settings
from synthgen.service.storage import Storage

JSON_BODY_LIMIT = 1024 * 1024
MULTIPART_OVERHEAD = 1024 * 1024  # the schema field and part headers beside the file
# The multipart routes, and the names of their form models in the OpenAPI document (FastAPI
# would call them Body_<operation id>).
UPLOADS = {("/v1/datasets", "post"): "DatasetUpload",
           ("/v1/datasets/{dataset_id}/versions", "put"): "DatasetVersionUpload"}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from workers import make_dispatcher
        from workers.periodic import PeriodicLoops

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.db_url)
        _prepare_database(db, settings)
        storage = Storage(settings.objects_url)
        dispatcher = make_dispatcher(settings, db, storage)
        app.state.settings, app.state.db, app.state.storage = settings, db, storage
        app.state.dispatcher = dispatcher
        dispatcher.start()
        loops = PeriodicLoops(settings, db, dispatcher)  # schedule tick, webhook delivery
        loops.start()
        logging.getLogger("synthgen.service").info("synthgen API ready (%s engine)",
                                                   dispatcher.engine)
        try:
            yield
        finally:
            loops.stop()
            dispatcher.stop()
            db.dispose()

    app = FastAPI(
        title="synthgen",
        version=__version__,
        summary="Differentially private synthetic tables as a service.",
        description="Upload a table, submit a job with a privacy budget, poll it, download the "
        "synthetic CSV and its privacy report. Errors are RFC 9457 problem details.",
        lifespan=lifespan,
        max_body_size=JSON_BODY_LIMIT,
        docs_url=None,  # served by api.docs from installed assets, not a CDN
        redoc_url=None,
    )
    problems.install(app)
    docs.install(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(connections.datasets_router)
    app.include_router(datasets.router,
                       max_body_size=settings.max_upload_bytes + MULTIPART_OVERHEAD)
    app.include_router(jobs.router)
    app.include_router(batches.router)
    app.include_router(schedules.router)
    app.include_router(webhooks.router)
    app.include_router(connections.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    upload_limit = settings.max_upload_bytes + MULTIPART_OVERHEAD
    # Outside FastAPI's whole stack: its app-wide body limit sits above user middleware.
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: ProblemBodyLimit(  # type: ignore[method-assign]
        build(), limit_for=lambda method, path: upload_limit if _is_upload(method, path)
        else JSON_BODY_LIMIT)
    return app


def _prepare_database(db: Database, settings: Settings) -> None:
    from synthgen.service.migrate import check_current, upgrade

    migrate = db.is_sqlite if settings.migrate_on_start is None else settings.migrate_on_start
    if migrate:
        upgrade(db)
    else:
        check_current(db)  # refuse to serve on a schema this release does not know


def _is_upload(method: str, path: str) -> bool:
    return (method == "POST" and path == "/v1/datasets") or (
        method == "PUT" and path.startswith("/v1/datasets/") and path.endswith("/versions"))


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with every status a route can answer and every error response
    documented as problem+json. Route-specific answers (409, 410, ...) are declared in the
    routes' ``responses``; the ones every route of a kind can give are added here."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                         description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = problems.ProblemDetail.model_json_schema()
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, item in schema["paths"].items():
        for method, op in item.items():
            responses = op.setdefault("responses", {})
            for status, text in _common_errors(path, method, op).items():
                responses.setdefault(status, {"description": text})
            for status, response in responses.items():
                if status.startswith(("4", "5")) and status != "503":
                    response["content"] = problem
            if (path, method) in UPLOADS:
                _name_form_model(op, components, UPLOADS[(path, method)])
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    app.openapi_schema = schema
    return schema


def _common_errors(path: str, method: str, op: dict[str, Any]) -> dict[str, str]:
    """The answers every route of its kind can give (auth, lookups, input, body size)."""
    errors = {"500": "Unexpected server error (logged; problem details)."}
    if op.get("parameters") or "requestBody" in op:
        errors["422"] = "Invalid request (problem details)."
    if path.startswith("/v1/"):
        errors["401"] = "Missing or unknown API key."
    if "{" in path:
        errors["404"] = "No such object for this tenant."
    if "requestBody" in op:  # unparsable, or past the body limit (api.body_limit)
        errors["400"] = "The body is not well-formed (JSON, UTF-8 or multipart)."
        errors["413"] = ("The upload is over the size limit." if (path, method) in UPLOADS
                         else "The request body is over 1 MiB.")
    if (path, method) in UPLOADS:
        errors["415"] = "The file is neither CSV nor Parquet (unsupported-format)."
    return errors


def _name_form_model(op: dict[str, Any], components: dict[str, Any], name: str) -> None:
    """Rename FastAPI's generated ``Body_...`` model of a multipart route to ``name``."""
    media = op["requestBody"]["content"]["multipart/form-data"]
    generated = media["schema"]["$ref"].rsplit("/", 1)[1]
    model = components.pop(generated)
    model["title"] = name
    components[name] = model
    media["schema"]["$ref"] = f"#/components/schemas/{name}"
