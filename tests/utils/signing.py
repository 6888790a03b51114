"""Signing helpers for tests."""

from __future__ import annotations

from ape import chain

from scripts._system import domain_of, sign_action

__all__ = ["deadline", "domain_of", "sign"]

sign = sign_action


def deadline(seconds: int = 3600) -> int:
    """A deadline `seconds` after the chain's next block time."""
    return chain.pending_timestamp + seconds
