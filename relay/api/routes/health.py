"""Probes for the operator's orchestration: alive, and ready to take payments."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from relay.api.deps import ServicesDep, in_thread

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database and the chain node answer, and every signer can pay for gas")
@in_thread
def readyz(services: ServicesDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        with services.db.session() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = type(exc).__name__
    try:
        checks["chain"] = {"block": services.chain.block_number()}
        low = {
            signer.address: balance
            for signer in services.chain.signers
            if (balance := services.chain.balance(signer.address)) < services.settings.min_signer_balance
        }
        checks["signers"] = {"low": {address: str(wei) for address, wei in low.items()}} if low else "ok"
    except Exception as exc:
        checks["chain"] = type(exc).__name__
    ready = checks["database"] == "ok" and checks.get("signers") == "ok"
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
