"""Deployment wiring (LoyaltyPayment refuses a ledger or registry that does not point back at it),
role management on every AccessControl contract, and the events' shape (names and indexed ids)."""

import re

import pytest
from ape import project

from scripts._system import create_address, deploy_system
from tests.utils.checks import assert_event, reverts
from tests.utils.constants import CLOSED, UNIT

ROLE_CONTRACTS = ["rates", "shops", "ledger", "payment"]
ZERO_ROLE = "0x" + "00" * 32


def deploy_wiring(
    admin, token, rates, *, registry_ledger=None, registry_payment=None, ledger_payment=None, ledger_rates=None
):
    """Deploys a registry, a ledger and a payment controller in that order. Each points at the
    address the next ones will have unless told otherwise; returns the controller."""
    nonce = admin.nonce
    ledger_address = create_address(admin.address, nonce + 1)
    payment_address = create_address(admin.address, nonce + 2)
    shops = admin.deploy(
        project.ShopRegistry, admin, registry_ledger or ledger_address, registry_payment or payment_address
    )
    ledger = admin.deploy(project.Ledger, admin, token, ledger_rates or rates, shops, ledger_payment or payment_address)
    return admin.deploy(project.LoyaltyPayment, admin, ledger, shops, rates)


# ---------------------------------------------------------------- wiring


def test_deploy_system__wires_contracts_and_grants_relay_roles(admin, relay, accounts):
    second_relay = accounts[8]
    system = deploy_system(admin, [relay, second_relay], rates={"krw": 1, "the9": 50})
    assert system.shops.ledger() == system.ledger.address
    assert system.shops.paymentController() == system.payment.address
    assert system.ledger.paymentController() == system.payment.address
    assert (system.ledger.token(), system.ledger.shops()) == (system.token.address, system.shops.address)
    for account in (relay, second_relay):
        assert system.payment.hasRole(system.payment.RELAY_ROLE(), account)
        assert system.shops.hasRole(system.shops.RELAY_ROLE(), account)
        assert system.ledger.hasRole(system.ledger.RELAY_ROLE(), account)
        assert system.ledger.hasRole(system.ledger.PROVIDER_ROLE(), account)
    assert system.rates.rateOf("the9") == 50 * UNIT


def test_constructor__correct_wiring__deploys(admin, token, rates):
    payment = deploy_wiring(admin, token, rates)
    assert payment.shops() != payment.ledger()
    assert project.ShopRegistry.at(payment.shops()).paymentController() == payment.address


def test_constructor__existing_ledger_and_registry__reverts(payment, admin, ledger, shops, rates):
    # They trust the deployed controller; a second one would be ignored by both.
    with reverts(payment.MisconfiguredDeployment):
        admin.deploy(project.LoyaltyPayment, admin, ledger, shops, rates)


def test_constructor__registry_trusts_another_controller__reverts(payment, admin, token, rates, stranger):
    with reverts(payment.MisconfiguredDeployment):
        deploy_wiring(admin, token, rates, registry_payment=stranger.address)


def test_constructor__ledger_trusts_another_controller__reverts(payment, admin, token, rates, stranger):
    with reverts(payment.MisconfiguredDeployment):
        deploy_wiring(admin, token, rates, ledger_payment=stranger.address)


def test_constructor__registry_trusts_another_ledger__reverts(payment, admin, token, rates, stranger):
    with reverts(payment.MisconfiguredDeployment):
        deploy_wiring(admin, token, rates, registry_ledger=stranger.address)


def test_constructor__ledger_records_rewards_in_another_registry__reverts(payment, admin, token, rates):
    # Two registries that both trust the ledger and the controller: the ledger would record purchase
    # rewards in one and the controller payments in the other, so no shop's settled total is right.
    nonce = admin.nonce
    ledger_address, payment_address = (create_address(admin.address, nonce + i) for i in (2, 3))
    rewards = admin.deploy(project.ShopRegistry, admin, ledger_address, payment_address)
    payments = admin.deploy(project.ShopRegistry, admin, ledger_address, payment_address)
    ledger = admin.deploy(project.Ledger, admin, token, rates, rewards, payment_address)
    with reverts(payment.MisconfiguredDeployment):
        admin.deploy(project.LoyaltyPayment, admin, ledger, payments, rates)


def test_constructor__ledger_converts_with_another_rate_table__reverts(payment, admin, token, rates):
    # One source of truth for payment math: the ledger's conversions must use the controller's rates.
    other_rates = admin.deploy(project.CurrencyRate, admin, "the9")
    with reverts(payment.MisconfiguredDeployment):
        deploy_wiring(admin, token, rates, ledger_rates=other_rates)


# ---------------------------------------------------------------- roles


@pytest.mark.parametrize("name", ROLE_CONTRACTS)
def test_grantRole_and_revokeRole__by_admin(request, name, admin, stranger):
    contract = request.getfixturevalue(name)
    role = contract.DEFAULT_ADMIN_ROLE()
    receipt = contract.grantRole(role, stranger, sender=admin)
    assert contract.hasRole(role, stranger)
    assert_event(receipt, contract.RoleGranted, role=role, account=stranger, sender=admin)
    receipt = contract.revokeRole(role, stranger, sender=admin)
    assert not contract.hasRole(role, stranger)
    assert_event(receipt, contract.RoleRevoked, role=role, account=stranger, sender=admin)


