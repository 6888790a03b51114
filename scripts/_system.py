"""Deploys and wires the loyalty contracts. Used by `ape run deploy`, the demo fixture and the tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rlp
from ape import chain, project
from ape.api import AccountAPI
from ape.contracts import ContractInstance
from eth_utils import keccak, to_checksum_address

from relay import typed_data

UNIT = 10**18

# Points (= KRW) per unit of each currency (DESIGN.md §8). The point's own rate is fixed at 1.
DEFAULT_RATES = {"krw": 1, "usd": 1_350, "the9": 100}
TOKEN_NAME = "THE9 Loyalty Token"
TOKEN_SYMBOL = "THE9"
TOKEN_CURRENCY = "the9"
TOKEN_SUPPLY = 1_000_000_000 * UNIT

DEPLOYMENTS = Path(__file__).resolve().parent.parent / "deployments"

# How long a transfer of the default admin role waits before the new admin can accept it.
ADMIN_DELAY = 2 * 24 * 3600


@dataclass(frozen=True)
class Limits:
    """The on-chain bounds a deployment starts with, in points (the admin can change them)."""

    reward_cap: int = 10_000_000 * UNIT  # purchase rewards per day
    grant_cap: int = 10_000_000 * UNIT  # grants per day
    credit_limit: int = 1_000_000 * UNIT  # each new shop's credit limit


DEFAULT_LIMITS = Limits()


@dataclass
class System:
    token: ContractInstance
    rates: ContractInstance
    shops: ContractInstance
    ledger: ContractInstance
    payment: ContractInstance

    def contracts(self) -> dict[str, ContractInstance]:
        return {
            "LoyaltyToken": self.token,
            "CurrencyRate": self.rates,
            "ShopRegistry": self.shops,
            "Ledger": self.ledger,
            "LoyaltyPayment": self.payment,
        }


def deploy_system(
    deployer: AccountAPI,
    relays: list[AccountAPI | str],
    *,
    admin: AccountAPI | str | None = None,
    rate_setter: AccountAPI | str | None = None,
    admin_delay: int = ADMIN_DELAY,
    token_holder: AccountAPI | str | None = None,
    rates: dict[str, int] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    **txn: Any,
) -> System:
    """Deploys and wires every contract. `admin` (default: the deployer) gets the default admin and
    granter roles, `rate_setter` (default: the admin) sets rates, `relays` submit signed actions and
    rewards. Whatever the deployer may do itself it does: the initial rates (as rate setter), the
    caps and the default credit limit (as admin); otherwise those are left to their holders."""
    admin = admin or deployer
    rate_setter = rate_setter or admin
    holder = token_holder or deployer
    relay_list = [str(r) if isinstance(r, str) else r.address for r in relays]
    token = deployer.deploy(project.LoyaltyToken, TOKEN_NAME, TOKEN_SYMBOL, holder, TOKEN_SUPPLY, **txn)
    rate_table = deployer.deploy(project.CurrencyRate, admin, admin_delay, rate_setter, TOKEN_CURRENCY, **txn)

    # The registry and the ledger trust the payment controller (and the registry the ledger) by
    # immutable address, so those addresses are computed before the three are deployed in order.
    nonce = deployer.nonce
    ledger_address = create_address(deployer.address, nonce + 1)
    payment_address = create_address(deployer.address, nonce + 2)
    shops = deployer.deploy(
        project.ShopRegistry, admin, admin_delay, relay_list, ledger_address, payment_address, **txn
    )
    ledger = deployer.deploy(
        project.Ledger, admin, admin_delay, relay_list, token, rate_table, shops, payment_address, **txn
    )
    payment = deployer.deploy(project.LoyaltyPayment, admin, admin_delay, relay_list, ledger, shops, rate_table, **txn)
    assert (ledger.address, payment.address) == (ledger_address, payment_address)
    system = System(token, rate_table, shops, ledger, payment)

    if _same(rate_setter, deployer):
        table = rates or DEFAULT_RATES
        rate_table.setRates(list(table), [value * UNIT for value in table.values()], sender=deployer, **txn)
    if _same(admin, deployer):
        set_limits(system, deployer, limits, **txn)
    return system


def set_limits(system: System, admin: AccountAPI, limits: Limits, **txn: Any) -> None:
    system.ledger.setRewardCap(limits.reward_cap, sender=admin, **txn)
    system.ledger.setGrantCap(limits.grant_cap, sender=admin, **txn)
    system.shops.setDefaultCreditLimit(limits.credit_limit, sender=admin, **txn)


def _same(a: AccountAPI | str, b: AccountAPI | str) -> bool:
    def address(x: AccountAPI | str) -> str:
        return (x if isinstance(x, str) else x.address).lower()

    return address(a) == address(b)


def create_address(sender: str, nonce: int) -> str:
    """The address of the contract `sender` creates with its transaction number `nonce`."""
    return to_checksum_address(keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:])


def grant_relay(system: System, admin: AccountAPI, relay: AccountAPI | str, **txn: Any) -> None:
    """Gives `relay` every role a relay signer needs (`admin` must hold the default admin role)."""
    system.payment.grantRole(system.payment.RELAY_ROLE(), relay, sender=admin, **txn)
    system.shops.grantRole(system.shops.RELAY_ROLE(), relay, sender=admin, **txn)
    system.ledger.grantRole(system.ledger.RELAY_ROLE(), relay, sender=admin, **txn)
    system.ledger.grantRole(system.ledger.PROVIDER_ROLE(), relay, sender=admin, **txn)


def role_holders(system: System, admin: str, rate_setter: str, relays: list[str]) -> dict[str, Any]:
    return {
        "admin": admin,
        "adminDelay": int(system.payment.defaultAdminDelay()),
        "granter": admin,
        "rateSetter": rate_setter,
        "relays": relays,
        "wiring": {
            "ShopRegistry.ledger": str(system.shops.ledger()),
            "ShopRegistry.paymentController": str(system.shops.paymentController()),
            "Ledger.paymentController": str(system.ledger.paymentController()),
        },
    }


def write_deployment(
    name: str,
    system: System,
    admin: str,
    rate_setter: str,
    relays: list[str],
    start_block: int,
    path: str | Path | None = None,
) -> Path:
    """Writes deployments/<name>.json (or `path`): addresses, chain id, roles, and the block the
    deployment started at (where the relay's event indexer begins)."""
    data: dict[str, Any] = {
        "chainId": chain.chain_id,
        "network": name,
        "startBlock": start_block,
        "contracts": {key: str(c.address) for key, c in system.contracts().items()},
        "roles": role_holders(system, admin, rate_setter, relays),
    }
    path = Path(path) if path else DEPLOYMENTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def domain_of(contract: ContractInstance) -> dict[str, Any]:
    """The EIP-712 domain a contract reports (EIP-5267)."""
    _, name, _version, chain_id, verifying_contract, _, _ = contract.eip712Domain()
    return typed_data.domain(name, chain_id, str(verifying_contract))


def sign_action(signer: AccountAPI, contract: ContractInstance, primary_type: str, **message: Any) -> str:
    """`signer`'s EIP-712 signature of `primary_type` in `contract`'s domain (test and demo keys only)."""
    typed = typed_data.build(primary_type, domain_of(contract), message)
    return typed_data.sign(signer.private_key, typed)


def sign_next(signer: AccountAPI, contract: ContractInstance, primary_type: str, deadline: int, **message: Any) -> str:
    """`signer`'s signature of an action on its own behalf (`account` is the signer) with its next
    nonce in `contract`, valid until `deadline`."""
    nonce = contract.nonces(signer)
    return sign_action(
        signer, contract, primary_type, **message, account=signer.address, nonce=nonce, deadline=deadline
    )
