"""Every operation stays within its gas budget in every case GAS.md lists (scripts/_gas.py)."""

import pytest

from scripts._gas import BUDGETS, measure


@pytest.fixture
def measured(system, admin, relay, shop_owner, accounts):
    # Accounts that hold nothing in the session's system: the cases measure first writes.
    return measure(system, admin, relay, shop_owner, [accounts[i] for i in (3, 4, 5, 6, 7)])


def test_gas__every_case__within_budget(measured):
    over = {case: (gas, BUDGETS[case]) for case, gas in measured.items() if gas > BUDGETS[case]}
    assert set(measured) == set(BUDGETS)
    assert not over, f"over budget (used, budget): {over}"
