"""Assertion helpers for the ledger's invariants."""

from __future__ import annotations

from ape.contracts import ContractInstance

POINT, TOKEN = 0, 1


def ledger_tokens_balance(token: ContractInstance, ledger: ContractInstance, accounts) -> None:
    """Conservation of tokens: the ledger's ERC-20 balance equals everything it accounts for."""
    held = sum(ledger.accountOf(a)[1] for a in accounts if ledger.accountOf(a)[0] == TOKEN)
    accounted = held + ledger.escrowOf(TOKEN) + ledger.feesOf(TOKEN) + ledger.reserve()
    assert token.balanceOf(ledger) == accounted
