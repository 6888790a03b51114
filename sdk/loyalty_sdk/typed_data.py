"""EIP-712 signing for the wallet. Payment decisions and shop actions are signed exactly as the
relay serves them; the few messages the app originates itself are built here, in the relay's
payment domain (`GET /v1/payment/chain`). Their field names and order are an interface of the
relay's API."""

from __future__ import annotations

from typing import Any

from eth_account import Account

TYPES: dict[str, list[dict[str, str]]] = {
    "TemporaryAccount": [{"name": "account", "type": "address"}, {"name": "deadline", "type": "uint256"}],
    "RegisterPushToken": [
        {"name": "account", "type": "address"},
        {"name": "token", "type": "string"},
        {"name": "deadline", "type": "uint256"},
    ],
    "AppSession": [{"name": "account", "type": "address"}, {"name": "deadline", "type": "uint256"}],
}

DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


def build(primary_type: str, domain: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """The eth_signTypedData_v4 document, every integer of its message a decimal string as the
    relay serves its own (JavaScript wallets sign such a document without losing precision)."""
    fields = TYPES[primary_type]
    return {
        "types": {"EIP712Domain": DOMAIN_FIELDS, primary_type: fields},
        "primaryType": primary_type,
        "domain": domain,
        "message": {
            f["name"]: str(message[f["name"]]) if f["type"].startswith(("uint", "int")) else message[f["name"]]
            for f in fields
        },
    }


def sign(private_key: bytes | str, typed: dict[str, Any]) -> str:
    """The 65-byte signature of a typed-data document, 0x-hex. Integer fields may be decimal
    strings: they are signed as the integers they spell."""
    signed = Account.sign_typed_data(private_key, full_message=typed)
    return "0x" + bytes(signed.signature).hex()
