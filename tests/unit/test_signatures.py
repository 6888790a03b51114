"""Signature security of every EIP-712 action the contracts verify: the domain (chain, contract,
name, version), nonces, deadlines, the signer, every signed field, the type, malleability, and
ERC-1271 contract wallets.

Each action is built by a factory that sets up what it needs (a completed payment to cancel, an
open withdrawal to close, ...) and returns the message the contract will rebuild from what the
relay submits; a test then signs something else and submits that message."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ape
import pytest
from ape import project
from eth_abi import encode
from eth_utils import keccak

from relay import typed_data
from tests.utils.checks import changes, reverts
from tests.utils.constants import CANCEL_OPEN, POINT, UNIT, ZERO_ADDRESS
from tests.utils.signing import deadline, domain_of, malleable, sign_in_domain

ACTIONS = [
    "NewPayment",
    "CancelPayment",
    "AddShop",
    "UpdateShop",
    "OpenWithdrawal",
    "CloseWithdrawal",
    "TransferShop",
    "AcceptShop",
    "SwitchToToken",
]
OTHER_ADDRESS = "0x000000000000000000000000000000000000dEaD"


def new_id() -> str:
    return "0x" + secrets.token_hex(32)


@dataclass
class Action:
    """One signed action, ready to submit: `message` is what the contract will rebuild and check."""

    primary_type: str
    contract: Any
    signer: Any  # the account whose signature the contract expects
    message: dict[str, Any]
    submit: Callable[[str], Any]  # submits `message` with the given signature, as the relay

    @property
    def signer_address(self) -> str:
        return self.signer.address

    def sign(self, by: Any = None, domain: dict[str, Any] | None = None, **changed: Any) -> str:
        """A signature of this message, optionally with other fields, by someone else or in another domain."""
        message = {**self.message, **changed}
        return sign_in_domain(by or self.signer, domain or domain_of(self.contract), self.primary_type, **message)

    def nonce(self) -> int:
        return self.contract.nonces(self.signer_address)


@ape.fixture(scope="module", autouse=True, chain_isolation=True)
def completed(user, give_points, settle, shop_id, completed_payment):
    """The paying user has points; the shared shop has 1,000 points to withdraw; two of the user's
    payments are completed, for the cancels the tests sign."""
    give_points(user, 1_000_000 * UNIT)
    settle(shop_id, 1_000 * UNIT)
    return [completed_payment(user), completed_payment(user)]


@pytest.fixture
def make(
    payment,
    shops,
    ledger,
    relay,
    user,
    other_user,
    shop_owner,
    shop_id,
    completed,
    completed_payment,
    open_withdrawal,
    close_withdrawal,
):
    """make(name, **fields) builds a fresh action `name`, with `fields` replacing the defaults."""
    to_cancel = list(completed)

    def new_payment(**fields):
        message = dict(
            paymentId=new_id(),
            purchaseId="P000001",
            amount=10 * UNIT,
            currency="krw",
            shopId=shop_id,
            account=user.address,
            loyaltyType=POINT,
            maxTotal=105 * UNIT // 10,
            nonce=payment.nonces(user),
            deadline=deadline(),
        )
        message.update(fields)
        keys = ("paymentId", "purchaseId", "amount", "currency", "shopId", "account", "loyaltyType", "maxTotal")
        data = tuple(message[k] for k in keys)
        return Action(
            "NewPayment",
            payment,
            user,
            message,
            lambda sig: payment.openNewPayment((*data, message["deadline"]), sig, sender=relay),
        )

    def cancel_payment(**fields):
        payment_id = to_cancel.pop(0) if to_cancel else completed_payment(user)
        message = dict(
            paymentId=payment_id,
            purchaseId="P000001",
            shopId=shop_id,
            account=shop_owner.address,
            nonce=payment.nonces(shop_owner),
            deadline=deadline(),
        )
        message.update(fields)
        return Action(
            "CancelPayment",
            payment,
            shop_owner,
            message,
            lambda sig: payment.openCancelPayment(
                payment_id, message["purchaseId"], message["deadline"], sig, sender=relay
            ),
        )

    def add_shop(**fields):
        message = dict(
            shopId=new_id(),
            name="New Shop",
            provideWaitTime=60,
            providePercent=200,
            account=shop_owner.address,
            nonce=shops.nonces(shop_owner),
            deadline=deadline(),
        )
        message.update(fields)
        args = tuple(message[k] for k in ("shopId", "name", "provideWaitTime", "providePercent", "account"))
        return Action(
            "AddShop",
            shops,
            shop_owner,
            message,
            lambda sig: shops.addShop(*args, message["deadline"], sig, sender=relay),
        )

    def update_shop(**fields):
        message = dict(
            shopId=shop_id,
            name="Renamed",
            provideWaitTime=60,
            providePercent=200,
            account=shop_owner.address,
            nonce=shops.nonces(shop_owner),
            deadline=deadline(),
        )
        message.update(fields)
        args = tuple(message[k] for k in ("name", "provideWaitTime", "providePercent"))
        return Action(
            "UpdateShop",
            shops,
            shop_owner,
            message,
            lambda sig: shops.updateShop(shop_id, *args, message["deadline"], sig, sender=relay),
        )

    def open_withdrawal_(**fields):
        if shops.shopOf(shop_id).withdrawOpen:
            close_withdrawal(shop_id)
        message = dict(
            shopId=shop_id,
            amount=10 * UNIT,
            account=shop_owner.address,
            nonce=shops.nonces(shop_owner),
            deadline=deadline(),
        )
        message.update(fields)
        return Action(
            "OpenWithdrawal",
            shops,
            shop_owner,
            message,
            lambda sig: shops.openWithdrawal(shop_id, message["amount"], message["deadline"], sig, sender=relay),
        )

    def close_withdrawal_(**fields):
        if not shops.shopOf(shop_id).withdrawOpen:
            open_withdrawal(shop_id, 10 * UNIT)
        message = dict(shopId=shop_id, account=shop_owner.address, nonce=shops.nonces(shop_owner), deadline=deadline())
        message.update(fields)
        return Action(
            "CloseWithdrawal",
            shops,
            shop_owner,
            message,
            lambda sig: shops.closeWithdrawal(shop_id, message["deadline"], sig, sender=relay),
        )

    def transfer_shop(**fields):
        message = dict(
            shopId=shop_id,
            newOwner=other_user.address,
            account=shop_owner.address,
            nonce=shops.nonces(shop_owner),
            deadline=deadline(),
        )
        message.update(fields)
        return Action(
            "TransferShop",
            shops,
            shop_owner,
            message,
            lambda sig: shops.transferShop(shop_id, message["newOwner"], message["deadline"], sig, sender=relay),
        )

    def accept_shop(**fields):
        # The current owner names the other of the two as the next owner, who then accepts.
        owner, successor = (
            (shop_owner, other_user)
            if shops.shopOf(shop_id).account == shop_owner.address
            else (other_user, shop_owner)
        )
        dl = deadline()
        sig = sign_in_domain(
            owner,
            domain_of(shops),
            "TransferShop",
            shopId=shop_id,
            newOwner=successor.address,
            account=owner.address,
            nonce=shops.nonces(owner),
            deadline=dl,
        )
        shops.transferShop(shop_id, successor, dl, sig, sender=relay)
        message = dict(shopId=shop_id, account=successor.address, nonce=shops.nonces(successor), deadline=deadline())
        message.update(fields)
        return Action(
            "AcceptShop",
            shops,
            successor,
            message,
            lambda sig: shops.acceptShop(shop_id, message["deadline"], sig, sender=relay),
        )

    def switch_to_token(**fields):
        message = dict(account=other_user.address, minToken=0, nonce=ledger.nonces(other_user), deadline=deadline())
        message.update(fields)
        return Action(
            "SwitchToToken",
            ledger,
            other_user,
            message,
            lambda sig: ledger.switchToTokenFor(
                other_user, message["minToken"], message["deadline"], sig, sender=relay
            ),
        )

    builders = {
        "NewPayment": new_payment,
        "CancelPayment": cancel_payment,
        "AddShop": add_shop,
        "UpdateShop": update_shop,
        "OpenWithdrawal": open_withdrawal_,
        "CloseWithdrawal": close_withdrawal_,
        "TransferShop": transfer_shop,
        "AcceptShop": accept_shop,
        "SwitchToToken": switch_to_token,
    }
    return lambda name, **fields: builders[name](**fields)


# ---------------------------------------------------------------- every action


@pytest.mark.parametrize("name", ACTIONS)
def test_signature__valid__accepted_and_nonce_used(make, name):
    action = make(name)
    nonce = action.nonce()
    action.submit(action.sign())
    assert action.nonce() == nonce + 1


@pytest.mark.parametrize("name", ACTIONS)
@pytest.mark.parametrize("part", ["chainId", "verifyingContract"])
def test_signature__for_another_domain__reverts(make, name, part, payment, ledger, shops, chain):
    action = make(name)
    domain = domain_of(action.contract)
    if part == "chainId":
        domain["chainId"] = chain.chain_id + 1
    else:
        # Another of the system's contracts: same chain, same signer, another verifier.
        domain["verifyingContract"] = (ledger if action.contract != ledger else payment).address
    with reverts(action.contract.InvalidSignature, signer=action.signer_address):
        action.submit(action.sign(domain=domain))


@pytest.mark.parametrize("part, value", [("name", "ShopRegistry"), ("version", "2")])
def test_signature__for_another_domain_name_or_version__reverts(make, part, value):
    action = make("NewPayment")
    domain = {**domain_of(action.contract), part: value}
    with reverts(action.contract.InvalidSignature, signer=action.signer_address):
        action.submit(action.sign(domain=domain))


@pytest.mark.parametrize("name", ACTIONS)
def test_signature__reused_old_nonce__reverts(make, name):
    first = make(name)
    first.submit(first.sign())
    again = make(name)
    again.message["nonce"] -= 1  # the nonce the first action used
    with reverts(again.contract.InvalidSignature, signer=again.signer_address):
        again.submit(again.sign())


@pytest.mark.parametrize("name", ACTIONS)
def test_signature__future_nonce__reverts(make, name):
    action = make(name)
    with reverts(action.contract.InvalidSignature, signer=action.signer_address):
        action.submit(action.sign(nonce=action.message["nonce"] + 1))


@pytest.mark.parametrize("name", ACTIONS)
def test_signature__after_deadline__reverts(make, name, chain):
    dl = chain.pending_timestamp + 60
    action = make(name, deadline=dl)
    chain.pending_timestamp = dl + 1
    with reverts(action.contract.ExpiredSignature, deadline=dl):
        action.submit(action.sign())


@pytest.mark.parametrize("name", ACTIONS)
def test_signature__at_deadline__accepted(make, name, chain):
    dl = chain.pending_timestamp + 60
    action = make(name, deadline=dl)
    nonce = action.nonce()
    chain.pending_timestamp = dl
    action.submit(action.sign())
    assert action.nonce() == nonce + 1


@pytest.mark.parametrize("name", ACTIONS)
def test_signature__by_wrong_signer__reverts(make, name, stranger):
    action = make(name)
    with reverts(action.contract.InvalidSignature, signer=action.signer_address):
        action.submit(action.sign(by=stranger))


ALTERED_FIELDS = [
    ("NewPayment", "paymentId", new_id()),
    ("NewPayment", "purchaseId", "P999999"),
    ("NewPayment", "amount", 11 * UNIT),
    ("NewPayment", "currency", "usd"),
    ("NewPayment", "shopId", new_id()),
    ("NewPayment", "account", OTHER_ADDRESS),
    ("NewPayment", "loyaltyType", 1),
    ("NewPayment", "maxTotal", 11 * UNIT),
    ("CancelPayment", "paymentId", new_id()),
    ("CancelPayment", "purchaseId", "P999999"),
    ("CancelPayment", "shopId", new_id()),
    ("CancelPayment", "account", OTHER_ADDRESS),
    ("AddShop", "shopId", new_id()),
    ("AddShop", "name", "Other Shop"),
    ("AddShop", "provideWaitTime", 61),
    ("AddShop", "providePercent", 10_000),
    ("AddShop", "account", OTHER_ADDRESS),
    ("UpdateShop", "shopId", new_id()),
    ("UpdateShop", "name", "Other Name"),
    ("UpdateShop", "provideWaitTime", 61),
    ("UpdateShop", "providePercent", 10_000),
    ("OpenWithdrawal", "shopId", new_id()),
    ("OpenWithdrawal", "amount", 11 * UNIT),
    ("OpenWithdrawal", "account", OTHER_ADDRESS),
    ("CloseWithdrawal", "shopId", new_id()),
    ("CloseWithdrawal", "account", OTHER_ADDRESS),
    ("TransferShop", "shopId", new_id()),
    ("TransferShop", "newOwner", OTHER_ADDRESS),
    ("TransferShop", "account", OTHER_ADDRESS),
    ("AcceptShop", "shopId", new_id()),
    ("AcceptShop", "account", OTHER_ADDRESS),
    ("SwitchToToken", "account", OTHER_ADDRESS),
    ("SwitchToToken", "minToken", 1),
]


@pytest.mark.parametrize("name, field, value", ALTERED_FIELDS, ids=[f"{n}-{f}" for n, f, _ in ALTERED_FIELDS])
def test_signature__of_other_field_value__reverts(make, name, field, value):
    # The signer signed `field = value`; the relay submits the action with the original value.
    action = make(name)
    assert action.message[field] != value
    with reverts(action.contract.InvalidSignature, signer=action.signer_address):
        action.submit(action.sign(**{field: value}))


@pytest.mark.parametrize("name", ["NewPayment", "CancelPayment", "OpenWithdrawal"])
def test_signature__malleable_high_s__reverts(make, name):
    action = make(name)
    with reverts(action.contract.InvalidSignature, signer=action.signer_address):
        action.submit(malleable(action.sign()))


@pytest.mark.parametrize("kind", ["empty", "64 bytes", "66 bytes", "zeros"])
def test_signature__malformed__reverts(make, kind):
    action = make("NewPayment")
    good = action.sign()
    signature = {"empty": "0x", "64 bytes": good[:130], "66 bytes": good + "00", "zeros": "0x" + "00" * 65}[kind]
    with reverts(action.contract.InvalidSignature, signer=action.signer_address):
        action.submit(signature)


def test_signature__replayed_after_use__reverts(make):
    action = make("UpdateShop")
    signature = action.sign()
    action.submit(signature)
    with reverts(action.contract.InvalidSignature, signer=action.signer_address):
        action.submit(signature)


# ---------------------------------------------------------------- types


@pytest.mark.parametrize(("approval", "deny"), [("NewPayment", "DenyPayment"), ("CancelPayment", "DenyCancel")])
def test_signature__deny_submitted_as_approval__reverts(make, approval, deny):
    action = make(approval)
    message = {k: action.message[k] for k in ("paymentId", "account", "deadline")}
    signature = sign_in_domain(action.signer, domain_of(action.contract), deny, **message)
    with reverts(action.contract.InvalidSignature, signer=action.signer_address):
        action.submit(signature)


def test_signature__CancelPayment_signed_by_the_payer__reverts(make, user):
    # Only the shop owner can approve a cancel; the customer's own signature is worthless here.
    action = make("CancelPayment")
    with reverts(action.contract.InvalidSignature, signer=action.signer_address):
        action.submit(action.sign(by=user, account=user.address))


def test_signature__NewPayment_for_zero_account__reverts(make, stranger):
    action = make("NewPayment", account=ZERO_ADDRESS, nonce=0)
    with reverts(action.contract.InvalidSignature, signer=ZERO_ADDRESS):
        action.submit(action.sign(by=stranger))


@pytest.mark.parametrize(
    "contract_name, constant, primary_type",
    [
        ("payment", "NEW_PAYMENT_TYPEHASH", "NewPayment"),
        ("payment", "CANCEL_PAYMENT_TYPEHASH", "CancelPayment"),
        ("shops", "ADD_SHOP_TYPEHASH", "AddShop"),
        ("shops", "UPDATE_SHOP_TYPEHASH", "UpdateShop"),
        ("shops", "OPEN_WITHDRAWAL_TYPEHASH", "OpenWithdrawal"),
        ("shops", "CLOSE_WITHDRAWAL_TYPEHASH", "CloseWithdrawal"),
        ("shops", "TRANSFER_SHOP_TYPEHASH", "TransferShop"),
        ("shops", "ACCEPT_SHOP_TYPEHASH", "AcceptShop"),
        ("ledger", "SWITCH_TO_TOKEN_TYPEHASH", "SwitchToToken"),
    ],
)
def test_typehash__matches_the_relays_typed_data(request, contract_name, constant, primary_type):
    contract = request.getfixturevalue(contract_name)
    fields = ",".join(f"{type_} {name}" for name, type_ in typed_data.TYPES[primary_type])
    assert bytes(getattr(contract, constant)()) == keccak(text=f"{primary_type}({fields})")


@pytest.mark.parametrize(
    "contract_name, domain_name",
    [("payment", "LoyaltyPayment"), ("shops", "ShopRegistry"), ("ledger", "Ledger"), ("token", "THE9 Loyalty Token")],
)
def test_DOMAIN_SEPARATOR__is_the_eip712_domain_of_the_contract(request, chain, contract_name, domain_name):
    contract = request.getfixturevalue(contract_name)
    _, name, version, chain_id, verifying_contract, _, _ = contract.eip712Domain()
    assert (name, version, chain_id, verifying_contract) == (domain_name, "1", chain.chain_id, contract.address)
    type_hash = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    expected = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [type_hash, keccak(text=name), keccak(text=version), chain_id, contract.address],
        )
    )
    assert bytes(contract.DOMAIN_SEPARATOR()) == expected


# ---------------------------------------------------------------- ERC-1271 contract wallets


@pytest.fixture
def wallet(admin, other_user):
    """A contract wallet that vouches for `other_user`'s signatures."""
    return admin.deploy(project.MockERC1271Wallet, other_user)


