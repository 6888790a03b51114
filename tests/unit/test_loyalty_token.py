"""LoyaltyToken: a plain ERC-20 with EIP-2612 permits and a fixed supply minted once."""

import ape
from ape import project

from scripts._system import TOKEN_NAME, TOKEN_SUPPLY, TOKEN_SYMBOL
from tests.utils.checks import assert_event, reverts
from tests.utils.constants import UNIT, ZERO_ADDRESS
from tests.utils.signing import deadline, domain_of, malleable, sign_typed

PERMIT_FIELDS = [
    ("owner", "address"),
    ("spender", "address"),
    ("value", "uint256"),
    ("nonce", "uint256"),
    ("deadline", "uint256"),
]


@ape.fixture(scope="module", autouse=True, chain_isolation=True)
def holder(user, token, admin):
    token.transfer(user, 1_000 * UNIT, sender=admin)
    return user


def sign_permit(token, signer, owner, spender, value, dl, nonce=None):
    message = {
        "owner": owner.address,
        "spender": spender.address,
        "value": value,
        "nonce": token.nonces(owner) if nonce is None else nonce,
        "deadline": dl,
    }
    return sign_typed(signer, domain_of(token), "Permit", PERMIT_FIELDS, message)


def test_constructor__mints_fixed_supply_to_holder(admin, user):
    token = admin.deploy(project.LoyaltyToken, "Name", "SYM", user, 123 * UNIT)
    assert (token.name(), token.symbol(), token.decimals()) == ("Name", "SYM", 18)
    assert token.totalSupply() == 123 * UNIT
    assert token.balanceOf(user) == 123 * UNIT
    assert token.balanceOf(admin) == 0


def test_deployed_token__is_THE9_with_the_whole_supply_accounted_for(token, ledger, admin, holder):
    assert (token.name(), token.symbol(), token.decimals()) == (TOKEN_NAME, TOKEN_SYMBOL, 18)
    assert token.totalSupply() == TOKEN_SUPPLY
    assert token.balanceOf(admin) + token.balanceOf(ledger) + token.balanceOf(holder) == TOKEN_SUPPLY
    assert token.balanceOf(ledger) == ledger.reserve()


def test_transfer__moves_tokens(token, holder, other_user):
    receipt = token.transfer(other_user, 10 * UNIT, sender=holder)
    assert token.balanceOf(holder) == 990 * UNIT
    assert token.balanceOf(other_user) == 10 * UNIT
    assert_event(receipt, token.Transfer, **{"from": holder, "to": other_user, "value": 10 * UNIT})


def test_transfer__more_than_balance__reverts(token, holder, other_user):
    with reverts(token.ERC20InsufficientBalance, sender=holder, balance=1_000 * UNIT, needed=1_000 * UNIT + 1):
        token.transfer(other_user, 1_000 * UNIT + 1, sender=holder)


def test_transfer__to_zero_address__reverts(token, holder):
    with reverts(token.ERC20InvalidReceiver, receiver=ZERO_ADDRESS):
        token.transfer(ZERO_ADDRESS, 1, sender=holder)


def test_approve__sets_allowance(token, holder, stranger):
    receipt = token.approve(stranger, 5 * UNIT, sender=holder)
    assert token.allowance(holder, stranger) == 5 * UNIT
    assert_event(receipt, token.Approval, owner=holder, spender=stranger, value=5 * UNIT)


def test_approve__zero_spender__reverts(token, holder):
    with reverts(token.ERC20InvalidSpender, spender=ZERO_ADDRESS):
        token.approve(ZERO_ADDRESS, 1, sender=holder)


def test_transferFrom__spends_allowance(token, holder, stranger, other_user):
    token.approve(stranger, 5 * UNIT, sender=holder)
    token.transferFrom(holder, other_user, 2 * UNIT, sender=stranger)
    assert token.allowance(holder, stranger) == 3 * UNIT
    assert token.balanceOf(other_user) == 2 * UNIT
    assert token.balanceOf(holder) == 998 * UNIT


def test_transferFrom__over_allowance__reverts(token, holder, stranger, other_user):
    token.approve(stranger, 5 * UNIT, sender=holder)
    with reverts(token.ERC20InsufficientAllowance, spender=stranger, allowance=5 * UNIT, needed=5 * UNIT + 1):
        token.transferFrom(holder, other_user, 5 * UNIT + 1, sender=stranger)


def test_permit__sets_allowance_and_uses_nonce(token, holder, stranger):
    dl = deadline()
    sig = sign_permit(token, holder, holder, stranger, 7 * UNIT, dl)
    v, r, s = int(sig[-2:], 16), "0x" + sig[2:66], "0x" + sig[66:130]
    receipt = token.permit(holder, stranger, 7 * UNIT, dl, v, r, s, sender=stranger)
    assert token.allowance(holder, stranger) == 7 * UNIT
    assert token.nonces(holder) == 1
    assert_event(receipt, token.Approval, owner=holder, spender=stranger, value=7 * UNIT)


def test_permit__after_deadline__reverts(token, holder, stranger, chain):
    dl = chain.pending_timestamp - 1
    sig = sign_permit(token, holder, holder, stranger, 7 * UNIT, dl)
    with reverts(token.ERC2612ExpiredSignature, deadline=dl):
        token.permit(holder, stranger, 7 * UNIT, dl, int(sig[-2:], 16), sig[:66], "0x" + sig[66:130], sender=stranger)


def test_permit__by_wrong_signer__reverts(token, holder, stranger):
    dl = deadline()
    sig = sign_permit(token, stranger, holder, stranger, 7 * UNIT, dl)
    with reverts(token.ERC2612InvalidSigner, signer=stranger, owner=holder):
        token.permit(holder, stranger, 7 * UNIT, dl, int(sig[-2:], 16), sig[:66], "0x" + sig[66:130], sender=stranger)


def test_permit__replayed__reverts(token, holder, stranger):
    dl = deadline()
    sig = sign_permit(token, holder, holder, stranger, 7 * UNIT, dl)
    args = (holder, stranger, 7 * UNIT, dl, int(sig[-2:], 16), sig[:66], "0x" + sig[66:130])
    token.permit(*args, sender=stranger)
    with reverts(token.ERC2612InvalidSigner, owner=holder):
        token.permit(*args, sender=stranger)


def test_permit__malleable_signature__reverts(token, holder, stranger):
    dl = deadline()
    sig = malleable(sign_permit(token, holder, holder, stranger, 7 * UNIT, dl))
    s = "0x" + sig[66:130]
    with reverts(token.ECDSAInvalidSignatureS, s=s):
        token.permit(holder, stranger, 7 * UNIT, dl, int(sig[-2:], 16), sig[:66], s, sender=stranger)


def test_permit__invalid_v__reverts(token, holder, stranger):
    dl = deadline()
    sig = sign_permit(token, holder, holder, stranger, 7 * UNIT, dl)
    with reverts(token.ECDSAInvalidSignature):
        token.permit(holder, stranger, 7 * UNIT, dl, 29, sig[:66], "0x" + sig[66:130], sender=stranger)


def test_eip712Domain__names_the_token(token, chain):
    _, name, version, chain_id, verifying_contract, _, _ = token.eip712Domain()
    assert (name, version, chain_id, verifying_contract) == (TOKEN_NAME, "1", chain.chain_id, token.address)
