"""The OpenAPI document says every status a route can answer, with real model names.

The statuses a route answers are read from its code: each ``Problem(<status>, ...)`` in the
route's function and in the functions of ``api/`` that it calls (transitively), and
``admission_problem`` (404/409/410); an undocumented one fails the test, naming the route.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from functools import cache
from typing import Any

import pytest
from fastapi.routing import APIRoute

import api.routes
from api.main import create_app

ADMISSION = {404, 409, 410}  # api.problems.admission_problem's answers


@cache
def _functions(module_name: str) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    return {node.name: node for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def _where(module_name: str, name: str) -> str | None:
    """The api module that defines the function ``name`` as seen from ``module_name``."""
    if name in _functions(module_name):
        return module_name
    value = getattr(importlib.import_module(module_name), name, None)
    home = getattr(value, "__module__", "")
    return home if home.startswith("api.") and name in _functions(home) else None


def statuses_raised(module_name: str, name: str, seen: set[tuple[str, str]] | None = None
                    ) -> set[int]:
    seen = set() if seen is None else seen
    if (module_name, name) in seen:
        return set()
    seen.add((module_name, name))
    found: set[int] = set()
    for node in ast.walk(_functions(module_name)[name]):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        called = node.func.id
        if called == "Problem" and node.args and isinstance(node.args[0], ast.Constant):
            found.add(int(node.args[0].value))
        elif called == "admission_problem":
            found |= ADMISSION
        elif (home := _where(module_name, called)) is not None:
            found |= statuses_raised(home, called, seen)
    return found


def api_routes() -> list[APIRoute]:
    """The routes of every router under api/routes/ (their paths include the prefix)."""
    routes = []
    for info in pkgutil.iter_modules(api.routes.__path__):
        router = importlib.import_module(f"api.routes.{info.name}").router
        routes += [r for r in router.routes if isinstance(r, APIRoute) and r.include_in_schema]
    return routes


@pytest.fixture(scope="module")
def app_and_schema() -> tuple[Any, dict[str, Any]]:
    app = create_app()
    return app, app.openapi()


def test_every_status_a_route_raises_is_documented(
        app_and_schema: tuple[Any, dict[str, Any]]) -> None:
    schema = app_and_schema[1]
    missing = []
    checked = 0
    for route in api_routes():
        endpoint = route.endpoint
        raised = statuses_raised(endpoint.__module__, endpoint.__name__)
        for method in route.methods:
            documented = set(map(int, schema["paths"][route.path][method.lower()]["responses"]))
            checked += 1
            if raised - documented:
                missing.append(f"{method} {route.path}: {sorted(raised - documented)}")
    assert checked > 20 and missing == []


def test_post_jobs_documents_its_answers(app_and_schema: tuple[Any, dict[str, Any]]) -> None:
    responses = app_and_schema[1]["paths"]["/v1/jobs"]["post"]["responses"]
    assert {"202", "401", "404", "409", "410", "413", "422", "500"} <= set(responses)
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert responses["409"]["content"] == problem
    assert "budget" in responses["409"]["description"]


def test_routes_without_input_do_not_claim_422(
        app_and_schema: tuple[Any, dict[str, Any]]) -> None:
    assert "422" not in app_and_schema[1]["paths"]["/healthz"]["get"]["responses"]


def test_no_generated_body_model_names(app_and_schema: tuple[Any, dict[str, Any]]) -> None:
    schema = app_and_schema[1]
    names = set(schema["components"]["schemas"])
    assert not [n for n in names if n.startswith("Body_")]
    assert {"DatasetUpload", "DatasetVersionUpload"} <= names
    text = str(schema)
    assert "Body_" not in text  # every $ref follows the rename


def test_the_scan_sees_statuses_in_helpers() -> None:
    """The check above can fail: it finds a status raised two calls down (jobs' cancel ->
    job_of -> owned: 404) and one raised by a helper (_finished_output: 409)."""
    assert 404 in statuses_raised("api.routes.jobs", "cancel_job")
    assert {404, 409} <= statuses_raised("api.routes.jobs", "get_synthetic_csv")
    assert ADMISSION <= statuses_raised("api.routes.jobs", "create_job")
