"""The chain layer: JSON-RPC transport (rpc), the contracts' ABI codec (abi), and typed reads and
sends (client). It knows no database: the signers' nonces are kept by the NonceStore handed in."""

from relay.chain.abi import ABI_DIR, CONTRACTS, Call, Contract, checksum
from relay.chain.client import (
    CANCEL_OPEN,
    CANCELLED,
    CLOSED,
    NONE,
    OPEN,
    REFUNDED,
    Chain,
    Estimate,
    NonceStore,
    OnChainPayment,
    Receipt,
    ShopInfo,
)

__all__ = [
    "ABI_DIR",
    "CANCELLED",
    "CANCEL_OPEN",
    "CLOSED",
    "CONTRACTS",
    "NONE",
    "OPEN",
    "REFUNDED",
    "Call",
    "Chain",
    "Contract",
    "Estimate",
    "NonceStore",
    "OnChainPayment",
    "Receipt",
    "ShopInfo",
    "checksum",
]
