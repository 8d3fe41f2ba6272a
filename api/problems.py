"""RFC 9457 problem details for every error, FastAPI's own 404/405/422 included."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_TYPE = "urn:synthgen:problem:{code}"
MEDIA_TYPE = "application/problem+json"


class ProblemDetail(BaseModel):
    """An RFC 9457 problem; ``code`` is stable and names the ``type``."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    code: str


class Problem(Exception):
    def __init__(self, status: int, code: str, detail: str, *,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers
        self.extra = extra


# The answers of admission_problem, for the OpenAPI document of the routes that use it.
ADMISSION_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such dataset (for this tenant)."},
    409: {"description": "The dataset's privacy budget would be exceeded (budget-exceeded)."},
    410: {"description": "The dataset's upload was deleted by the retention policy "
                         "(dataset-purged)."},
}


def admission_problem(exc: Exception) -> Problem:
    """The answer to a job (or batch) that cannot be accepted: budget, purge, no dataset."""
    from synthgen.service.budget import BudgetExceeded, DatasetPurged

    if isinstance(exc, BudgetExceeded):
        what = exc.what  # "epsilon" or "delta"
        figures: dict[str, Any] = {f"cap_{what}": exc.cap, f"used_{what}": exc.used,
                                   f"requested_{what}": exc.asked}
        return Problem(409, "budget-exceeded", str(exc), dataset_id=exc.dataset_id, **figures)
    if isinstance(exc, DatasetPurged):
        return Problem(410, "dataset-purged", f"dataset {exc.args[0]}'s upload was deleted by "
                       "the retention policy; upload the table again (or a new version)",
                       dataset_id=exc.args[0])
    return Problem(404, "not-found", f"there is no dataset {exc.args[0]!r}")


def problem_body(path: str | None, status: int, code: str, detail: str, **extra: Any
                 ) -> dict[str, Any]:
    return {
        "type": PROBLEM_TYPE.format(code=code),
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": path,
        "code": code,
        **extra,
    }


def problem_response(request: Request, status: int, code: str, detail: str, *,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = problem_body(request.url.path, status, code, detail, **extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


_CODES = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
          405: "method-not-allowed", 406: "not-acceptable", 413: "too-large",
          415: "unsupported-media-type"}


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc.status, exc.code, exc.detail, headers=exc.headers,
                                **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "http-error")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"there is no route {request.url.path}"
        if exc.status_code == 413:
            detail = "the request body is over this route's size limit"
        return problem_response(request, exc.status_code, code, detail,
                                headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        detail = "invalid request"
        if errors:
            loc = ".".join(str(p) for p in errors[0]["loc"])
            detail = f"{loc}: {errors[0]['msg']}" if loc else str(errors[0]["msg"])
        return problem_response(request, 422, "validation-error", detail, errors=errors)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(request, 500, "internal-error",
                                "the server failed to handle this request; it was logged")
