"""EIP-712 typed data of every signed action, shared by the relay, scripts and tests. Field names
and order are an interface: they must match the type hashes in `contracts/`."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

VERSION = "1"

# Domain names: the `name` each contract passes to EIP712.
PAYMENT_DOMAIN = "LoyaltyPayment"
SHOP_DOMAIN = "ShopRegistry"

_OWNED = "address account,uint256 nonce,uint256 deadline"  # who signs, with its nonce in the verifying contract
_SETTINGS = "bytes32 shopId,string name,uint256 provideWaitTime,uint256 providePercent"
_SIGNATURES = {
    # Verified by LoyaltyPayment.
    "NewPayment": "bytes32 paymentId,string purchaseId,uint256 amount,string currency,bytes32 shopId,"
    "address account,uint8 loyaltyType,uint256 maxTotal,uint256 nonce,uint256 deadline",
    "CancelPayment": f"bytes32 paymentId,string purchaseId,bytes32 shopId,{_OWNED}",
    # Verified by the relay, in the LoyaltyPayment domain.
    "DenyPayment": "bytes32 paymentId,address account,uint256 deadline",
    "DenyCancel": "bytes32 paymentId,address account,uint256 deadline",
    "TemporaryAccount": "address account,uint256 deadline",
    "RegisterPushToken": "address account,string token,uint256 deadline",
    "AppSession": "address account,uint256 deadline",
    # Verified by ShopRegistry.
    "AddShop": f"{_SETTINGS},{_OWNED}",
    "UpdateShop": f"{_SETTINGS},{_OWNED}",
    "OpenWithdrawal": f"bytes32 shopId,uint256 amount,{_OWNED}",
    "CloseWithdrawal": f"bytes32 shopId,{_OWNED}",
    "TransferShop": f"bytes32 shopId,address newOwner,{_OWNED}",
    "AcceptShop": f"bytes32 shopId,{_OWNED}",
    # Verified by Ledger.
    "SwitchToToken": "address account,uint256 minToken,uint256 nonce,uint256 deadline",
}
# Each type's (field, type) pairs, in order.
TYPES = {name: [(f.split()[1], f.split()[0]) for f in fields.split(",")] for name, fields in _SIGNATURES.items()}
DOMAIN = "string name,string version,uint256 chainId,address verifyingContract"
# OpenZeppelin's ECDSA, which the contracts verify with, takes only 65-byte signatures with v 27 or 28
# and s in the lower half of the curve order (EIP-2); the relay accepts the same, or the chain would
# refuse a signature the relay had taken.
HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
DOMAIN_FIELDS = [{"name": f.split()[1], "type": f.split()[0]} for f in DOMAIN.split(",")]


def domain(name: str, chain_id: int, verifying_contract: str) -> dict[str, Any]:
    return {"name": name, "version": VERSION, "chainId": chain_id, "verifyingContract": verifying_contract}


def build(primary_type: str, domain_: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """The ``eth_signTypedData_v4`` document, every integer of its message a decimal string:
    `JSON.parse` turns a number beyond 2**53 into a float (which wallets refuse or sign as another
    value); eth-account encodes the string as the integer it spells."""
    fields = TYPES[primary_type]
    missing = {name for name, _ in fields} - message.keys()
    if missing:
        raise ValueError(f"{primary_type} is missing {sorted(missing)}")
    return {
        "types": {
            "EIP712Domain": DOMAIN_FIELDS,
            primary_type: [{"name": name, "type": type_} for name, type_ in fields],
        },
        "primaryType": primary_type,
        "domain": domain_,
        "message": {
            name: str(int(message[name])) if type_.startswith(("uint", "int")) else message[name]
            for name, type_ in fields
        },
    }


def sign(private_key: bytes | str, typed: dict[str, Any]) -> str:
    """Signs a typed-data document; returns the 65-byte signature as 0x-hex."""
    signed = Account.sign_typed_data(private_key, full_message=typed)
    return "0x" + bytes(signed.signature).hex()


def recover(typed: dict[str, Any], signature: str | bytes) -> str:
    """The address that signed ``typed``, checksummed. Raises ValueError for a malformed signature."""
    raw = bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else signature
    if len(raw) != 65 or raw[64] not in (27, 28) or int.from_bytes(raw[32:64]) > HALF_ORDER:
        raise ValueError("a wallet's signature has 65 bytes, v 27 or 28 and s in the lower half (EIP-2)")
    return str(Account.recover_message(encode_typed_data(full_message=typed), signature=raw))