def wallet_payment(make, wallet, payment):
    """A NewPayment from the contract wallet's account (its own nonce)."""
    return make("NewPayment", account=wallet.address, nonce=payment.nonces(wallet))


def test_mock_wallet__vouches_only_for_its_owners_signatures(wallet, other_user, stranger):
    digest = keccak(text="any message")
    owner_sig = other_user.sign_raw_msghash(digest)
    stranger_sig = stranger.sign_raw_msghash(digest)
    assert wallet.owner() == other_user.address
    assert bytes(wallet.isValidSignature(digest, owner_sig.encode_rsv())) == bytes.fromhex("1626ba7e")
    assert bytes(wallet.isValidSignature(digest, stranger_sig.encode_rsv())) == bytes.fromhex("ffffffff")
    assert bytes(wallet.isValidSignature(digest, b"")) == bytes.fromhex("ffffffff")


def test_erc1271_wallet__owner_signature__pays(make, wallet, other_user, payment, give_points, state):
    give_points(wallet.address, 100 * UNIT)
    action = wallet_payment(make, wallet, payment)
    before = state(wallet=wallet)
    action.submit(action.sign(by=other_user))
    assert changes(before, state(wallet=wallet)) == {"wallet": -105 * UNIT // 10, "escrow.point": 105 * UNIT // 10}
    info = payment.paymentOf(action.message["paymentId"])
    assert (info.account, info.loyaltyType, info.paid) == (wallet.address, POINT, 10 * UNIT)
    assert payment.nonces(wallet) == 1


def test_erc1271_wallet__signature_it_does_not_vouch_for__reverts(make, wallet, stranger, payment, give_points):
    give_points(wallet.address, 100 * UNIT)
    action = wallet_payment(make, wallet, payment)
    with reverts(payment.InvalidSignature, signer=wallet.address):
        action.submit(action.sign(by=stranger))


def test_erc1271_wallet__owner_signature_of_other_amount__reverts(make, wallet, other_user, payment, give_points):
    give_points(wallet.address, 100 * UNIT)
    action = wallet_payment(make, wallet, payment)
    with reverts(payment.InvalidSignature, signer=wallet.address):
        action.submit(action.sign(by=other_user, amount=1))


def test_erc1271_wallet__owners_signature_for_own_account__does_not_pay_for_the_wallet(
    make, wallet, other_user, payment, give_points
):
    # A message the owner signed for its own account authorises nothing for the wallet.
    give_points(wallet.address, 100 * UNIT)
    action = wallet_payment(make, wallet, payment)
    with reverts(payment.InvalidSignature, signer=wallet.address):
        action.submit(action.sign(by=other_user, account=other_user.address))


def test_erc1271_wallet__as_shop_owner__registers_and_cancels(
    wallet, other_user, shops, payment, relay, user, completed_payment
):
    shop = new_id()
    dl = deadline()
    fields = dict(shopId=shop, name="Wallet Shop", provideWaitTime=0, providePercent=100, account=wallet.address)
    sig = sign_in_domain(other_user, domain_of(shops), "AddShop", **fields, nonce=0, deadline=dl)
    shops.addShop(shop, "Wallet Shop", 0, 100, wallet, dl, sig, sender=relay)
    assert shops.shopOf(shop).account == wallet.address

    payment_id = completed_payment(user, shop=shop)
    sig = sign_in_domain(
        other_user,
        domain_of(payment),
        "CancelPayment",
        paymentId=payment_id,
        purchaseId="P000001",
        shopId=shop,
        account=wallet.address,
        nonce=0,
        deadline=dl,
    )
    payment.openCancelPayment(payment_id, "P000001", dl, sig, sender=relay)
    assert payment.paymentOf(payment_id).status == CANCEL_OPEN
