"""Deployment wiring (LoyaltyPayment refuses a ledger or registry that does not point back at it),
who gets which role (and the deploy script's refusals on a live network), role management and the
delayed admin transfer on every AccessControl contract, and the events' shape (names and indexed ids)."""

import re

import click
import pytest
from ape import project

from scripts._system import ADMIN_DELAY, DEFAULT_LIMITS, create_address, deploy_system
from scripts.deploy import resolve_roles
from tests.utils.checks import assert_event, reverts
from tests.utils.constants import CLOSED, UNIT

ROLE_CONTRACTS = ["rates", "shops", "ledger", "payment"]
ZERO_ROLE = "0x" + "00" * 32
DELAY = 86_400


def deploy_wiring(
    admin, token, rates, *, registry_ledger=None, registry_payment=None, ledger_payment=None, ledger_rates=None
):
    """Deploys a registry, a ledger and a payment controller in that order. Each points at the
    address the next ones will have unless told otherwise; returns the controller."""
    nonce = admin.nonce
    ledger_address = create_address(admin.address, nonce + 1)
    payment_address = create_address(admin.address, nonce + 2)
    shops = admin.deploy(
        project.ShopRegistry, admin, DELAY, [], registry_ledger or ledger_address, registry_payment or payment_address
    )
    ledger = admin.deploy(
        project.Ledger, admin, DELAY, [], token, ledger_rates or rates, shops, ledger_payment or payment_address
    )
    return admin.deploy(project.LoyaltyPayment, admin, DELAY, [], ledger, shops, rates)


# ---------------------------------------------------------------- wiring


def test_deploy_system__wires_contracts_and_grants_each_role_to_its_holder(admin, relay, accounts):
    second_relay = accounts[8]
    system = deploy_system(admin, [relay, second_relay], rates={"krw": 1, "the9": 50})
    assert system.shops.ledger() == system.ledger.address
    assert system.shops.paymentController() == system.payment.address
    assert system.ledger.paymentController() == system.payment.address
    assert (system.ledger.token(), system.ledger.shops()) == (system.token.address, system.shops.address)
    ledger = system.ledger
    for account in (relay, second_relay):
        assert system.payment.hasRole(system.payment.RELAY_ROLE(), account)
        assert system.shops.hasRole(system.shops.RELAY_ROLE(), account)
        assert ledger.hasRole(ledger.RELAY_ROLE(), account)
        assert ledger.hasRole(ledger.PROVIDER_ROLE(), account)
        assert not ledger.hasRole(ledger.GRANTER_ROLE(), account)
        assert not system.rates.hasRole(system.rates.RATE_SETTER_ROLE(), account)
        for contract in system.contracts().values():
            if contract is not system.token:
                assert not contract.hasRole(ZERO_ROLE, account)
    assert ledger.hasRole(ledger.GRANTER_ROLE(), admin)
    assert system.rates.hasRole(system.rates.RATE_SETTER_ROLE(), admin)
    for name in ROLE_CONTRACTS:
        contract = getattr(system, name)
        assert (contract.defaultAdmin(), contract.defaultAdminDelay()) == (admin.address, ADMIN_DELAY)
    assert system.rates.rateOf("the9") == 50 * UNIT
    assert ledger.rewardCap() == (DEFAULT_LIMITS.reward_cap, DEFAULT_LIMITS.reward_cap)
    assert ledger.grantCap() == (DEFAULT_LIMITS.grant_cap, DEFAULT_LIMITS.grant_cap)
    assert system.shops.defaultCreditLimit() == DEFAULT_LIMITS.credit_limit


def test_deploy_system__admin_other_than_deployer__deployer_keeps_no_role(admin, relay, accounts):
    owner_of_everything, rate_setter = accounts[8], accounts[7]
    system = deploy_system(admin, [relay], admin=owner_of_everything, rate_setter=rate_setter)
    for name in ROLE_CONTRACTS:
        contract = getattr(system, name)
        assert contract.defaultAdmin() == owner_of_everything.address
        assert not contract.hasRole(ZERO_ROLE, admin)
    assert system.rates.hasRole(system.rates.RATE_SETTER_ROLE(), rate_setter)
    assert not system.ledger.hasRole(system.ledger.GRANTER_ROLE(), admin)
    # What only the admin and the rate setter may set is left to them: nothing can be created yet.
    assert system.ledger.rewardCap() == (0, 0)
    assert system.ledger.grantCap() == (0, 0)
    assert system.rates.rateUpdatedAt("krw") == 0


