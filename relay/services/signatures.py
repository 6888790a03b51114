"""EIP-712 signatures the relay verifies itself: the app's decisions and wallet actions, and the
owner-signed actions it checks before paying for their transaction."""

from __future__ import annotations

import time
from typing import Any

from eth_account.messages import encode_typed_data
from eth_utils import keccak

from relay import typed_data
from relay.chain import Chain
from relay.errors import ExpiredSignature, InvalidParameter, InvalidSignature


def require_deadline(deadline: int, most_ahead: int | None = None) -> None:
    if deadline < time.time():
        raise ExpiredSignature(f"The signature deadline {deadline} has passed.")
    if most_ahead is not None and deadline > time.time() + most_ahead:
        raise InvalidParameter(f"The deadline may be at most {most_ahead} seconds ahead.")


def verify(chain: Chain, typed: dict[str, Any], signature: str, signer: str) -> None:
    """Accepts `signer`'s signature of `typed`: an EOA's, or a contract wallet's (ERC-1271)."""
    try:
        recovered: str | None = typed_data.recover(typed, signature)
    except Exception as exc:  # malformed or non-canonical signature bytes
        recovered = None
        if not chain.has_code(signer):
            raise InvalidParameter(f"Malformed signature: {exc}") from exc
    if recovered is not None and recovered.lower() == signer.lower():
        return
    if chain.has_code(signer) and chain.is_valid_erc1271(
        signer, digest(typed), bytes.fromhex(signature.removeprefix("0x"))
    ):
        return
    # Without the signer's address: the wallet behind a temporary address is no one else's to read.
    stale = " If the signer signed another action since fetching it, fetch it again: its nonce has moved on."
    text = f"The signature is not the signature of this {typed['primaryType']} by its signer."
    raise InvalidSignature(text + (stale if "nonce" in typed["message"] else ""))


def digest(typed: dict[str, Any]) -> bytes:
    """The EIP-712 hash a wallet signs: one per type, domain and message."""
    signable = encode_typed_data(full_message=typed)
    return keccak(b"\x19" + signable.version + signable.header + signable.body)
