"""Limits at their exact bound: a check that refuses one unit past its bound lets the bound itself
through (the same check with `<=` in place of `<` would refuse it)."""

from tests.utils.constants import TOKEN, UNIT


def test_returnToEscrow__reserve_exactly_the_paid_tokens__takes_all_of_it(ledger, as_controller, fund, user, admin):
    fund(user, TOKEN, 100 * UNIT)
    ledger.holdInEscrow(user, TOKEN, 21 * UNIT, sender=as_controller)
    ledger.releaseToShop(TOKEN, 20 * UNIT, UNIT, sender=as_controller)
    ledger.withdrawReserve(admin, ledger.reserve() - 20 * UNIT, sender=admin)
    ledger.returnToEscrow(TOKEN, 20 * UNIT, UNIT, sender=as_controller)
    assert (ledger.reserve(), ledger.escrowOf(TOKEN)) == (0, 21 * UNIT)