DEPLOYER, ADMIN, RELAY = (f"0x{i:040x}" for i in (0xD, 0xA, 0xB))


def test_resolve_roles__local__defaults_to_the_deployer():
    deployer = "0x" + "0d" * 20
    assert resolve_roles(True, deployer, None, [], None) == (deployer, [deployer], deployer)


@pytest.mark.parametrize("given_admin, given_relays", [(None, [RELAY]), (ADMIN, []), (None, [])])
def test_resolve_roles__live_without_explicit_admin_and_relay__refuses(given_admin, given_relays):
    with pytest.raises(click.UsageError, match="explicit --admin and --relay"):
        resolve_roles(False, DEPLOYER, given_admin, given_relays, None)


def test_resolve_roles__live_admin_also_relay__refuses():
    with pytest.raises(click.UsageError, match="must not be a relay"):
        resolve_roles(False, DEPLOYER, ADMIN, [RELAY, ADMIN.upper().replace("0X", "0x")], None)


def test_resolve_roles__live_distinct__rate_setter_defaults_to_admin():
    admin, relays, rate_setter = resolve_roles(False, DEPLOYER, ADMIN, [RELAY], None)
    assert (admin.lower(), [r.lower() for r in relays], rate_setter.lower()) == (ADMIN, [RELAY], ADMIN)


def test_resolve_roles__not_an_address__refuses():
    with pytest.raises(click.BadParameter):
        resolve_roles(False, DEPLOYER, "admin", [RELAY], None)


def test_constructor__correct_wiring__deploys(admin, token, rates):
    payment = deploy_wiring(admin, token, rates)
    assert payment.shops() != payment.ledger()
    assert project.ShopRegistry.at(payment.shops()).paymentController() == payment.address


def test_constructor__existing_ledger_and_registry__reverts(payment, admin, ledger, shops, rates):
    # They trust the deployed controller; a second one would be ignored by both.
    with reverts(payment.MisconfiguredDeployment):
        admin.deploy(project.LoyaltyPayment, admin, DELAY, [], ledger, shops, rates)


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
    rewards = admin.deploy(project.ShopRegistry, admin, DELAY, [], ledger_address, payment_address)
    payments = admin.deploy(project.ShopRegistry, admin, DELAY, [], ledger_address, payment_address)
    ledger = admin.deploy(project.Ledger, admin, DELAY, [], token, rates, rewards, payment_address)
    with reverts(payment.MisconfiguredDeployment):
        admin.deploy(project.LoyaltyPayment, admin, DELAY, [], ledger, payments, rates)


def test_constructor__ledger_converts_with_another_rate_table__reverts(payment, admin, token, rates):
    # One source of truth for payment math: the ledger's conversions must use the controller's rates.
    other_rates = admin.deploy(project.CurrencyRate, admin, DELAY, admin, "the9")
    with reverts(payment.MisconfiguredDeployment):
        deploy_wiring(admin, token, rates, ledger_rates=other_rates)


# ---------------------------------------------------------------- roles


def operational_role(contract):
    """A role other than the admin's that `contract` defines."""
    name = "RATE_SETTER_ROLE" if hasattr(contract, "RATE_SETTER_ROLE") else "RELAY_ROLE"
    return getattr(contract, name)()


@pytest.mark.parametrize("name", ROLE_CONTRACTS)
def test_grantRole_and_revokeRole__by_admin(request, name, admin, stranger):
    contract = request.getfixturevalue(name)
    role = operational_role(contract)
    receipt = contract.grantRole(role, stranger, sender=admin)
    assert contract.hasRole(role, stranger)
    assert_event(receipt, contract.RoleGranted, role=role, account=stranger, sender=admin)
    receipt = contract.revokeRole(role, stranger, sender=admin)
    assert not contract.hasRole(role, stranger)
    assert_event(receipt, contract.RoleRevoked, role=role, account=stranger, sender=admin)


@pytest.mark.parametrize("name", ROLE_CONTRACTS)
@pytest.mark.parametrize("call", ["grantRole", "revokeRole"])
def test_admin_role__granted_or_revoked_in_one_step__reverts(request, name, call, admin, stranger):
    # The admin role moves only through the delayed two-step transfer.
    contract = request.getfixturevalue(name)
    with reverts(contract.AccessControlEnforcedDefaultAdminRules):
        getattr(contract, call)(ZERO_ROLE, stranger if call == "grantRole" else admin, sender=admin)


