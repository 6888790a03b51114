"""PROPERTIES.md P8 and P9, statically: the EIP-712 types the relay and the app sign are the ones
the contracts verify, each contract has its own domain, and the deny types (signed by the app,
verified only by the relay) are never verified on chain, so a deny can never count as an approval."""

from __future__ import annotations

import pytest
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from relay import typed_data
from scripts._system import domain_of

# Type -> (contract, type-hash constant) for every type a contract verifies.
VERIFIED_ON_CHAIN = {
    "NewPayment": ("payment", "NEW_PAYMENT_TYPEHASH"),
    "CancelPayment": ("payment", "CANCEL_PAYMENT_TYPEHASH"),
    "AddShop": ("shops", "ADD_SHOP_TYPEHASH"),
    "UpdateShop": ("shops", "UPDATE_SHOP_TYPEHASH"),
    "OpenWithdrawal": ("shops", "OPEN_WITHDRAWAL_TYPEHASH"),
    "CloseWithdrawal": ("shops", "CLOSE_WITHDRAWAL_TYPEHASH"),
    "SwitchToToken": ("ledger", "SWITCH_TO_TOKEN_TYPEHASH"),
}
VERIFIED_BY_RELAY_ONLY = ("DenyPayment", "DenyCancel", "TemporaryAccount")


def type_hash(primary_type: str) -> bytes:
    fields = ",".join(f"{type_} {name}" for name, type_ in typed_data.TYPES[primary_type])
    return keccak(text=f"{primary_type}({fields})")


@pytest.mark.parametrize("primary_type", sorted(VERIFIED_ON_CHAIN))
def test_type_hash__relay_type__matches_contract(payment, shops, ledger, primary_type):
    contract_name, constant = VERIFIED_ON_CHAIN[primary_type]
    contract = {"payment": payment, "shops": shops, "ledger": ledger}[contract_name]
    assert getattr(contract, constant)() == type_hash(primary_type)


def test_type_hash__payment_contract__verifies_only_approvals(payment):
    constants = {abi.name for abi in payment.contract_type.abi if abi.type == "function" and "TYPEHASH" in abi.name}
    assert constants == {"NEW_PAYMENT_TYPEHASH", "CANCEL_PAYMENT_TYPEHASH"}


def test_type_hash__deny_types__differ_from_every_verified_type():
    verified = {type_hash(t) for t in VERIFIED_ON_CHAIN}
    assert len(verified) == len(VERIFIED_ON_CHAIN)
    assert not verified & {type_hash(t) for t in VERIFIED_BY_RELAY_ONLY}


def test_domain__each_contract__has_its_own_separator(payment, shops, ledger, chain):
    separators = set()
    for contract in (payment, shops, ledger):
        domain = domain_of(contract)
        assert (domain["chainId"], domain["verifyingContract"]) == (chain.chain_id, contract.address)
        typed = typed_data.build(
            "SwitchToToken", domain, {"account": contract.address, "minToken": 0, "nonce": 0, "deadline": 0}
        )
        separator = encode_typed_data(full_message=typed).header
        assert contract.DOMAIN_SEPARATOR() == separator
        separators.add(separator)
    assert len(separators) == 3
