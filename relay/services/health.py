"""Whether this relay can take payments (its database and chain node answer, and every signer can
pay for gas), and the state its Prometheus metrics read at each scrape."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from relay.chain import Chain
from relay.db import Database
from relay.models import Callback, IndexerCursor, Payment, Signer


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


def _gauge(name: str, doc: str, label: str | None, values: Mapping[Any, float]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, doc, labels=[label] if label else None)
    for key, value in values.items():
        gauge.add_metric([str(key)] if label else [], value)
    return gauge


class State(Collector):
    """Payments by status, callbacks by state, the indexer's lag and each signer's gas money and
    transactions not yet mined, read when Prometheus scrapes; the chain's part is left out while the
    node does not answer (`relay_chain_up` 0)."""

    def __init__(self, db: Database, chain: Chain) -> None:
        self.db, self.chain = db, chain

    def describe(self) -> list[Metric]:
        return []  # not read at registration: the database and the node are asked only when scraped

    def collect(self) -> Iterator[Metric]:
        with self.db.session() as session:
            payments = dict(session.execute(select(Payment.status, func.count()).group_by(Payment.status)).all())
            callbacks = dict(session.execute(select(Callback.state, func.count()).group_by(Callback.state)).all())
            indexed = (session.scalar(select(IndexerCursor.next_block)) or 1) - 1
            nonces = dict(session.execute(select(Signer.address, Signer.next_nonce)).all())
        yield _gauge("relay_payments", "Payments by status (1-11, docs/api.md)", "status", payments)
        yield _gauge("relay_callbacks", "KIOSK callbacks by state (pending, delivered, dead)", "state", callbacks)
        try:
            head = self.chain.block_number()
            signers = {
                s.address: (self.chain.balance(s.address), self.chain.mined_count(s.address))
                for s in self.chain.signers
            }
        except Exception:
            yield _gauge("relay_chain_up", "1 while the chain node answers", None, {"": 0})
            return
        yield _gauge("relay_chain_up", "1 while the chain node answers", None, {"": 1})
        yield _gauge(
            "relay_indexer_lag_blocks", "Blocks the event indexer is behind the head", None, {"": head - indexed}
        )
        balances = {a: wei / 1e18 for a, (wei, _) in signers.items()}
        yield _gauge("relay_signer_balance_eth", "Each relay signer's ETH for gas", "signer", balances)
        lag = {a: (nonces.get(a) or mined) - mined for a, (_, mined) in signers.items()}
        yield _gauge("relay_signer_unmined", "Transactions each signer sent that are not mined yet", "signer", lag)
