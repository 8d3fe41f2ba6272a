"""``GET /metrics`` for Prometheus: the service's state, behind the operator's token.

The figures are service-wide (every tenant's job volume), which no tenant may see, so the route
needs ``Authorization: Bearer $SYNTHGEN_METRICS_TOKEN`` and is off while no token is set. It is
left out of the OpenAPI document, which describes the tenants' API.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.deps import SettingsDep
from api.problems import Problem
from synthgen.service.metrics import ServiceCollector

router = APIRouter(tags=["operations"])
_bearer = HTTPBearer(auto_error=False)


def registry_for(request: Request) -> CollectorRegistry:
    registry: CollectorRegistry | None = getattr(request.app.state, "metrics", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ServiceCollector(request.app.state.db))
        request.app.state.metrics = registry
    return registry


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, settings: SettingsDep, credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Response:
    token = settings.metrics_token
    if not token:
        raise Problem(404, "not-found", "metrics are off: the operator sets "
                      "SYNTHGEN_METRICS_TOKEN to turn them on")
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise Problem(401, "unauthorized", "send the metrics token as 'Authorization: Bearer "
                      "<SYNTHGEN_METRICS_TOKEN>'", headers={"WWW-Authenticate": "Bearer"})
    return Response(generate_latest(registry_for(request)), media_type=CONTENT_TYPE_LATEST)