@pytest.mark.parametrize("name", ROLE_CONTRACTS)
def test_grantRole__not_admin__reverts(request, name, relay, stranger):
    contract = request.getfixturevalue(name)
    with reverts(contract.AccessControlUnauthorizedAccount, account=relay, neededRole=ZERO_ROLE):
        contract.grantRole(contract.DEFAULT_ADMIN_ROLE(), stranger, sender=relay)


@pytest.mark.parametrize("name", ROLE_CONTRACTS)
def test_revokeRole__not_admin__reverts(request, name, relay, admin):
    contract = request.getfixturevalue(name)
    with reverts(contract.AccessControlUnauthorizedAccount, account=relay, neededRole=ZERO_ROLE):
        contract.revokeRole(contract.DEFAULT_ADMIN_ROLE(), admin, sender=relay)


@pytest.mark.parametrize("name", ROLE_CONTRACTS)
def test_renounceRole__for_another_account__reverts(request, name, admin, relay):
    contract = request.getfixturevalue(name)
    with reverts(contract.AccessControlBadConfirmation):
        contract.renounceRole(contract.DEFAULT_ADMIN_ROLE(), admin, sender=relay)
    receipt = contract.renounceRole(contract.DEFAULT_ADMIN_ROLE(), admin, sender=admin)
    assert not contract.hasRole(contract.DEFAULT_ADMIN_ROLE(), admin)
    assert_event(receipt, contract.RoleRevoked, role=ZERO_ROLE, account=admin, sender=admin)


@pytest.mark.parametrize("name", ROLE_CONTRACTS)
def test_roles__admin_role_administers_all_and_interfaces_are_reported(request, name):
    contract = request.getfixturevalue(name)
    roles = [
        getattr(contract, role)()
        for role in ("DEFAULT_ADMIN_ROLE", "RELAY_ROLE", "PROVIDER_ROLE", "RATE_SETTER_ROLE")
        if hasattr(contract, role)
    ]
    assert len(roles) >= 2
    assert all(contract.getRoleAdmin(role) == bytes(32) for role in roles)
    assert contract.supportsInterface("0x7965db0b")  # IAccessControl
    assert contract.supportsInterface("0x01ffc9a7")  # IERC165
    assert not contract.supportsInterface("0xffffffff")


def test_revoked_relay__can_no_longer_open_payments(payment, admin, relay, user, give_points, open_payment):
    give_points(user, 100 * UNIT)
    payment.revokeRole(payment.RELAY_ROLE(), relay, sender=admin)
    with reverts(payment.AccessControlUnauthorizedAccount, account=relay, neededRole=payment.RELAY_ROLE()):
        open_payment(user)


def test_granted_relay__can_close_payments(payment, admin, stranger, user, give_points, open_payment):
    give_points(user, 100 * UNIT)
    payment_id = open_payment(user)
    payment.grantRole(payment.RELAY_ROLE(), stranger, sender=admin)
    payment.closeNewPayment(payment_id, True, sender=stranger)
    assert payment.paymentOf(payment_id).status == CLOSED


# ---------------------------------------------------------------- events

# Events the system declares, with their indexed parameters (ids and accounts, for filtering).
EVENTS = {
    "rates": {"RateSet": ["currencyHash"]},
    "shops": {
        "ShopAdded": ["shopId", "account"],
        "ShopUpdated": ["shopId"],
        "ProvisionRecorded": ["shopId"],
        "WithdrawalOpened": ["shopId", "account"],
        "WithdrawalClosed": ["shopId", "account"],
    },
    "ledger": {
        "LoyaltyProvided": ["account", "shopId"],
        "LoyaltyGranted": ["account"],
        "SwitchedToToken": ["account"],
        "Deposited": ["account", "from"],
        "Withdrawn": ["account"],
        "ReserveFunded": ["from"],
        "ReserveWithdrawn": ["to"],
        "FeesWithdrawn": ["to"],
    },
    "payment": {
        "PaymentOpened": ["paymentId", "shopId", "account"],
        "PaymentClosed": ["paymentId"],
        "PaymentRefunded": ["paymentId"],
        "CancelOpened": ["paymentId", "account"],
        "PaymentCancelled": ["paymentId"],
        "CancelReverted": ["paymentId"],
        "FeeRateSet": [],
        "CancelPeriodSet": [],
        "EscrowTimeoutSet": [],
    },
}
OPENZEPPELIN_EVENTS = {"RoleGranted", "RoleRevoked", "RoleAdminChanged", "EIP712DomainChanged"}


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_events__past_tense_with_indexed_ids(request, name):
    contract = request.getfixturevalue(name)
    declared = {
        event.name: [ipt.name for ipt in event.inputs if ipt.indexed]
        for event in contract.contract_type.events
        if event.name not in OPENZEPPELIN_EVENTS
    }
    assert declared == EVENTS[name]
    # Past tense: regular verbs, "Set", and "Withdrawn".
    assert all(re.search(r"(ed|Set|Withdrawn)([A-Z]|$)", event) for event in declared)
