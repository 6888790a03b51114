"""Probes and metrics for the operator's orchestration and monitoring."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from relay.api.deps import Bearer, ServicesDep, in_thread
from relay.errors import InvalidAccessKey
from relay.services.health import readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database and the chain node answer, and every signer can pay for gas")
@in_thread
def readyz(services: ServicesDep) -> JSONResponse:
    ready, checks = readiness(services.db, services.chain, services.settings.min_signer_balance)
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)  # Prometheus text format, for the operator (docs/operations.md)
@in_thread
def metrics(services: ServicesDep, key: Bearer) -> Response:
    token = services.settings.metrics_token
    if token is not None and not hmac.compare_digest((key or "").encode(), token.get_secret_value().encode()):
        raise InvalidAccessKey("GET /metrics needs `Authorization: Bearer <RELAY_METRICS_TOKEN>`.")
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