@pytest.mark.parametrize("name", ROLE_CONTRACTS)
def test_admin_transfer__accepted_only_after_the_delay(request, name, admin, stranger, chain):
    contract = request.getfixturevalue(name)
    contract.beginDefaultAdminTransfer(stranger, sender=admin)
    pending, schedule = contract.pendingDefaultAdmin()
    assert pending == stranger.address
    assert schedule == chain.blocks.head.timestamp + ADMIN_DELAY
    chain.pending_timestamp = schedule
    with reverts(contract.AccessControlEnforcedDefaultAdminDelay, schedule=schedule):
        contract.acceptDefaultAdminTransfer(sender=stranger)
    chain.pending_timestamp = schedule + 1
    contract.acceptDefaultAdminTransfer(sender=stranger)
    assert contract.defaultAdmin() == stranger.address
    assert not contract.hasRole(ZERO_ROLE, admin)


@pytest.mark.parametrize("name", ROLE_CONTRACTS)
def test_admin_transfer__begun_by_another_account__reverts(request, name, relay, stranger):
    contract = request.getfixturevalue(name)
    with reverts(contract.AccessControlUnauthorizedAccount, account=relay, neededRole=ZERO_ROLE):
        contract.beginDefaultAdminTransfer(stranger, sender=relay)


@pytest.mark.parametrize("name", ROLE_CONTRACTS)
def test_grantRole__not_admin__reverts(request, name, relay, stranger):
    contract = request.getfixturevalue(name)
    with reverts(contract.AccessControlUnauthorizedAccount, account=relay, neededRole=ZERO_ROLE):
        contract.grantRole(operational_role(contract), stranger, sender=relay)


@pytest.mark.parametrize("name", ROLE_CONTRACTS)
def test_revokeRole__not_admin__reverts(request, name, relay, admin):
    contract = request.getfixturevalue(name)
    with reverts(contract.AccessControlUnauthorizedAccount, account=relay, neededRole=ZERO_ROLE):
        contract.revokeRole(operational_role(contract), admin, sender=relay)


@pytest.mark.parametrize("name", ROLE_CONTRACTS)
def test_renounceRole__for_another_account__reverts(request, name, admin, stranger):
    contract = request.getfixturevalue(name)
    role = operational_role(contract)
    contract.grantRole(role, stranger, sender=admin)
    with reverts(contract.AccessControlBadConfirmation):
        contract.renounceRole(role, stranger, sender=admin)
    receipt = contract.renounceRole(role, stranger, sender=stranger)
    assert not contract.hasRole(role, stranger)
    assert_event(receipt, contract.RoleRevoked, role=role, account=stranger, sender=stranger)


@pytest.mark.parametrize("name", ROLE_CONTRACTS)
def test_roles__admin_role_administers_all_and_interfaces_are_reported(request, name):
    contract = request.getfixturevalue(name)
    roles = [
        getattr(contract, role)()
        for role in ("DEFAULT_ADMIN_ROLE", "RELAY_ROLE", "PROVIDER_ROLE", "GRANTER_ROLE", "RATE_SETTER_ROLE")
        if hasattr(contract, role)
    ]
    assert len(roles) >= 2
    assert all(contract.getRoleAdmin(role) == bytes(32) for role in roles)
    assert contract.supportsInterface("0x7965db0b")  # IAccessControl
    assert contract.supportsInterface("0x31498786")  # IAccessControlDefaultAdminRules
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
        "CreditLimitSet": ["shopId"],
        "DefaultCreditLimitSet": [],
        "ShopTotalsCorrected": ["shopId"],
        "ShopTransferStarted": ["shopId", "account", "newOwner"],
        "ShopTransferred": ["shopId", "previousOwner", "newOwner"],
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
        "RefundConverted": ["account"],
        "RewardCapSet": [],
        "GrantCapSet": [],
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
OPENZEPPELIN_EVENTS = {
    "RoleGranted",
    "RoleRevoked",
    "RoleAdminChanged",
    "EIP712DomainChanged",
    "DefaultAdminTransferScheduled",
    "DefaultAdminTransferCanceled",
    "DefaultAdminDelayChangeScheduled",
    "DefaultAdminDelayChangeCanceled",
}


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
