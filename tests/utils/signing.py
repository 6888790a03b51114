"""Signing helpers for tests."""

from __future__ import annotations

from typing import Any

from ape import chain
from ape.api import AccountAPI
from eth_account import Account
from eth_account.messages import encode_typed_data

from relay import typed_data
from scripts._system import domain_of, sign_action, sign_next

__all__ = ["deadline", "domain_of", "malleable", "sign", "sign_in_domain", "sign_next", "sign_typed"]

sign = sign_action


def deadline(seconds: int = 3600) -> int:
    """A deadline `seconds` after the chain's next block time."""
    return chain.pending_timestamp + seconds


def sign_in_domain(signer: AccountAPI, domain: dict[str, Any], primary_type: str, **message: Any) -> str:
    """`signer`'s signature of one of the system's typed actions in an arbitrary `domain` (for
    signatures made for another chain or contract)."""
    return typed_data.sign(signer.private_key, typed_data.build(primary_type, domain, message))


def sign_typed(
    signer: AccountAPI,
    domain: dict[str, Any],
    primary_type: str,
    fields: list[tuple[str, str]],
    message: dict[str, Any],
) -> str:
    """A signature of any EIP-712 type (e.g. an ERC-2612 `Permit`), given its fields."""
    typed = {
        "types": {
            "EIP712Domain": typed_data.DOMAIN_FIELDS,
            primary_type: [{"name": name, "type": type_} for name, type_ in fields],
        },
        "primaryType": primary_type,
        "domain": domain,
        "message": message,
    }
    signed = Account.sign_message(encode_typed_data(full_message=typed), signer.private_key)
    return "0x" + bytes(signed.signature).hex()


# Order of the secp256k1 group.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def malleable(signature: str) -> str:
    """The other valid ECDSA signature of the same message (s -> n - s, v flipped), which EIP-2
    forbids and OpenZeppelin's ECDSA rejects."""
    raw = bytes.fromhex(signature.removeprefix("0x"))
    r, s, v = raw[:32], int.from_bytes(raw[32:64], "big"), raw[64]
    flipped = 27 if v == 28 else 28
    return "0x" + (r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([flipped])).hex()
