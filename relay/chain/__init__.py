"""The chain layer: JSON-RPC transport (rpc), the contracts' ABI codec (abi), typed reads and sends
(client). It knows no database: the signers' nonces are kept by the NonceStore handed in."""

from relay.chain.abi import ABI_DIR, Call, checksum
from relay.chain.client import CANCEL_OPEN, CANCELLED, CLOSED, NONE, OPEN, REFUNDED, Chain, Estimate, Receipt, ShopInfo

__all__ = ["ABI_DIR", "Call", "Chain", "Estimate", "Receipt", "ShopInfo", "checksum"]
__all__ += ["CANCELLED", "CANCEL_OPEN", "CLOSED", "NONE", "OPEN", "REFUNDED"]  # the on-chain payment statuses
