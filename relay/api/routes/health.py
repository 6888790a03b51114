"""Probes for the operator's orchestration: alive, and ready to take payments."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from relay.api.deps import ServicesDep, in_thread
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
