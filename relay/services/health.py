"""Whether this relay can take payments: its database and chain node answer, and every signer can
pay for gas."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from relay.chain import Chain
from relay.db import Database


def readiness(db: Database, chain: Chain, min_signer_balance: int) -> tuple[bool, dict[str, Any]]:
    """(ready, each check's result); a failed check says which exception failed it."""
    checks: dict[str, Any] = {}
    try:
        with db.session() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = type(exc).__name__
    try:
        checks["chain"] = {"block": chain.block_number()}
        balances = {signer.address: chain.balance(signer.address) for signer in chain.signers}
        low = {address: str(wei) for address, wei in balances.items() if wei < min_signer_balance}
        checks["signers"] = {"low": low} if low else "ok"
    except Exception as exc:
        checks["chain"] = type(exc).__name__
    return checks["database"] == "ok" and checks.get("signers") == "ok", checks
